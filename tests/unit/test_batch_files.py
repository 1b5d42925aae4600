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

CHAT = "/v1/chat/completions"


@pytest.fixture
def url():
    root = f"memory://batches-{uuid.uuid4().hex[:8]}/files"
    yield root
    store = FileStore(root)
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


class FakeRedis:
    """The few commands BatchStore sends, kept in dicts (expiry ignored)."""

    def __init__(self):
        self.kv, self.zsets, self.sets, self.hashes = {}, {}, {}, {}

    async def set(self, key, value, ex=None, nx=False):
        if nx and key in self.kv:
            return None
        self.kv[key] = str(value)
        return True

    async def get(self, key):
        return self.kv.get(key)

    async def mget(self, keys):
        return [self.kv.get(k) for k in keys]

    async def delete(self, *keys):
        for k in keys:
            for table in (self.kv, self.zsets, self.sets, self.hashes):
                table.pop(k, None)

    async def zadd(self, key, mapping):
        self.zsets.setdefault(key, {}).update(mapping)

    async def zrem(self, key, member):
        self.zsets.get(key, {}).pop(member, None)

    async def zrange(self, key, start, stop, desc=False):
        return sorted(self.zsets.get(key, {}), key=self.zsets.get(key, {}).get, reverse=desc)

    async def sadd(self, key, member):
        self.sets.setdefault(key, set()).add(member)

    async def srem(self, key, member):
        self.sets.get(key, set()).discard(member)

    async def smembers(self, key):
        return set(self.sets.get(key, set()))

    async def hsetnx(self, key, field, value):
        table = self.hashes.setdefault(key, {})
        if str(field) in table:
            return False
        table[str(field)] = value
        return True

    async def hgetall(self, key):
        return dict(self.hashes.get(key, {}))

    def register_script(self, _source):
        async def renew(keys, args, client):
            return 1
        return renew


class FakeStore:
    def __init__(self, client: FakeRedis):
        self.client = client

    def key(self, *parts):
        return "t:" + ":".join(parts)

    async def call(self, fn, default=None):
        return await fn(self.client)


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
    batches = BatchStore(FakeStore(FakeRedis()), BatchConfig(files_dir=url))
    meta = await batches.create_file("alice", "in.jsonl", "batch", chunks(b"a\n", b"b\n"), limit=1024)
    assert meta["bytes"] == 4 and await FileStore(url).read(meta["id"]) == b"a\nb\n"
    with pytest.raises(TooLarge):
        await batches.create_file("alice", "big.jsonl", "batch", b"x" * 2000, limit=1024)
    assert [f["id"] for f in await batches.list_files("alice")] == [meta["id"]]
    assert await batches.delete_file("alice", meta["id"])
    assert not batches.files.fs.exists(batches.files.path(meta["id"]))


async def test_a_restarted_runner_resumes_from_the_store_and_answers_no_line_twice(url):
    redis, config = FakeRedis(), BatchConfig(files_dir=url, concurrency=2)
    first_store = BatchStore(FakeStore(redis), config)
    data = "".join(json.dumps({"custom_id": f"c{i}", "url": CHAT, "body": {"i": i}}) + "\n" for i in range(7))
    meta = await first_store.create_file(None, "in.jsonl", "batch", data.encode())
    now = int(time.time())
    batch = {"id": "batch_t", "object": "batch", "endpoint": CHAT, "status": "validating", "owner": "-",
             "input_file_id": meta["id"], "created_at": now, "expires_at": now + 3600, "key_id": None,
             "request_counts": {"total": 7, "completed": 0, "failed": 0}}
    assert await first_store.create_batch(batch)
    calls: list[int] = []

    async def dying_line(endpoint, body, key, request_id):
        calls.append(body["i"])
        if len(calls) > 4:
            await asyncio.Event().wait()  # the replica hangs, then dies
        return 200, {"echo": body["i"]}, 0.0

    async def healthy_line(endpoint, body, key, request_id):
        calls.append(body["i"])
        return 200, {"echo": body["i"]}, 0.0

    first = asyncio.create_task(BatchRunner(first_store, None, dying_line, config).run_batch("batch_t"))
    while len(calls) < 6:
        await asyncio.sleep(0.01)
    first.cancel()
    answered = set(calls[:4])
    # The restart: new store objects on the same URL (and the same Redis) find the input and the results.
    second_store = BatchStore(FakeStore(redis), config)
    await BatchRunner(second_store, None, healthy_line, config).run_batch("batch_t")
    done = await second_store.load("batch_t")
    assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 7, "failed": 0}
    rows = [json.loads(line) for line in (await FileStore(url).read(done["output_file_id"])).decode().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"c{i}" for i in range(7)]  # each once, in input order
    assert not answered & set(calls[6:]) and sorted(calls[6:]) == sorted(set(range(7)) - answered)


async def test_the_files_endpoints_stream_an_upload_in_and_the_content_out(url):
    config = BatchConfig(files_dir=url, max_file_bytes=2048)
    api = types.SimpleNamespace(batches=BatchStore(FakeStore(FakeRedis()), config),
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
