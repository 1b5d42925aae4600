"""Batch API state: uploaded files (bytes in the file store of ``files.py``, metadata in Redis) and
batches (their record, one result per line, the runner's lease). Every file and batch belongs to the
key that made it: reads by another owner find nothing.

Keys (under the configured prefix):
    file:<id>               JSON metadata of a file, with its owner
    files:<owner>           sorted set of the owner's file ids, by creation time
    batch:<id>              JSON record of a batch (the OpenAI Batch object plus owner and key id)
    batches:<owner>         sorted set of the owner's batch ids, by creation time
    batches:active          set of batch ids a runner still has to finish
    batch:<id>:results      hash: line number -> result line (written once: a line is never answered twice)
    batch:<id>:lease        the runner that holds the batch, until the lease expires
    batch:<id>:cancel       set by a cancel request; the runner stops at its next line
"""

from __future__ import annotations

import json
import time
import uuid

from contracts.config import BatchConfig
from contracts.errors import ServiceUnavailableError
from deployments.state.files import Data, FileStore
from deployments.state.store import RedisStore

RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


UNAVAILABLE = object()


def owner_name(owner: str | None) -> str:
    return owner or "-"  # auth off: one owner for everything


class BatchStore:
    def __init__(self, store: RedisStore, config: BatchConfig):
        self.store, self.config = store, config
        self.files = FileStore(config.files_dir)
        self._renew = store.client.register_script(RENEW) if store.client is not None else None

    async def _read(self, fn):
        """A read that must not pass an outage off as "not found" (a 404 for a batch that exists)."""
        result = await self.store.call(fn, default=UNAVAILABLE)
        if result is UNAVAILABLE:
            raise ServiceUnavailableError("redis is unavailable: files and batches cannot be read now; try again "
                                          "shortly")
        return result

    # --- files -------------------------------------------------------------------------------------

    async def create_file(self, owner: str | None, filename: str, purpose: str, data: Data,
                          limit: int | None = None) -> dict | None:
        """Store the bytes (or parts of them, streamed; ``TooLarge`` past ``limit``), then the metadata; None
        when Redis is unavailable (nothing is left behind)."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        size = await self.files.write(file_id, data, limit)
        meta = {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "owner": owner_name(owner)}

        async def write(r):
            await r.set(self.store.key("file", file_id), json.dumps(meta), ex=self.config.ttl_s)
            await r.zadd(self.store.key("files", meta["owner"]), {file_id: time.time()})
            return True

        if not await self.store.call(write, default=False):
            await self.files.delete(file_id)
            return None
        return meta

    async def get_file(self, owner: str | None, file_id: str) -> dict | None:
        raw = await self._read(lambda r: r.get(self.store.key("file", file_id)))
        meta = json.loads(raw) if raw else None
        return meta if meta and meta["owner"] == owner_name(owner) else None

    async def _owned(self, index: str, record: str, owner: str | None, newest_first: bool) -> list[dict]:
        """An owner's records through its index (a sorted set by creation time), read in one MGET; ids whose
        record expired are skipped."""
        async def read(r):
            ids = await r.zrange(self.store.key(index, owner_name(owner)), 0, -1, desc=newest_first)
            return await r.mget([self.store.key(record, i) for i in ids]) if ids else []

        return [json.loads(raw) for raw in await self._read(read) if raw]

    async def list_files(self, owner: str | None) -> list[dict]:
        return await self._owned("files", "file", owner, newest_first=False)

    async def delete_file(self, owner: str | None, file_id: str) -> bool:
        if await self.get_file(owner, file_id) is None:
            return False

        async def write(r):
            await r.delete(self.store.key("file", file_id))
            await r.zrem(self.store.key("files", owner_name(owner)), file_id)
            return True

        if not await self.store.call(write, default=False):
            return False
        await self.files.delete(file_id)
        return True

    # --- batches -----------------------------------------------------------------------------------

    async def save(self, batch: dict) -> bool:
        return bool(await self.store.call(lambda r: r.set(self.store.key("batch", batch["id"]), json.dumps(batch),
                                                          ex=self.config.ttl_s), default=False))

    async def create_batch(self, batch: dict) -> bool:
        async def write(r):
            await r.set(self.store.key("batch", batch["id"]), json.dumps(batch), ex=self.config.ttl_s)
            await r.zadd(self.store.key("batches", batch["owner"]), {batch["id"]: batch["created_at"]})
            await r.sadd(self.store.key("batches", "active"), batch["id"])
            return True

        return bool(await self.store.call(write, default=False))

    async def load(self, batch_id: str) -> dict | None:
        raw = await self._read(lambda r: r.get(self.store.key("batch", batch_id)))
        return json.loads(raw) if raw else None

    async def get_batch(self, owner: str | None, batch_id: str) -> dict | None:
        batch = await self.load(batch_id)
        return batch if batch and batch["owner"] == owner_name(owner) else None

    async def list_batches(self, owner: str | None) -> list[dict]:
        return await self._owned("batches", "batch", owner, newest_first=True)

    async def active(self) -> list[str]:
        return sorted(await self.store.call(lambda r: r.smembers(self.store.key("batches", "active")), default=set()))

    async def finish(self, batch_id: str) -> None:
        async def write(r):
            await r.srem(self.store.key("batches", "active"), batch_id)
            await r.delete(self.store.key("batch", batch_id, "results"), self.store.key("batch", batch_id, "cancel"))

        await self.store.call(write)

    # --- a running batch ---------------------------------------------------------------------------

    async def claim(self, batch_id: str, runner: str) -> bool:
        return bool(await self.store.call(lambda r: r.set(self.store.key("batch", batch_id, "lease"), runner, nx=True,
                                                          ex=self.config.lease_s)))

    async def renew(self, batch_id: str, runner: str) -> bool:
        """Keep the lease; False when it was lost (expired and taken by another runner)."""
        held = await self.store.call(lambda r: self._renew(keys=[self.store.key("batch", batch_id, "lease")],
                                                           args=[runner, self.config.lease_s], client=r))
        return held is None or bool(held)  # Redis down: keep going, the results hash decides on return

    async def release(self, batch_id: str) -> None:
        await self.store.call(lambda r: r.delete(self.store.key("batch", batch_id, "lease")))

    async def record(self, batch_id: str, line: int, result: dict) -> bool | None:
        """A line's result, once: False when the line already had one, None when Redis did not answer."""
        written = await self.store.call(lambda r: r.hsetnx(self.store.key("batch", batch_id, "results"), line,
                                                           json.dumps(result)))
        return None if written is None else bool(written)

    async def results(self, batch_id: str) -> dict[int, dict] | None:
        rows = await self.store.call(lambda r: r.hgetall(self.store.key("batch", batch_id, "results")))
        return None if rows is None else {int(k): json.loads(v) for k, v in rows.items()}

    async def cancel(self, batch_id: str) -> bool:
        """Ask the runner to stop (kept with the time it was asked, for ``cancelling_at``)."""
        return bool(await self.store.call(lambda r: r.set(self.store.key("batch", batch_id, "cancel"),
                                                          int(time.time()), nx=True, ex=self.config.ttl_s)))

    async def cancel_requested(self, batch_id: str) -> int | None:
        """When a cancel was asked for, or None."""
        raw = await self.store.call(lambda r: r.get(self.store.key("batch", batch_id, "cancel")))
        return int(raw) if raw else None
