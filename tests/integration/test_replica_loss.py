"""Killing one of a model's two replicas under steady load: Serve replaces it, requests that had no
token yet are retried on the other replica, and at most 1% of requests fail."""

import threading
import time
from collections import Counter

import pytest
import ray

from serve_app import serve_control

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
MODEL, DEPLOYMENT = "tiny-gptj-pair", "model-tiny-gptj-pair"  # two replicas, route "tutoring"
BODY = {"industry": "tutoring", "product": "Geometry course", "max_tokens": 8, "postprocess": False, "cache": False}


def replicas(app_name: str) -> list[dict]:
    app = next(a for a in serve_control.status_report()["applications"] if a["name"] == app_name)
    return next(d for d in app["deployments"] if d["name"] == DEPLOYMENT)["replicas"]


def test_killed_replica_is_replaced_and_at_most_one_percent_fails(client, app_config):
    app_name = app_config.server.app_name
    before = [r for r in replicas(app_name) if r["state"] == "RUNNING"]
    assert len(before) == 2
    outcomes, failures, stop = Counter(), [], threading.Event()

    def load(stream: bool):
        while not stop.is_set():
            try:
                if stream:
                    with client.stream("POST", "/v1/copy", json={**BODY, "stream": True}) as r:
                        text = "".join(r.iter_text())
                    ok = r.status_code == 200 and '"type": "final"' in text and '"type": "error"' not in text
                    detail = text[-300:]
                else:
                    r = client.post("/v1/copy", json=BODY)
                    ok, detail = r.status_code == 200, r.text[:300]
            except Exception as exc:  # a hang or a dropped connection is a failure too
                ok, detail = False, repr(exc)
            outcomes["ok" if ok else "failed"] += 1
            if not ok:
                failures.append(detail)

    workers = [threading.Thread(target=load, args=(i % 2 == 1,)) for i in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(5)
        victim = before[0]
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        deadline = killed_at + 600
        while time.monotonic() < deadline:
            running = [r for r in replicas(app_name) if r["state"] == "RUNNING"]
            if len(running) == 2 and victim["replica_id"] not in {r["replica_id"] for r in running}:
                break
            time.sleep(1)
        recovered_s = time.monotonic() - killed_at
        time.sleep(3)  # keep the load on the recovered pair for a moment
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=120)
    total = outcomes["ok"] + outcomes["failed"]
    print(f"\n[replica loss] {total} requests, {outcomes['failed']} failed; back to 2 replicas in {recovered_s:.0f}s; "
          f"failures: {failures[:2]}")
    assert len(running) == 2 and victim["replica_id"] not in {r["replica_id"] for r in running}
    assert total >= 50 and outcomes["failed"] <= total * 0.01, failures[:3]
