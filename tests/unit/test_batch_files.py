"""The batch file store through fsspec's memory:// filesystem (what s3:// or gs:// would get), and the batch
runner writing its output there: streamed uploads under the size limit, parts read back whole, and a
runner "restart" (new store objects on the same URL) that answers no line twice."""

from __future__ import annotations

import asyncio
import io
import json
import time
import types
import uuid

import pytest
from starlette.datastructures import UploadFile

from contracts.config import BatchConfig
from contracts.errors import NotFoundError, PayloadTooLargeError
from deployments.state.batches import BatchStore
from deployments.state.files import FileStore, TooLarge
from serve_app.batch_runner import BatchRunner, jsonl_parts
from serve_app.batches_api import BatchesAPI
from tests.fakes import MemoryStore

CHAT = "/v1/chat/completions"


@pytest.fixture
def url():
    root = f"memory://batches-{uuid.uuid4().hex[:8]}/files"
    yield root
    store = FileStore(root)
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


async def new_batch(store: BatchStore, batch_id: str, lines: int) -> None:
    """A chat batch of ``lines`` lines (bodies ``{"i": n}``), as POST /v1/batches leaves it."""
    data = "".join(json.dumps({"custom_id": f"c{i}", "url": CHAT, "body": {"i": i}}) + "\n" for i in range(lines))
    meta = await store.create_file(None, "in.jsonl", "batch", data.encode())
    now = int(time.time())
    assert await store.create_batch({"id": batch_id, "object": "batch", "endpoint": CHAT, "status": "validating",
                                     "owner": "-", "input_file_id": meta["id"], "created_at": now,
                                     "expires_at": now + 3600, "key_id": None,
                                     "request_counts": {"total": lines, "completed": 0, "failed": 0}})


async def holding(runner: BatchRunner, batch_id: str) -> None:
    """Run a batch as BatchRunner.run does: under the lease the runner claimed (the lease script checks it)."""
    assert await runner.batches.claim(batch_id, runner.id)
    await runner.run_batch(batch_id)


async def chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_an_upload_is_read_back_measured_and_deleted(url):
    store = FileStore(url)
    size = await store.write("file-a", chunks(b'{"a": 1}\n', b'{"b": 2}\n'))
    assert size == 18 and await store.size("file-a") == 18
    assert await store.read("file-a") == b'{"a": 1}\n{"b": 2}\n'
    length, parts = await store.open("file-a")
    assert length == 18 and b"".join([p async for p in parts]) == b'{"a": 1}\n{"b": 2}\n'
    await store.delete("file-a")
    await store.delete("file-a")  # already gone: fine
    with pytest.raises(FileNotFoundError):
        await store.read("file-a")
    with pytest.raises(OSError):
        await store.open("file-a")


async def test_an_upload_past_the_limit_is_refused_while_streaming_and_nothing_is_kept(url):
    store = FileStore(url)
    seen = []

    async def upload():
        for i in range(10):
            seen.append(i)
            yield b"x" * 400

    with pytest.raises(TooLarge):
        await store.write("file-big", upload(), limit=1024)
    assert seen == [0, 1, 2]  # stopped at the part that crossed the limit, not after reading everything
    assert not store.fs.exists(store.path("file-big"))
    assert await store.write("file-ok", b"x" * 1024, limit=1024) == 1024  # exactly the limit is fine


async def test_result_parts_are_read_back_as_one_file(url):
    rows = [{"custom_id": f"c{i}", "body": "é" * 50} for i in range(100)]
    parts = list(jsonl_parts(rows, part_bytes=1000))
    assert len(parts) > 5 and all(len(p) >= 1000 for p in parts[:-1])
    store = FileStore(url)
    await store.write("file-out", iter(parts))
    back = (await FileStore(url).read("file-out")).decode()  # another store object, as another replica
    assert [json.loads(line) for line in back.splitlines()] == rows


async def test_a_local_path_keeps_the_folder_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = FileStore("batch-files")  # relative, as the default
    await store.write("file-x", b"{}\n")
    assert (tmp_path / "batch-files" / "file-x.jsonl").read_bytes() == b"{}\n"
    assert await FileStore(f"file://{tmp_path}/batch-files").read("file-x") == b"{}\n"


async def test_batch_store_files_go_to_the_configured_url(url):
    batches = BatchStore(MemoryStore(), BatchConfig(files_dir=url))
    meta = await batches.create_file("alice", "in.jsonl", "batch", chunks(b"a\n", b"b\n"), limit=1024)
    assert meta["bytes"] == 4 and await FileStore(url).read(meta["id"]) == b"a\nb\n"
    with pytest.raises(TooLarge):
        await batches.create_file("alice", "big.jsonl", "batch", b"x" * 2000, limit=1024)
    assert [f["id"] for f in await batches.list_files("alice")] == [meta["id"]]
    assert await batches.delete_file("alice", meta["id"])
    assert not batches.files.fs.exists(batches.files.path(meta["id"]))


async def test_a_restarted_runner_resumes_from_the_store_and_answers_no_line_twice(url):
    redis, config = MemoryStore(), BatchConfig(files_dir=url, concurrency=2)
    first_store = BatchStore(redis, config)
    await new_batch(first_store, "batch_t", 7)
    calls: list[int] = []

    async def dying_line(endpoint, body, key, request_id):
        calls.append(body["i"])
        if len(calls) > 4:
            await asyncio.Event().wait()  # the replica hangs, then dies
        return 200, {"echo": body["i"]}, 0.0

    async def healthy_line(endpoint, body, key, request_id):
        calls.append(body["i"])
        return 200, {"echo": body["i"]}, 0.0

    first = asyncio.create_task(holding(BatchRunner(first_store, None, dying_line, config), "batch_t"))
    while len(calls) < 6:
        await asyncio.sleep(0.01)
    first.cancel()
    await first_store.release("batch_t")  # its lease expires
    answered = set(calls[:4])
    # The restart: new store objects on the same URL (and the same Redis) find the input and the results.
    second_store = BatchStore(MemoryStore(server=redis.server), config)
    await holding(BatchRunner(second_store, None, healthy_line, config), "batch_t")
    done = await second_store.load("batch_t")
    assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 7, "failed": 0}
    rows = [json.loads(line) for line in (await FileStore(url).read(done["output_file_id"])).decode().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"c{i}" for i in range(7)]  # each once, in input order
    assert not answered & set(calls[6:]) and sorted(calls[6:]) == sorted(set(range(7)) - answered)


async def test_the_files_endpoints_stream_an_upload_in_and_the_content_out(url):
    config = BatchConfig(files_dir=url, max_file_bytes=2048)
    api = types.SimpleNamespace(batches=BatchStore(MemoryStore(), config),
                                config=types.SimpleNamespace(batch=config))
    api._file = lambda owner, file_id: BatchesAPI._file(api, owner, file_id)
    answer = await BatchesAPI.upload_file(api, None, UploadFile(io.BytesIO(b"a\n" * 1000), filename="in.jsonl"),
                                          "batch")
    file_id = json.loads(answer.body)["id"]
    content = await BatchesAPI.file_content(api, file_id, None)
    assert content.headers["content-length"] == "2000"
    assert b"".join([part async for part in content.body_iterator]) == b"a\n" * 1000
    with pytest.raises(PayloadTooLargeError):
        await BatchesAPI.upload_file(api, None, UploadFile(io.BytesIO(b"a\n" * 1025), filename="big.jsonl"), "batch")
    assert api.batches.files.fs.ls(api.batches.files.root, detail=False) == [api.batches.files.path(file_id)]
    await api.batches.files.delete(file_id)
    with pytest.raises(NotFoundError):
        await BatchesAPI.file_content(api, file_id, None)


async def test_lines_run_in_a_window_a_slow_line_holds_only_its_own_slot(url):
    store = BatchStore(MemoryStore(), BatchConfig(files_dir=url, concurrency=2))
    await new_batch(store, "batch_w", 6)
    slow_may_end, started, in_flight = asyncio.Event(), [], [0, 0]  # now, most

    async def line(endpoint, body, key, request_id):
        started.append(body["i"])
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            if body["i"] == 0:
                await slow_may_end.wait()
            else:
                await asyncio.sleep(0.01)
            return 200, {"echo": body["i"]}, 0.0
        finally:
            in_flight[0] -= 1

    run = asyncio.create_task(holding(BatchRunner(store, None, line, store.config), "batch_w"))
    while len(started) < 6:  # rounds of two would wait here for line 0 before starting line 2
        await asyncio.sleep(0.01)
    assert not run.done() and in_flight[1] == 2
    slow_may_end.set()
    await run
    done = await store.load("batch_w")
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 6


async def test_an_answer_waits_for_redis_to_come_back_and_no_line_is_lost(url, monkeypatch):
    monkeypatch.setattr("serve_app.batch_runner.POLL_S", 0.01)
    redis = MemoryStore()
    redis.config = redis.config.model_copy(update={"retry_after_s": 0.01})  # tries Redis again at once
    store = BatchStore(redis, BatchConfig(files_dir=url, concurrency=2))
    await new_batch(store, "batch_r", 6)
    calls = []

    async def line(endpoint, body, key, request_id):
        calls.append(body["i"])
        if body["i"] == 3:
            redis.down = True  # Redis goes away while this line is answered (a timeout on a saturated host)
            asyncio.get_running_loop().call_later(0.05, setattr, redis, "down", False)
        return 200, {"echo": body["i"]}, 0.0

    await holding(BatchRunner(store, None, line, store.config), "batch_r")
    done = await store.load("batch_r")
    assert done["status"] == "completed" and done["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    assert sorted(set(calls)) == list(range(6))
