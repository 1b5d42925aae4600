"""The OpenAI Batch API (a mixin of ``Ingress``): /v1/files and /v1/batches, as the ``openai`` SDK calls
them. Files and batches belong to the key that made them; another key gets 404, never a hint. The
lines run in ``batch_runner.py``."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from contracts.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    to_error_body,
)
from deployments import model_calls
from deployments.state.files import CHUNK, TooLarge
from serve_app.access import Caller, caller, owner_of
from serve_app.batch_runner import COMPLETION_WINDOW_S, ENDPOINTS, parse_lines
from serve_app.http import FastJSONResponse, internal_request, validation_error
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest
from serve_app.protocol import CopyRequest

PRIVATE = ("owner", "key_id")  # kept in Redis, never shown

router = APIRouter(dependencies=[Depends(caller)])


class BatchRequest(BaseModel):
    input_file_id: str = Field(..., min_length=1, max_length=64, description="A file uploaded with purpose batch.")
    endpoint: str = Field(..., description=f"One of {', '.join(ENDPOINTS)}.")
    completion_window: str = Field("24h", description="Only 24h.")
    metadata: dict[str, str] | None = Field(None, max_length=16, description="Up to 16 string pairs.")


def batch_error(exc: BaseException, request_id: str) -> tuple[int, dict, float]:
    status, body, headers = to_error_body(exc, request_id)
    return status, body, float(headers.get("Retry-After", 1))


def public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in PRIVATE}


class BatchesAPI:
    """Uses the ingress's state: access, batches (``BatchStore``), config."""

    @router.post("/v1/files")
    async def upload_file(self, key: Caller, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]):
        if purpose != "batch":
            raise InvalidRequestError(f"purpose {purpose!r} is not served here: upload batch input files with "
                                      "purpose 'batch'", "purpose")
        limit = self.config.batch.max_file_bytes

        async def parts():
            while part := await file.read(CHUNK):
                yield part

        try:  # streamed into the store, counted as it goes: the limit holds without the file in memory
            meta = await self.batches.create_file(owner_of(key), file.filename or "upload.jsonl", purpose, parts(),
                                                  limit)
        except TooLarge:
            raise PayloadTooLargeError(f"the file is larger than the limit of {limit} bytes (batch.max_file_bytes); "
                                       "split it into several batches", "file") from None
        except OSError as err:
            raise ServiceUnavailableError(f"the file store cannot take the file now ({err.strerror or err}); try "
                                          "again later") from None
        if meta is None:
            raise ServiceUnavailableError("redis is unavailable: the file was not stored; try again")
        return FastJSONResponse(public(meta))

    @router.get("/v1/files")
    async def list_files(self, key: Caller):
        return FastJSONResponse({"object": "list", "data": [public(f) for f in
                                                            await self.batches.list_files(owner_of(key))]})

    @router.get("/v1/files/{file_id}")
    async def get_file(self, file_id: str, key: Caller):
        return FastJSONResponse(public(await self._file(owner_of(key), file_id)))

    @router.get("/v1/files/{file_id}/content")
    async def file_content(self, file_id: str, key: Caller):
        meta = await self._file(owner_of(key), file_id)
        try:
            size, parts = await self.batches.files.open(meta["id"])
        except OSError:
            raise NotFoundError(f"the content of file {file_id} is gone from the file store", "file_id") from None
        headers = {"Content-Length": str(size)} if size is not None else None
        return StreamingResponse(parts, media_type="application/jsonl", headers=headers)

    @router.delete("/v1/files/{file_id}")
    async def delete_file(self, file_id: str, key: Caller):
        await self._file(owner_of(key), file_id)
        running = [b["id"] for b in await self.batches.list_batches(owner_of(key))
                   if b["input_file_id"] == file_id and b["status"] in ("validating", "in_progress", "finalizing")]
        if running:
            raise ConflictError(f"file {file_id} is the input of batch {running[0]}, which is still running; delete it "
                                "once the batch has ended, or cancel the batch first", "file_id")
        if not await self.batches.delete_file(owner_of(key), file_id):
            raise ServiceUnavailableError("redis is unavailable: the file was not deleted; try again")
        return FastJSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def _file(self, owner: str | None, file_id: str) -> dict:
        meta = await self.batches.get_file(owner, file_id)
        if meta is None:
            raise NotFoundError(f"no file {file_id!r} for this key", "file_id")
        return meta

    @router.post("/v1/batches")
    async def create_batch(self, body: BatchRequest, key: Caller):
        if body.endpoint not in ENDPOINTS:
            raise InvalidRequestError(f"endpoint {body.endpoint!r} cannot be batched; use one of "
                                      f"{', '.join(ENDPOINTS)}", "endpoint")
        if body.completion_window != "24h":
            raise InvalidRequestError("completion_window must be '24h'", "completion_window")
        meta = await self._file(owner_of(key), body.input_file_id)
        if meta["purpose"] != "batch":
            raise InvalidRequestError(f"file {body.input_file_id} has purpose {meta['purpose']!r}, not 'batch'",
                                      "input_file_id")
        try:
            lines, invalid = parse_lines(await self.batches.files.read(meta["id"]), body.endpoint)
        except OSError:
            raise NotFoundError(f"the content of file {body.input_file_id} is gone from the file store",
                                "input_file_id") from None
        total = len(lines) + len(invalid)
        if not total or total > self.config.batch.max_lines:
            raise InvalidRequestError(f"the input file holds {total} requests; a batch takes 1 to "
                                      f"{self.config.batch.max_lines} (batch.max_lines)", "input_file_id")
        now = int(time.time())
        record = {"id": f"batch_{uuid.uuid4().hex[:24]}", "object": "batch", "endpoint": body.endpoint,
                  "errors": None, "input_file_id": body.input_file_id, "completion_window": "24h",
                  "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
                  "in_progress_at": None, "expires_at": now + COMPLETION_WINDOW_S, "finalizing_at": None,
                  "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
                  "cancelled_at": None, "request_counts": {"total": total, "completed": 0, "failed": 0},
                  "metadata": body.metadata, "owner": owner_of(key) or "-", "key_id": key.id if key else None}
        if not await self.batches.create_batch(record):
            raise ServiceUnavailableError("redis is unavailable: the batch was not created; try again")
        return FastJSONResponse(public(record))

    @router.get("/v1/batches")
    async def list_batches(self, key: Caller, limit: int = 20, after: str | None = None):
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit must be between 1 and 100", "limit")
        batches = [await self._view(b) for b in await self.batches.list_batches(owner_of(key))]
        if after:
            ids = [b["id"] for b in batches]
            batches = batches[ids.index(after) + 1:] if after in ids else []
        page = batches[:limit]
        return FastJSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                 "last_id": page[-1]["id"] if page else None, "has_more": len(batches) > limit})

    @router.get("/v1/batches/{batch_id}")
    async def get_batch(self, batch_id: str, key: Caller):
        return FastJSONResponse(await self._view(await self._batch(owner_of(key), batch_id)))

    @router.post("/v1/batches/{batch_id}/cancel")
    async def cancel_batch(self, batch_id: str, key: Caller):
        batch = await self._batch(owner_of(key), batch_id)
        if batch["status"] in ("validating", "in_progress"):
            await self.batches.cancel(batch_id)
        return FastJSONResponse(await self._view(batch))

    async def _batch(self, owner: str | None, batch_id: str) -> dict:
        batch = await self.batches.get_batch(owner, batch_id)
        if batch is None:
            raise NotFoundError(f"no batch {batch_id!r} for this key", "batch_id")
        return batch

    async def _view(self, batch: dict) -> dict:
        """The public record; a cancel asked for but not yet reached by the runner shows as cancelling."""
        view = public(batch)
        if view["status"] in ("validating", "in_progress"):
            asked = await self.batches.cancel_requested(batch["id"])
            if asked:
                view.update(status="cancelling", cancelling_at=asked)
        return view

    async def _run_batch_line(self, endpoint: str, body: dict, key, request_id: str) -> tuple[int, dict, float]:
        """One batch line through its endpoint's own handler: the same validation, messages, cache and token
        reservation as over HTTP. Returns the status, the body and, for a 429, how long to wait."""
        # The line's key was checked when the batch was created: it is handed to the handlers as their `key`
        # dependency would be, or, for /v1/copy (which checks by hand), in internal_request for the check.
        model, handler = {"/v1/copy": (CopyRequest, self.copy),
                          "/v1/chat/completions": (ChatCompletionRequest, partial(self.chat_completions, key=key)),
                          "/v1/completions": (CompletionRequest, partial(self.completions, key=key))}[endpoint]
        try:
            parsed = model.model_validate(body)
        except ValidationError as err:
            return batch_error(validation_error(err.errors()), request_id)
        if getattr(parsed, "stream", False):
            return batch_error(InvalidRequestError("stream is not served in a batch: leave it out", "stream"),
                               request_id)
        try:
            with model_calls.priority(model_calls.BATCH_PRIORITY):  # live requests go first on the engines
                answer = await handler(parsed, internal_request(endpoint, request_id, key))
        except Exception as err:  # mapped exactly as the endpoint maps it
            return batch_error(err, request_id)
        if isinstance(answer, Response):
            return answer.status_code, orjson.loads(answer.body), 0.0
        return 200, answer, 0.0
