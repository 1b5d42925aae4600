"""A dead vLLM engine fails the replica's health check, shows in /healthz, and Serve replaces it; a batch
sent to that model meanwhile waits the outage out (its lines wait for the new replica) and loses no line."""

import openai
import psutil
import pytest

from tests.integration.batch_helpers import assert_each_line_once, finished, start_batch
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
BATCH_LINES = 20


def test_killed_engine_is_reported_then_replaced(client, model_handle, base_url, user_key):
    model = "tiny-gptj"
    replica_pid = model_handle(model).stats.remote().result()["pid"]
    engines = [p for p in psutil.Process(replica_pid).children(recursive=True)
               if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline())]
    assert engines, "the replica should own a vLLM EngineCore process"
    for p in engines:
        p.kill()
    batches = openai.OpenAI(base_url=f"{base_url}/v1", api_key=user_key, max_retries=3)
    batch_id = start_batch(batches, BATCH_LINES, model="education")  # the route on tiny-gptj, its engine dead

    def reported_dead():
        health = client.get("/healthz")
        return health.status_code == 503 and health.json()["models"][model]["status"] != "ok"

    assert wait_for(reported_dead, 30), "/healthz should report the dead engine"
    assert finished(batches, batch_id) is None, "the batch's lines should wait for a live engine, not fail"
    # Meanwhile a request to that model is refused cleanly (503) or served by a fresh replica (200).
    meanwhile = client.post("/v1/copy", json={"industry": "education", "product": "atlas", "max_tokens": 4})
    assert meanwhile.status_code in (200, 503), meanwhile.text

    def replaced():
        health = client.get("/healthz")
        return health.status_code == 200 and health.json()["models"][model]["pid"] != replica_pid

    assert wait_for(replaced, 180, every_s=2), "Serve should replace the replica whose health check fails"
    after = client.post("/v1/copy", json={"industry": "education", "product": "atlas", "max_tokens": 4})
    assert after.status_code == 200 and after.json()["model"] == model
    batch = wait_for(lambda: finished(batches, batch_id), 180, every_s=1)
    assert batch is not None, "the batch should finish once the model is back"
    assert_each_line_once(batches, batch, BATCH_LINES)  # none failed for the dead engine
