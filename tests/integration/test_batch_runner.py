"""The batch runner against a real redis-server (lines answered by a stand-in for the endpoints: what is
tested is who runs which line, not the model). A runner that dies mid-batch loses nothing, and the one
that takes over answers no line twice."""

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager

import pytest

from contracts.config import BatchConfig, RedisConfig
from deployments.state.batches import BatchStore
from deployments.state.keys import KeyStore
from deployments.state.store import RedisStore
from serve_app.batch_runner import BatchRunner

CHAT = "/v1/chat/completions"
UNAVAILABLE = {"error": {"message": "model tiny-gptj is unavailable", "code": 503}}


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


@asynccontextmanager
async def a_batch(redis_config, config: BatchConfig, lines: int):
    """A store, its batch records and a new batch of ``lines`` (the store closed after)."""
    store = RedisStore(redis_config)
    try:
        batches = BatchStore(store, config)
        yield store, batches, await new_batch(batches, lines)
    finally:
        await store.close()


async def until_completed(batches: BatchStore, batch_id: str, timeout_s: float) -> dict:
    """The batch once completed, or as it stands after ``timeout_s`` (the test's assertions say what is off)."""
    deadline = time.monotonic() + timeout_s
    while (batch := await batches.load(batch_id))["status"] != "completed" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return batch


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
            batch = await until_completed(batches, batch_id, 20)
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


def run_to_end(redis_config, config: BatchConfig, answer, lines: int) -> tuple[dict, list[dict]]:
    """A batch of ``lines`` run by one runner whose lines ``answer`` gives; the batch and its output rows."""
    async def scenario():
        async with a_batch(redis_config, config, lines) as (store, batches, batch_id):
            runner = asyncio.create_task(BatchRunner(batches, KeyStore(store), answer, config).run())
            try:
                batch = await until_completed(batches, batch_id, 30)
            finally:
                runner.cancel()
            files = [batch.get("output_file_id"), batch.get("error_file_id")]
            texts = [(await batches.files.read(f)).decode() for f in files if f]
        return batch, [json.loads(line) for text in texts for line in text.splitlines()]

    return asyncio.run(scenario())


def test_a_line_that_meets_a_503_is_run_again_until_it_is_answered(setup):
    """A model replica being replaced answers 503 for a while: the line waits it out instead of failing."""
    redis_config, config = setup
    tries: dict[int, int] = {}

    async def replica_coming_back(endpoint, body, key, request_id):
        tries[body["i"]] = tries.get(body["i"], 0) + 1
        if body["i"] % 2 == 0 and tries[body["i"]] <= 2:
            return 503, UNAVAILABLE, 0.1
        return 200, {"echo": body["i"]}, 0.0

    batch, rows = run_to_end(redis_config, config, replica_coming_back, 6)
    assert batch["request_counts"] == {"total": 6, "completed": 6, "failed": 0}, batch
    assert sorted(r["response"]["body"]["echo"] for r in rows) == list(range(6))
    assert tries == {0: 3, 1: 1, 2: 3, 3: 1, 4: 3, 5: 1}  # each 503 run again; no answered line run twice


def test_a_line_still_unavailable_past_the_retry_window_is_recorded_failed(setup):
    redis_config, config = setup
    config = config.model_copy(update={"unavailable_retry_s": 2})
    tries: list[int] = []

    async def never_back(endpoint, body, key, request_id):
        tries.append(body["i"])
        return 503, UNAVAILABLE, 0.5

    started = time.monotonic()
    batch, rows = run_to_end(redis_config, config, never_back, 2)
    assert batch["request_counts"] == {"total": 2, "completed": 0, "failed": 2}, batch
    assert [r["response"]["status_code"] for r in rows] == [503, 503]
    assert 2 < len(tries) <= 2 * 5  # run again within the window (0.5 s apart), then given up
    assert time.monotonic() - started < 15


def test_a_cancel_stops_lines_that_wait_to_run_again(setup):
    """Lines waiting out 503s hear a cancel at their next try, as a new line would: the batch ends now, not
    after the retry window (600 s by default)."""
    redis_config, config = setup

    async def scenario():
        tried = asyncio.Event()

        async def never_back(endpoint, body, key, request_id):
            tried.set()
            return 503, UNAVAILABLE, 0.5

        async with a_batch(redis_config, config, 4) as (store, batches, batch_id):
            runner = asyncio.create_task(BatchRunner(batches, KeyStore(store), never_back, config).run())
            try:
                await asyncio.wait_for(tried.wait(), 30)
                started = time.monotonic()
                assert await batches.cancel(batch_id)
                while (batch := await batches.load(batch_id))["status"] != "cancelled" and \
                        time.monotonic() - started < 20:
                    await asyncio.sleep(0.1)
                return batch, time.monotonic() - started
            finally:
                runner.cancel()

    batch, took_s = asyncio.run(scenario())
    assert batch["status"] == "cancelled" and took_s < 5, (batch["status"], took_s)
    assert batch["request_counts"]["completed"] == 0 and batch["request_counts"]["failed"] == 0
