"""The batch file store: uploaded inputs and the output/error files, one object per file, in
``batch.files_dir``: a local folder (the default) or any fsspec URL (``s3://bucket/prefix``, ``gs://...``,
``memory://...``, ``file:///...``). Credentials come from the environment and fsspec's own config.

Files are written once and never changed (object stores cannot append): the runner keeps each line's
result in Redis and writes the whole output file at the end, so a runner that dies leaves nothing
half-appended to resume from. Every fsspec call runs in a thread: object stores block on the network.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK = 1 << 20  # read and write in 1 MiB parts: an upload or download is never held whole


class TooLarge(ValueError):
    """More bytes than the limit: nothing is kept."""


Data = bytes | Iterable[bytes] | AsyncIterable[bytes]


async def _parts(data: Data) -> AsyncIterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    elif isinstance(data, AsyncIterable):
        async for part in data:
            yield part
    else:
        for part in data:
            yield part


class FileStore:
    def __init__(self, location: str):
        # A plain path keeps the old meaning ("~" expanded, relative to where the service starts).
        url = location if "://" in location else os.path.expanduser(location)
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.url = location
        self._local = isinstance(self.fs, LocalFileSystem)

    def path(self, file_id: str) -> str:
        return posixpath.join(self.root, f"{file_id}.jsonl")

    async def write(self, file_id: str, data: Data, limit: int | None = None) -> int:
        """Store a file from bytes or parts (sync or async); its size. Past ``limit`` bytes: ``TooLarge``,
        and the partial file is removed."""
        path = self.path(file_id)
        if self._local:  # object stores have no folders (and makedirs there may try to create a bucket)
            await asyncio.to_thread(self.fs.makedirs, self.root, exist_ok=True)
        sink = await asyncio.to_thread(self.fs.open, path, "wb")
        size = 0
        try:
            async for part in _parts(data):
                size += len(part)
                if limit is not None and size > limit:
                    raise TooLarge(f"more than {limit} bytes")
                if part:
                    await asyncio.to_thread(sink.write, part)
            await asyncio.to_thread(sink.close)
        except BaseException:
            await asyncio.to_thread(self._abandon, sink, path)
            raise
        return size

    def _abandon(self, sink, path: str) -> None:
        try:
            sink.close()  # an object store's close may still upload what was written: removed next
        except Exception:
            pass
        self._remove(path)

    async def read(self, file_id: str) -> bytes:
        """The whole file; ``FileNotFoundError`` (an ``OSError``) when it is gone."""
        return await asyncio.to_thread(self.fs.cat_file, self.path(file_id))

    async def open(self, file_id: str) -> tuple[int | None, AsyncIterator[bytes]]:
        """The file's size and its bytes in parts, for a streamed download. Opened here, so a missing file
        raises ``FileNotFoundError`` before a response starts."""
        source = await asyncio.to_thread(self.fs.open, self.path(file_id), "rb")
        return getattr(source, "size", None), self._stream(source)

    async def _stream(self, source) -> AsyncIterator[bytes]:
        try:
            while part := await asyncio.to_thread(source.read, CHUNK):
                yield part
        finally:
            source.close()  # a read handle: nothing to upload, cheap on the loop (also when the client left)

    async def size(self, file_id: str) -> int:
        return await asyncio.to_thread(self.fs.size, self.path(file_id))

    async def delete(self, file_id: str) -> None:
        """Remove the file; one already gone is fine."""
        await asyncio.to_thread(self._remove, self.path(file_id))

    def _remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
