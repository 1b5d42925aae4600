"""A batch survives what the platform does to it mid-run: its ingress replica killed (another runner takes
it over when the lease runs out) or Redis stopped and restarted. Every line is answered exactly once."""

import json
import time
import uuid

import openai
import pytest
import ray

from serve_app import serve_control
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
CHAT = "/v1/chat/completions"


def start_batch(client: openai.OpenAI, lines: int) -> str:
    rows = [{"custom_id": f"c{i}", "method": "POST", "url": CHAT,
             "body": {"model": "finance", "max_tokens": 8,
                      "messages": [{"role": "user", "content": f"Tagline {i} {uuid.uuid4().hex[:6]}"}]}}
            for i in range(lines)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    uploaded = client.files.create(file=("chaos.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h").id


def progress(client: openai.OpenAI, batch_id: str) -> int:
    try:
        counts = client.batches.retrieve(batch_id).request_counts
    except (openai.APIStatusError, openai.APIConnectionError):
        return 0  # the ingress or Redis is down for a moment
    return counts.completed + counts.failed


def finished(client: openai.OpenAI, batch_id: str):
    try:
        batch = client.batches.retrieve(batch_id)
    except (openai.APIStatusError, openai.APIConnectionError):
        return None
    return batch if batch.status in ("completed", "failed", "cancelled", "expired") else None


def assert_each_line_once(client: openai.OpenAI, batch, lines: int) -> None:
    assert batch.status == "completed" and batch.request_counts.completed == lines, batch
    ids = [json.loads(line)["custom_id"] for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert ids == [f"c{i}" for i in range(lines)]  # each once, in input order


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
