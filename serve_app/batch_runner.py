"""Runs OpenAI Batch API jobs inside every ingress replica, beside live traffic.

A runner claims one batch at a time through a lease in Redis, checks its input file line by line, and
sends each request through the same handler its endpoint uses (same validation, messages, cache,
adapters, token reservations), ``batch.concurrency`` lines in flight so live requests keep their
latency. Each line's result is written to Redis once, under its line number: a runner that dies loses
nothing, and the one that takes the batch over skips what is done (no line is answered twice). The
output and error files are written at the end, in input order, each in one pass: the file store may be
object storage, which cannot append.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from contracts import metrics
from contracts.config import BatchConfig
from contracts.errors import ServiceUnavailableError
from deployments.state.batches import BatchStore
from deployments.state.files import CHUNK
from deployments.state.keys import KeyStore
from serve_app.batch_retry import wait_before_retry

logger = logging.getLogger("copyserve.batches")
POLL_S = 1.0
RECORD_ATTEMPTS = 5  # a line's answer waits this many tries (1+2+...+5 s) for Redis before the line is run again
CHECK_S = 1.0  # how often a running batch reads its cancel flag, renews its lease and saves its progress
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/copy")
COMPLETION_WINDOW_S = 24 * 3600
# (endpoint, body, key, request id) -> (status, body, seconds to wait before a retry when the status is 429)
RunLine = Callable[[str, dict, object, str], Awaitable[tuple[int, dict, float]]]


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, as an editor shows it
    custom_id: str
    body: dict


def parse_lines(data: bytes, endpoint: str) -> tuple[list[Line], dict[int, dict]]:
    """The runnable lines, and an error result for each line that is not a request of this batch."""
    lines, errors, seen = [], {}, {}
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        custom_id = None
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("a line must be one JSON object")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                raise ValueError("custom_id (a non-empty string) is missing")
            if custom_id in seen:
                raise ValueError(f"custom_id {custom_id!r} is already used by line {seen[custom_id]}")
            if item.get("method", "POST") != "POST":
                raise ValueError(f"method must be POST, not {item.get('method')!r}")
            if item.get("url") != endpoint:
                raise ValueError(f"url is {item.get('url')!r}, but this batch runs {endpoint}")
            if not isinstance(item.get("body"), dict):
                raise ValueError("body (a JSON object: the request) is missing")
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            message = f"line {number}: {err}" if not isinstance(err, json.JSONDecodeError) else \
                f"line {number} is not valid JSON ({err.msg} at column {err.colno})"
            errors[number] = error_line(custom_id if isinstance(custom_id, str) else None, "invalid_request", message)
            continue
        seen[custom_id] = number
        lines.append(Line(number, custom_id, item["body"]))
    return lines, errors


def error_line(custom_id: str | None, code: str, message: str) -> dict:
    return {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}


def response_line(custom_id: str, status: int, request_id: str, body: dict) -> dict:
    return {"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}


def jsonl_parts(rows: list[dict], part_bytes: int = CHUNK) -> Iterator[bytes]:
    """The rows as JSONL, in parts of about ``part_bytes``: the file store uploads them as they come."""
    part = bytearray()
    for row in rows:
        part += (json.dumps(row, ensure_ascii=False) + "\n").encode()
        if len(part) >= part_bytes:
            yield bytes(part)
            part.clear()
    if part:
        yield bytes(part)


def succeeded(result: dict) -> bool:
    return result["error"] is None and 200 <= result["response"]["status_code"] < 300


class BatchRunner:
    def __init__(self, batches: BatchStore, keys: KeyStore, run_line: RunLine, config: BatchConfig):
        self.batches, self.keys, self.run_line, self.config = batches, keys, run_line, config
        self.id = f"runner-{uuid.uuid4().hex[:12]}"
        self._keys: dict[str, object] = {}  # the last read of each batch's key

    async def run(self) -> None:
        """Forever: take any active batch no runner holds, run it to the end, give it back."""
        while True:
            try:
                for batch_id in await self.batches.active():
                    if await self.batches.claim(batch_id, self.id):
                        try:
                            await self.run_batch(batch_id)
                        finally:
                            await self.batches.release(batch_id)
            except ServiceUnavailableError:
                pass  # Redis is down: try again on the next pass
            except Exception:  # a runner must outlive one bad batch
                logger.exception("batch runner %s: a pass failed; trying again", self.id)
            await asyncio.sleep(POLL_S)

    async def run_batch(self, batch_id: str) -> None:
        batch = await self.batches.load(batch_id)
        if batch is None or batch["status"] in ("completed", "failed", "cancelled", "expired"):
            await self.batches.finish(batch_id)  # expired from Redis, or finished by a runner that then died
            return
        while True:  # a pass per look at what Redis holds: a line whose answer went unrecorded runs again
            pending = await self._pending(batch)
            if pending is None:
                return
            if not pending:
                break
            stop = await self._run_window(batch, pending)
            if stop and stop[0] == "lost":
                logger.warning("batch %s: lease lost to another runner; leaving it", batch_id)
                return
            if stop:
                return await self._end(batch, *stop)
            if await self.batches.cancel_requested(batch_id):
                break
        await self._end(batch, "cancelled" if await self.batches.cancel_requested(batch_id) else "completed")

    async def _run_window(self, batch: dict, pending: list[Line]) -> tuple[str, list[dict] | None] | None:
        """Run ``pending`` with ``batch.concurrency`` lines in flight; why the batch must stop early, if it must."""
        counts = batch["request_counts"]
        todo = iter(pending)  # shared by the workers: each line is taken once
        stop: list[tuple[str, list[dict] | None]] = []  # why the batch stops early, once a check finds it
        checked = {"at": float("-inf"), "key": None}
        lock = asyncio.Lock()

        async def may_go_on() -> bool:
            """The batch's checks (cancel, lease, expiry, key), run for all workers at most once per CHECK_S,
            each time saving the progress GET /v1/batches/{id} shows: not a write per line."""
            async with lock:
                if not stop and time.monotonic() - checked["at"] >= CHECK_S:
                    reason, errors, checked["key"] = await self._before_round(batch)
                    checked["at"] = time.monotonic()
                    if reason:
                        stop.append((reason, errors))
                    else:
                        await self.batches.save(batch)
            return not stop

        async def worker() -> None:
            # A window, not rounds: a worker takes the next line as soon as its own ends, so the engine never
            # waits for a round's longest answer.
            for line in todo:
                if not await may_go_on():
                    return
                outcome = await self._run_one(batch, line, checked["key"], may_go_on)
                if outcome is not None:  # None: answered by another runner already, or left for the batch's stop
                    counts["completed" if outcome else "failed"] += 1
                    metrics.BATCH_LINES.inc(tags={"endpoint": batch["endpoint"], "outcome": "ok" if outcome else
                                                  "failed"})

        await asyncio.gather(*(worker() for _ in range(self.config.concurrency)))
        return stop[0] if stop else None

    async def _pending(self, batch: dict) -> list[Line] | None:
        """The lines still to run (the invalid ones recorded as errors), the batch marked in progress; None
        when the batch ended here (its input is gone) or must wait (Redis is down)."""
        try:
            lines, invalid = parse_lines(await self.batches.files.read(batch["input_file_id"]), batch["endpoint"])
        except OSError:
            await self._end(batch, "failed", errors=[{"code": "input_file_missing", "line": None,
                                                      "message": "the input file is gone from the file store"}])
            return None
        for number, result in invalid.items():
            if await self.batches.record(batch["id"], number, result):
                metrics.BATCH_LINES.inc(tags={"endpoint": batch["endpoint"], "outcome": "failed"})
        done = await self.batches.results(batch["id"])
        if done is None:
            return None  # Redis is down: nothing could be recorded; a later pass comes back to this batch
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        ok = sum(succeeded(r) for r in done.values())
        batch["request_counts"].update(total=len(lines) + len(invalid), completed=ok, failed=len(done) - ok)
        await self.batches.save(batch)
        return [line for line in lines if line.number not in done]

    async def _before_round(self, batch: dict) -> tuple[str | None, list[dict] | None, object]:
        """Whether to stop before the next lines (cancelled, lease lost, expired, key revoked) and the key to
        run them with, read each round: a revoke stops the batch."""
        if await self.batches.cancel_requested(batch["id"]):
            return "cancelled", None, None
        if not await self.batches.renew(batch["id"], self.id):
            return "lost", None, None
        if batch.get("expires_at") and time.time() > batch["expires_at"]:
            return "expired", None, None
        if not batch.get("key_id"):
            return None, None, None  # auth off
        try:
            key = self._keys[batch["key_id"]] = await self.keys.get(batch["key_id"])
        except ConnectionError:  # Redis is down: the lines fail open as live requests do, with the key as it was
            key = self._keys.get(batch["key_id"])
        if key is None or key.revoked:
            return "failed", [{"code": "key_revoked", "line": None, "message": "the API key that created this "
                               "batch was revoked; its remaining lines were not run"}], None
        return None, None, key

    async def _run_one(self, batch: dict, line: Line, key, may_go_on: Callable[[], Awaitable[bool]]) -> bool | None:
        """Run a line and record its result: whether it succeeded, or None when it had a result already or was
        left unanswered (the batch stopped while the line waited to run again)."""
        request_id = f"{batch['id']}-{line.number}"
        give_up_at = time.monotonic() + self.config.unavailable_retry_s
        while True:
            status, body, retry_after_s = await self.run_line(batch["endpoint"], line.body, key, request_id)
            wait_s = wait_before_retry(status, retry_after_s, give_up_at)
            if wait_s is None:
                break
            if status == 503:
                metrics.BATCH_LINE_RETRIES.inc(tags={"endpoint": batch["endpoint"]})
            await asyncio.sleep(wait_s)
            if not await may_go_on():  # a wait renews the lease and hears a cancel, as a new line would
                return None
        result = response_line(line.custom_id, status, request_id, body)
        for attempt in range(RECORD_ATTEMPTS):
            recorded = await self.batches.record(batch["id"], line.number, result)
            if recorded is not None:
                return succeeded(result) if recorded else None
            await asyncio.sleep(POLL_S * (attempt + 1))  # Redis away: the answer is here, wait for it to come back
        logger.warning("batch %s: line %d answered but not recorded (redis away); it runs again", batch["id"],
                       line.number)
        return None

    async def _end(self, batch: dict, status: str, errors: list[dict] | None = None) -> None:
        now = int(time.time())
        batch.update(status="finalizing", finalizing_at=now)
        await self.batches.save(batch)
        results = await self.batches.results(batch["id"])
        if results is None:
            logger.warning("batch %s: redis unavailable while finalizing; a runner will try again", batch["id"])
            return
        for kind, keep in (("output", True), ("error", False)):
            rows = [results[n] for n in sorted(results) if succeeded(results[n]) == keep]
            if rows:
                meta = await self.batches.create_file(batch["owner"], f"{batch['id']}_{kind}.jsonl", "batch_output",
                                                      jsonl_parts(rows))
                if meta is None:  # the answers stay in Redis until their files are written
                    logger.warning("batch %s: the %s file could not be registered; a runner will try again",
                                   batch["id"], kind)
                    return
                batch[f"{kind}_file_id"] = meta["id"]
        ok = sum(succeeded(r) for r in results.values())
        batch["request_counts"].update(completed=ok, failed=len(results) - ok)
        cancelling_at = await self.batches.cancel_requested(batch["id"])
        if cancelling_at:
            batch["cancelling_at"] = cancelling_at
        batch.update(status=status, **{f"{status}_at": now})
        if errors:
            batch["errors"] = {"object": "list", "data": errors}
        await self.batches.save(batch)
        await self.batches.finish(batch["id"])
        metrics.BATCHES.inc(tags={"endpoint": batch["endpoint"], "status": status})
        logger.info("batch %s %s: %d ok, %d failed", batch["id"], status, ok, len(results) - ok)
