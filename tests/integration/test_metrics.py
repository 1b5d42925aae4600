"""Prometheus metrics through Ray's metrics API, scraped from the node's export port as Prometheus
would: copyserve's own series move by exactly the requests sent; vLLM's engine series are there."""

from __future__ import annotations

import time
import uuid

from tests.integration.conftest import METRICS_REPORT_MS
from tests.integration.helpers import scrape, total

QWEN3 = "tiny-qwen3"


def settled(app_config, seconds: float = 3 * METRICS_REPORT_MS / 1000) -> dict:
    time.sleep(seconds)  # earlier tests' increments have all been reported by now
    return scrape(app_config)


def test_copies_are_counted_by_industry_model_and_cache_result(client, app_config):
    labels = {"industry": "finance", "model": QWEN3, "adapter": "base"}
    before = settled(app_config)
    body = {"industry": "finance", "product": f"savings account {uuid.uuid4().hex[:6]}", "seed": 7,
            "max_tokens": 8}
    first, second = client.post("/v1/copy", json=body), client.post("/v1/copy", json=body)
    assert first.status_code == second.status_code == 200, first.text
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")  # cache ttl is 3 s

    def moved(name: str, **extra) -> float:
        return total(after, name, **extra) - total(before, name, **extra)

    deadline = time.monotonic() + 30
    while True:
        after = scrape(app_config)
        if moved("ray_copyserve_copies", **labels, cache="hit") >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert moved("ray_copyserve_copies", **labels, cache="miss") == 1
    assert moved("ray_copyserve_copies", **labels, cache="hit") == 1
    assert moved("ray_copyserve_copy_latency_seconds", industry="finance") == 2
    # Work is counted once: the hit wrote no tokens and took no first token.
    assert moved("ray_copyserve_copy_first_token_seconds", model=QWEN3, adapter="base") == 1
    assert moved("ray_copyserve_completion_tokens", model=QWEN3, adapter="base") == \
        first.json()["usage"]["completion_tokens"]
    assert moved("ray_copyserve_copy_attempts", industry="finance") == 1


def test_vllm_engine_metrics_are_exported_per_model(client, app_config):
    r = client.post("/v1/completions", json={"model": QWEN3, "prompt": "Hello", "max_tokens": 4})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while True:
        families = scrape(app_config)
        finished = total(families, "ray_vllm_request_success", model_name=QWEN3)
        if finished >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert finished >= 1, sorted(name for name in families if "vllm" in name)
    assert total(families, "ray_vllm_time_to_first_token_seconds", model_name=QWEN3) >= 1
