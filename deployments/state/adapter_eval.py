"""Per adapter version, running sums of what its answers scored (``deployments/releases/evaluation.py``).

Key (under the store's prefix): ``adapter:<name>:eval:v<N>``, a hash of ``samples`` (answers) and, per metric,
``<metric>:n``, ``<metric>:sum`` and ``<metric>:sq``. Shadow answers (a route's ``shadow``) add to the same sums
(not to the latency ones), to ``shadow_samples``, and to ``vs:<served tag>:win|loss|tie``: the pairwise count
against the version (``name@vN``, or ``base``) that answered the request. Version numbers are never given twice,
so a key always belongs to one content; registering content again adds nothing and resets nothing. Deleting a
version or a name deletes its keys (``AdapterRegistry``).

Recording is fire-and-forget: a task per answer, one MULTI/EXEC of HINCRBYFLOATs, off the response path.
While Redis is down nothing is recorded and nobody is told but the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from deployments.releases.adapters import AdapterRef
from deployments.releases.evaluation import LIVE_ONLY, judge, observe, pair_field
from deployments.state.store import RedisStore

logger = logging.getLogger("copyserve.evaluation")
MAX_PENDING = 1000  # writes in flight per replica; beyond this, while Redis crawls, answers go unrecorded


def evaluation_key(store: RedisStore, name: str, version: int) -> str:
    return store.key("adapter", name, "eval", f"v{version}")


def parse_tag(tag: str | None) -> tuple[str, int] | None:
    """``name@vN`` (what answers say served them) as (name, N); None for base weights or anything else."""
    name, _, version = (tag or "").partition("@")
    if not name or not version.startswith("v") or not version[1:].isdigit():
        return None
    return name, int(version[1:])


class AdapterEvaluation:
    def __init__(self, store: RedisStore):
        self.store = store
        self._pending: set[asyncio.Task] = set()
        # Told each adapter name whose sums a write grew, once written (the release autopilot reads them then).
        self.on_written: Callable[[str], None] | None = None

    def record(self, payload: dict) -> None:
        """An answered copy, for the version its ``adapter`` names. Never raises."""
        try:
            served = parse_tag(payload.get("adapter"))
            if served is not None:
                self._spawn(*served, observe(payload), answered=True)
        except Exception:  # a scoring bug must not fail the copy it scores
            logger.exception("adapter evaluation: could not score an answer")

    def record_error(self, adapter: AdapterRef | None) -> None:
        """A request that named ``adapter`` and failed. Never raises."""
        try:
            if adapter is not None:
                self._spawn(adapter.name, adapter.version, {"error": 1.0}, answered=False)
        except Exception:  # the request's own error is what its caller must see
            logger.exception("adapter evaluation: could not record an error")

    def record_shadow(self, shadow: dict, served: dict) -> str | None:
        """A shadow answer for the version that wrote it, judged against the answer ``served`` to the same
        request: the outcome ("win", "loss", "tie"); None when it could not be scored. Never raises."""
        try:
            version = parse_tag(shadow.get("adapter"))
            if version is None:
                return None
            mine = observe(shadow)
            outcome = judge(mine, observe(served))
            values = {k: v for k, v in mine.items() if k not in LIVE_ONLY}
            self._spawn(*version, values, answered=True, pair=(served.get("adapter") or "base", outcome))
            return outcome
        except Exception:  # a scoring bug must not stop the next shadow
            logger.exception("adapter evaluation: could not score a shadow answer")
            return None

    def record_shadow_error(self, adapter: AdapterRef, served: str | None) -> None:
        """A shadow of ``adapter`` that failed: an error for its version and a loss against ``served``."""
        try:
            self._spawn(adapter.name, adapter.version, {"error": 1.0}, answered=False, pair=(served or "base", "loss"))
        except Exception:  # nobody waits on a shadow: the log is its only reader
            logger.exception("adapter evaluation: could not record a shadow error")

    def _spawn(self, name: str, version: int, values: dict[str, float], answered: bool,
               pair: tuple[str, str] | None = None) -> None:
        if len(self._pending) >= MAX_PENDING:
            return
        task = asyncio.get_running_loop().create_task(self._write(name, version, values, answered, pair))
        self._pending.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("adapter evaluation: a write failed: %r", task.exception())

    async def _write(self, name: str, version: int, values: dict[str, float], answered: bool,
                     pair: tuple[str, str] | None) -> None:
        key = evaluation_key(self.store, name, version)

        async def write(r):
            # One transaction: a reader never sees a metric's n counted without its sum.
            pipe = r.pipeline(transaction=True)
            if answered:
                pipe.hincrbyfloat(key, "samples", 1)
            for metric, value in values.items():
                pipe.hincrbyfloat(key, f"{metric}:n", 1)
                if value:  # a missing sum reads as 0: fewer commands for the common zeros
                    pipe.hincrbyfloat(key, f"{metric}:sum", value)
                    pipe.hincrbyfloat(key, f"{metric}:sq", value * value)
            if pair is not None:
                if answered:
                    pipe.hincrbyfloat(key, "shadow_samples", 1)
                pipe.hincrbyfloat(key, pair_field(*pair), 1)
            return await pipe.execute()

        if await self.store.call(write) is not None and self.on_written is not None:
            self.on_written(name)

    async def read(self, name: str, versions: list[int]) -> dict[int, dict[str, str]] | None:
        """Each version's hash ({} for one without answers yet); None while Redis is down."""
        async def read(r):
            pipe = r.pipeline(transaction=False)
            for version in versions:
                pipe.hgetall(evaluation_key(self.store, name, version))
            return dict(zip(versions, await pipe.execute(), strict=True))

        return await self.store.call(read) if versions else {}

    async def drain(self) -> None:
        """Wait for the writes in flight (tests; a replica shutting down)."""
        await asyncio.gather(*list(self._pending), return_exceptions=True)
