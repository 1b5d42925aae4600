"""copyserve on a real two-node Ray cluster: the built Serve config goes in with `serve deploy`, the
model deployment runs on the worker whose custom resource it asks for, `copyserve status` reports it,
and sustained load scales the model 1 → 2 replicas and back to 1 without a failed request."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from contracts.config import load_config
from serve_app.serve_config import build_serve_config
from tests.integration.ray_cluster import BIN, LocalCluster

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
CONFIG = Path(__file__).parent.parent / "configs" / "cluster.yaml"
DEPLOYMENT = "model-tiny-gptj"
BODY = {"industry": "education", "product": "Chemistry course", "postprocess": False, "cache": False}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_nodes(1)
        cluster.add_worker(num_cpus=2, resources={"copyserve_worker": 2})
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def deployed(cluster, redis_server, tmp_path_factory):
    config = load_config(CONFIG)
    config = config.model_copy(update={"redis": config.redis.model_copy(
        update={"url": redis_server.url, "key_prefix": "copyserve-cluster-test:"})})
    path = tmp_path_factory.mktemp("serve") / "serve.yaml"
    path.write_text(yaml.safe_dump(build_serve_config(config), sort_keys=False))
    started = time.monotonic()
    result = cluster.run(BIN / "serve", "deploy", path, "--address", cluster.dashboard)
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        if serve_details(cluster).get(config.server.app_name, {}).get("status") == "RUNNING":
            break
        time.sleep(1)
    print(f"\n[cluster] `serve deploy` to running in {time.monotonic() - started:.0f}s")
    return config


def status(cluster) -> tuple[int, dict]:
    result = cluster.run(BIN / "copyserve", "status", "--address", cluster.address, "--json")
    try:
        return result.returncode, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.returncode, {"output": result.stdout + result.stderr}


def serve_details(cluster) -> dict:
    """The cluster's Serve applications from the head's REST API: a poll costs an HTTP call, where
    `copyserve status` starts a Ray driver (seconds of CPU on this box, taken from the starting replicas)."""
    try:
        return httpx.get(f"{cluster.dashboard}/api/serve/applications/", timeout=10).json()["applications"]
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def replica_states(cluster, app_name: str) -> list[str]:
    app = serve_details(cluster).get(app_name, {})
    return [r["state"] for r in app.get("deployments", {}).get(DEPLOYMENT, {}).get("replicas", [])]


def model_replicas(report: dict) -> list[dict]:
    (app,) = report["applications"]
    return next(d for d in app["deployments"] if d["name"] == DEPLOYMENT)["replicas"]


def url(config) -> str:
    return f"http://{config.server.host}:{config.server.port}"


def test_deployed_app_serves_and_status_is_healthy(cluster, deployed):
    r = httpx.post(f"{url(deployed)}/v1/copy", json={**BODY, "max_tokens": 8}, timeout=60)
    assert r.status_code == 200 and r.json()["model"] == "tiny-gptj", r.text
    code, report = status(cluster)
    assert code == 0 and report["healthy"], report
    (app,) = report["applications"]
    assert app["name"] == "copyserve-cluster" and app["status"] == "RUNNING"
    assert {d["name"] for d in app["deployments"]} == {"Ingress", DEPLOYMENT, "Polish", "Sentiment"}
    text = cluster.run(BIN / "copyserve", "status", "--address", cluster.address, "--replicas").stdout
    assert "copyserve-cluster: RUNNING" in text and "autoscaling 1..2" in text


def test_model_runs_on_the_node_with_its_resource(cluster, deployed):
    worker = next(n for n in cluster.alive_nodes() if "copyserve_worker" in n["resources"])
    replicas = model_replicas(status(cluster)[1])
    assert replicas and all(r["node_id"] == worker["id"] for r in replicas)
    # The rest has no custom resource: nothing pins it, so it is placed wherever Ray finds CPUs.


SCALE_DEADLINE_S = 720


def test_load_scales_the_model_up_to_max_and_back_to_min(cluster, deployed):
    outcomes, failures = Counter(), []
    heavy, light = threading.Event(), threading.Event()

    def load(gate: threading.Event, max_tokens: int):
        while gate.is_set():
            try:
                r = httpx.post(f"{url(deployed)}/v1/copy", json={**BODY, "max_tokens": max_tokens}, timeout=120)
                ok, detail = r.status_code == 200, r.text[:200]
            except httpx.HTTPError as exc:
                ok, detail = False, repr(exc)
            outcomes["ok" if ok else "failed"] += 1
            if not ok:
                failures.append(detail)

    def running() -> int:
        return replica_states(cluster, deployed.server.app_name).count("RUNNING")

    def wait(predicate, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if predicate():
                return time.monotonic() - started
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout_s}s; outcomes {dict(outcomes)}")

    wait(lambda: running() == 1, 60)  # one replica to start from (a poll that gets no answer reads as none)
    heavy.set()
    light.set()
    threads = [threading.Thread(target=load, args=(heavy, 48)) for _ in range(5)]
    threads.append(threading.Thread(target=load, args=(light, 8)))  # keeps requests in flight while scaling down
    for t in threads:
        t.start()
    try:
        # Deadlines are hang guards, not targets: a replica start took ~130 s on a fast day here, and
        # over 240 s on a slower 2-core box (the up-scale still came; the test asserts that it does).
        up_s = wait(lambda: running() == 2, SCALE_DEADLINE_S)
        heavy.clear()  # the light client goes on: scale-down must drain, not drop, its requests
        down_s = wait(lambda: replica_states(cluster, deployed.server.app_name) == ["RUNNING"], SCALE_DEADLINE_S)
        time.sleep(2)
    finally:
        heavy.clear()
        light.clear()
        for t in threads:
            t.join(timeout=180)
    print(f"\n[cluster] 1 -> 2 replicas in {up_s:.0f}s under load, 2 -> 1 in {down_s:.0f}s after it; "
          f"{sum(outcomes.values())} requests, {outcomes['failed']} failed")
    assert outcomes["failed"] == 0, failures[:3]
    assert outcomes["ok"] > 10

