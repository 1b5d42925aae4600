"""The batch runner against a real redis-server (lines answered by a stand-in for the endpoints: what is
tested is who runs which line, not the model). A runner that dies mid-batch loses nothing, and the one
that takes over answers no line twice."""

import asyncio
import json
import time
import uuid

import pytest

from contracts.config import BatchConfig, RedisConfig
from deployments.state.batches import BatchStore
from deployments.state.keys import KeyStore
from deployments.state.store import RedisStore
from serve_app.batch_runner import BatchRunner

CHAT = "/v1/chat/completions"


@pytest.fixture
def setup(redis_server, tmp_path):
    redis_config = RedisConfig(url=redis_server.url, key_prefix=f"batch-{uuid.uuid4().hex[:8]}:")
    return redis_config, BatchConfig(files_dir=str(tmp_path), concurrency=2, lease_s=5)


async def new_batch(batches: BatchStore, lines: int) -> str:
    data = "".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": CHAT, "body": {"i": i}}) + "\n"
                   for i in range(lines)).encode()
    meta = await batches.create_file(None, "in.jsonl", "batch", data)
    now = int(time.time())
    batch = {"id": f"batch_{uuid.uuid4().hex[:8]}", "object": "batch", "endpoint": CHAT, "status": "validating",
             "input_file_id": meta["id"], "created_at": now, "expires_at": now + 3600, "owner": "-", "key_id": None,
             "request_counts": {"total": lines, "completed": 0, "failed": 0}}
    assert await batches.create_batch(batch)
    return batch["id"]


def test_a_runner_that_dies_mid_batch_is_taken_over_and_no_line_is_answered_twice(setup):
    redis_config, config = setup
    calls: list[int] = []
    stall_after = 4

    async def scenario():
        store = RedisStore(redis_config)
        batches = BatchStore(store, config)
        batch_id = await new_batch(batches, 10)
        stalled = asyncio.Event()

        async def dying_line(endpoint, body, key, request_id):
            calls.append(body["i"])
            if len(calls) > stall_after:
                stalled.set()
                await asyncio.Event().wait()  # the replica hangs, then dies: never answers
            return 200, {"echo": body["i"]}, 0.0

        async def healthy_line(endpoint, body, key, request_id):
            calls.append(body["i"])
            return 200, {"echo": body["i"]}, 0.0

        first = asyncio.create_task(BatchRunner(batches, KeyStore(store), dying_line, config).run())
        await asyncio.wait_for(stalled.wait(), 30)
        first.cancel()  # the first runner is gone; its lease runs out on its own
        answered_by_first = set(calls[:stall_after])
        second = asyncio.create_task(BatchRunner(batches, KeyStore(store), healthy_line, config).run())
        try:
            for _ in range(200):
                batch = await batches.load(batch_id)
                if batch["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
        finally:
            second.cancel()
        out = (await batches.files.read(batch["output_file_id"])).decode(), batch
        await store.close()
        return out, answered_by_first

    (text, batch), answered_by_first = asyncio.run(scenario())
    rows = [json.loads(line) for line in text.splitlines()]
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    assert [r["custom_id"] for r in rows] == [f"c{i}" for i in range(10)]  # each once, in input order
    assert [r["response"]["body"]["echo"] for r in rows] == list(range(10))
    # Lines the first runner had answered were not sent again; only the ones it never answered were.
    rerun = calls[len(calls) - (10 - len(answered_by_first)):]
    assert not answered_by_first & set(rerun)
