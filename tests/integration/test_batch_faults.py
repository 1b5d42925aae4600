"""A batch survives what the platform does to it mid-run: its ingress replica killed (another runner takes
it over when the lease runs out) or Redis stopped and restarted. Every line is answered exactly once."""

import time

import openai
import pytest
import ray

from serve_app import serve_control
from tests.integration.batch_helpers import assert_each_line_once, finished, progress, start_batch
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite


def test_a_batch_whose_ingress_replica_dies_is_finished_by_the_next(base_url, user_key, app_config):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=user_key, max_retries=3)
    batch_id = start_batch(client, 30)
    assert wait_for(lambda: progress(client, batch_id) >= 4, 120, every_s=0.3)
    app = next(a for a in serve_control.status_report()["applications"] if a["name"] == app_config.server.app_name)
    ingress = next(d for d in app["deployments"] if d["name"] == "Ingress")["replicas"][0]
    ray.kill(ray.get_actor(ingress["actor_name"], namespace="serve"), no_restart=True)
    batch = wait_for(lambda: finished(client, batch_id), 300, every_s=1)
    assert batch is not None, "the batch should be finished by the replacement replica"
    assert_each_line_once(client, batch, 30)


def test_a_batch_goes_on_after_redis_restarts(base_url, user_key, redis_server):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=user_key, max_retries=3)
    batch_id = start_batch(client, 30)
    assert wait_for(lambda: progress(client, batch_id) >= 4, 120, every_s=0.3)
    redis_server.stop()
    try:
        time.sleep(3)  # lines keep running; what they answer now cannot be recorded and is run again
    finally:
        redis_server.start()
    batch = wait_for(lambda: finished(client, batch_id), 300, every_s=1)
    assert batch is not None
    assert_each_line_once(client, batch, 30)
