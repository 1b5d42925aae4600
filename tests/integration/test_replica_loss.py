"""Killing one of a model's two replicas, or only its vLLM engine core, under steady load: Serve replaces
it, requests that had no token yet are retried on the other replica, and at most 1% of requests fail
(none of the whole answers; only streams that had sent tokens may)."""

import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import ray

from serve_app import serve_control
from tests.integration.helpers import SteadyLoad, scrape, total, wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
MODEL, DEPLOYMENT = "tiny-gptj-pair", "model-tiny-gptj-pair"  # two replicas, route "tutoring"
BODY = {"industry": "tutoring", "product": "Geometry course", "max_tokens": 8, "postprocess": False, "cache": False}
PAUSE_S = 0.2  # between a client's requests: the load goes on through the kill, and the replacement still gets CPU


def replicas(app_name: str) -> list[dict]:
    app = next(a for a in serve_control.status_report()["applications"] if a["name"] == app_name)
    return next(d for d in app["deployments"] if d["name"] == DEPLOYMENT)["replicas"]


def wait_replaced(app_name: str, victim: dict, timeout_s: float = 600) -> tuple[list[dict], float]:
    killed_at = time.monotonic()
    while time.monotonic() < killed_at + timeout_s:
        running = [r for r in replicas(app_name) if r["state"] == "RUNNING"]
        if len(running) == 2 and victim["replica_id"] not in {r["replica_id"] for r in running}:
            break
        time.sleep(1)
    return running, time.monotonic() - killed_at


def busy_replica_pid(handle, timeout_s: float = 30) -> int:
    """The pid of a replica that has requests in its engine right now (whichever one answers first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = handle.stats.remote().result()
        if stats["unfinished_requests"] > 0:
            return stats["pid"]
    raise AssertionError("no model replica had a request in its engine under load")


def test_killed_replica_is_replaced_and_at_most_one_percent_fails(client, app_config):
    app_name = app_config.server.app_name
    before = [r for r in replicas(app_name) if r["state"] == "RUNNING"]
    assert len(before) == 2
    with SteadyLoad(client, BODY, pause_s=PAUSE_S) as load:
        time.sleep(5)
        victim = before[0]
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        running, recovered_s = wait_replaced(app_name, victim)
        time.sleep(3)  # keep the load on the recovered pair for a moment
    print(f"\n[replica loss] {load.total} requests, {load.failed('whole')} whole and {load.failed('stream')} "
          f"streamed failed; back to 2 replicas in {recovered_s:.0f}s; failures: {load.failures[:2]}")
    assert len(running) == 2 and victim["replica_id"] not in {r["replica_id"] for r in running}
    assert load.total >= 50 and load.failed("whole") + load.failed("stream") <= load.total * 0.01, load.failures[:3]


def test_killed_engine_core_moves_its_traffic_to_the_live_replica(client, app_config, model_handle):
    """Before: the replica with a dead engine failed fast, so it won most of the routing: 695 × 503 in
    120 s until Serve's health check replaced it. Now it stops itself, and its requests are retried."""
    app_name = app_config.server.app_name
    before = [r for r in replicas(app_name) if r["state"] == "RUNNING"]
    assert len(before) == 2
    retries_before = total(scrape(app_config), "ray_copyserve_model_call_retries", deployment=DEPLOYMENT)
    with SteadyLoad(client, BODY, pause_s=PAUSE_S) as load, ThreadPoolExecutor(4) as pool:
        time.sleep(5)
        # Whole answers long enough to be in both engines when one dies (the load's own 8-token answers can all
        # be over by then, leaving only a stream that had sent text): each must be retried on the live replica.
        held = [pool.submit(client.post, "/v1/copy", json={**BODY, "max_tokens": 48}) for _ in range(4)]
        victim_pid = busy_replica_pid(model_handle(MODEL))  # work in its engine: retried, not lost
        victim = next(r for r in before if r["pid"] == victim_pid)
        engines = [p for p in psutil.Process(victim_pid).children(recursive=True)
                   if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline())]
        assert engines, "the replica should own a vLLM EngineCore process"
        for p in engines:
            p.kill()
        running, recovered_s = wait_replaced(app_name, victim)
        time.sleep(3)
    print(f"\n[engine loss] {load.total} requests, {load.failed('whole')} whole and {load.failed('stream')} "
          f"streamed failed; back to 2 replicas in {recovered_s:.0f}s; failures: {load.failures[:2]}")
    assert len(running) == 2 and victim["replica_id"] not in {r["replica_id"] for r in running}
    assert load.total >= 50 and load.failed("whole") == 0, load.failures[:3]
    assert load.failed("stream") <= load.total * 0.01, load.failures[:3]
    assert [f.result().status_code for f in held] == [200] * 4, [f.result().text[:200] for f in held]

    def retried() -> float:
        return total(scrape(app_config), "ray_copyserve_model_call_retries", deployment=DEPLOYMENT) - retries_before

    assert wait_for(retried, 30, every_s=1), "requests on the dead engine should have been retried elsewhere"
