"""The native copy API (a mixin of ``Ingress``): /v1/copy and /v1/copy/revise, whole or streamed.

HTTP only: the response cache, the token reservation and the session around the copy pipeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response

from contracts import metrics
from deployments.generation import SamplingOptions
from deployments.state.keys import ApiKey
from serve_app.access import Caller, owner_of
from serve_app.http import FastJSONResponse, request_id_of, sse_response
from serve_app.protocol import CopyRequest, CopyResponse, RevisionRequest


def server_timing(cache_s: float) -> dict[str, str]:
    return {"Server-Timing": f"cache;dur={cache_s * 1000:.2f}"} if cache_s else {}


# No router-wide dependency: /v1/copy checks its key itself (below), so each route declares its own.
router = APIRouter()


class CopyAPI:
    """Uses the ingress's state: access, pipeline, cache, evaluation, shadows, and its adapter and merged-weights
    lookups."""

    @router.post("/v1/copy", response_model=CopyResponse)
    async def copy(self, body: CopyRequest, request: Request):
        received, request_id = time.monotonic(), request_id_of(request)
        # The key check and the route lookup are independent Redis round trips: one wait, not two. So this is
        # the one route that calls the check by hand: FastAPI solves dependencies one after another. A bad key
        # still answers 401 before a bad request's 400. (A batch line's key comes in its internal_request.)
        key, plan = await asyncio.gather(self.access.check(request), self.pipeline.plan(body), return_exceptions=True)
        for outcome in (key, plan):
            if isinstance(outcome, BaseException):
                raise outcome
        adapter = body.adapter or plan.route.adapter  # the request's choice over the live route's
        if adapter:
            plan = replace(plan, adapter=await self._adapter(adapter, plan.route.model))
        weights = await self._merged_weights(plan.route.model)
        # Resolved once: the cache key, the token reservation and the engine read the same sampling.
        sampling = self.pipeline.sampling(body, plan)
        material = self.pipeline.cache_material(body, plan, sampling, weights)
        cache_key = self.cache.key(material) if material else None
        cache_s = 0.0  # time spent in Redis for the cache, sent as Server-Timing
        if cache_key and "no-cache" not in request.headers.get("cache-control", "").lower():
            started = time.perf_counter()
            cached = await self.cache.get(cache_key)
            cache_s = time.perf_counter() - started
            if cached is not None:
                metrics.record_copy(cached, "hit", time.monotonic() - received)
                return await self._answer(body, self._replay(cached), request_id, "hit", cache_s)

        async def finish(payload: dict) -> None:
            nonlocal cache_s
            # Mid-roll an old replica may answer: its copy must not be cached under the new weights.
            served = plan.adapter or weights
            if cache_key and payload["adapter"] == (served.tag if served else None):
                started = time.perf_counter()
                await self.cache.put(cache_key, payload)
                cache_s += time.perf_counter() - started
            if body.session_id:
                await self.pipeline.remember(owner_of(key), body.session_id, plan, payload)
            metrics.record_copy(payload, "miss" if cache_key else "off", time.monotonic() - received)
            self.evaluation.record(payload)  # new evidence for the version that wrote it (a hit is none)
            self.shadows.offer(body, plan, sampling, payload, request_id)  # in a task of its own, at batch priority

        return await self._run(body, plan, sampling, key, request_id, received, finish, lambda: cache_s,
                               lambda: self.evaluation.record_error(plan.adapter or weights))

    @router.post("/v1/copy/revise", response_model=CopyResponse)
    async def revise(self, body: RevisionRequest, request: Request, key: Caller):
        received, request_id = time.monotonic(), request_id_of(request)
        plan = await self.pipeline.plan_revision(body, owner_of(key))

        async def finish(payload: dict) -> None:
            await self.pipeline.remember(owner_of(key), body.session_id, plan, payload)
            metrics.record_copy(payload, "off", time.monotonic() - received)

        return await self._run(body, plan, self.pipeline.sampling(body, plan), key, request_id, received, finish)

    async def _run(self, body, plan, sampling: SamplingOptions, key: ApiKey | None, request_id: str, received: float,
                   finish, cache_s=lambda: 0.0, failed=lambda: None) -> Response:
        """Generate (whole or streamed) under a token reservation of ``n × max_tokens``, settled at the end.
        ``failed`` is told when generating fails (not the reservation, a client gone, or the bookkeeping after)."""
        reserve = sampling.n * sampling.max_tokens

        async def done(payload: dict, reservation) -> None:
            await self.access.settle(reservation, payload["usage"], payload["model"], payload["adapter"])
            await finish(payload)

        if not body.stream:
            async with self.access.metered(key, reserve) as reservation:
                try:
                    payload = await self.pipeline.run(body, plan, sampling, request_id, received)
                except Exception:
                    failed()
                    raise
                await done(payload, reservation)
            return FastJSONResponse(payload, headers={"X-Cache": "miss", **server_timing(cache_s())})

        async def events():
            async with self.access.metered(key, reserve) as reservation:
                answered = False
                try:
                    async for event in self.pipeline.stream(body, plan, sampling, request_id, received):
                        if event["type"] == "final":
                            answered = True
                            await done({k: v for k, v in event.items() if k != "type"}, reservation)
                        yield event
                except Exception:
                    if not answered:
                        failed()
                    raise

        return await self._answer(body, events(), request_id, "miss")

    @staticmethod
    async def _replay(payload: dict) -> AsyncIterator[dict]:
        yield {"type": "delta", "attempt": payload["attempts"], "index": 0, "text": payload["raw_text"]}
        yield {"type": "final", **payload}

    async def _answer(self, body, events: AsyncIterator[dict], request_id: str, cache: str,
                      cache_s: float = 0.0) -> Response:
        headers = {"X-Cache": cache, **server_timing(cache_s)}
        if body.stream:
            return await sse_response(events, request_id, done_marker=False, headers=headers)
        final = [e async for e in events][-1]
        return FastJSONResponse({k: v for k, v in final.items() if k != "type"}, headers=headers)
