"""One of two ingress replicas killed under steady load. The proxy's router reserves a slot on a replica
before it sends a request there, and a dead replica's reservation fails at once: the request goes to the
live replica. So only the requests the dead replica held fail, every request sent after it died is
answered, and Serve brings the count back."""

import time
import uuid

import pytest
import ray

from serve_app import serve_control
from tests.integration.helpers import SteadyLoad, wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
RUN = uuid.uuid4().hex[:6]
CLIENTS = 4
DIED_WITHIN_S = 2.0  # ray.kill returns before the process is gone; a request sent meanwhile may still land there


def running_ingress(app_name: str) -> list[dict]:
    app = next(a for a in serve_control.status_report()["applications"] if a["name"] == app_name)
    replicas = next(d for d in app["deployments"] if d["name"] == "Ingress")["replicas"]
    return [r for r in replicas if r["state"] == "RUNNING"]


def scale_ingress(app_name: str, count: int) -> bool:
    serve_control.deploy(serve_control.with_num_replicas(serve_control.deployed_config(), app_name, "Ingress", count))
    return bool(wait_for(lambda: len(running_ingress(app_name)) == count, 300, every_s=1))


def body(n: int) -> dict:
    # Short greedy answers on a few products: generations and cache hits, both through the ingress.
    return {"industry": "finance", "product": f"ingress loss kettle {n % 7} {RUN}", "max_tokens": 6,
            "temperature": 0}


def test_losing_one_of_two_ingress_replicas_fails_only_what_it_held(client, app_config):
    name = app_config.server.app_name
    assert scale_ingress(name, 2), serve_control.deployment_status(name)
    try:
        with SteadyLoad(client, body, clients=CLIENTS) as load:
            assert load.grows_by(20, 180), load.outcomes
            victim = running_ingress(name)[0]
            ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
            died = time.monotonic()
            assert load.grows_by(40, 240), load.outcomes  # served on by the live replica
            replaced = wait_for(lambda: len(running_ingress(name)) == 2 and victim["replica_id"] not in
                                {r["replica_id"] for r in running_ingress(name)}, 300, every_s=1)
            assert replaced, serve_control.deployment_status(name)
            assert load.grows_by(10, 120), load.outcomes  # and by both again
        after = [f for f, sent in zip(load.failures, load.failed_from, strict=True) if sent > died + DIED_WITHIN_S]
        print(f"\n[ingress] {load.total} requests {dict(load.outcomes)}; failed {len(load.failures)} "
              f"(sent after the kill: {len(after)})")
        assert after == []
        assert len(load.failures) <= CLIENTS, load.failures  # at most what was in flight when it died
    finally:
        assert scale_ingress(name, 1), serve_control.deployment_status(name)
