"""Shadow copies: a route's ``shadow`` share of generated /v1/copy answers is written again by another adapter
version, after the answer has gone, and scored against it (``AdapterEvaluation.record_shadow``).

The caller never waits for a shadow and never sees it: it runs in a task of its own at batch priority (engines
with priority scheduling put it behind every live request), is not cached, not kept in a session and not
charged to the caller's limits. Each ingress replica runs at most ``max_in_flight`` at once; past that a
shadow is skipped (and counted), so shadowing cannot pile work onto a busy service."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import replace

from contracts import metrics
from contracts.errors import CopyServeError, OverloadedError
from deployments import model_calls
from deployments.generation import SamplingOptions
from deployments.router import CopyPlan
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.state.adapter_releases import AdapterRegistry
from serve_app.copy_pipeline import CopyPipeline
from serve_app.protocol import CopyRequest

logger = logging.getLogger("copyserve.shadow")


class ShadowRunner:
    def __init__(self, pipeline: CopyPipeline, registry: AdapterRegistry, evaluation: AdapterEvaluation,
                 max_in_flight: int, rng: random.Random | None = None):
        self.pipeline, self.registry, self.evaluation = pipeline, registry, evaluation
        self.max_in_flight = max_in_flight
        self._rng = rng or random.Random()
        self._running: set[asyncio.Task] = set()  # held: the loop keeps only weak references to tasks

    def offer(self, body: CopyRequest, plan: CopyPlan, sampling: SamplingOptions, served: dict,
              request_id: str) -> None:
        """A generated answer, ``served``: shadow it when its route says so and the draw falls in the share."""
        shadow = plan.route.shadow
        if shadow is None or self.max_in_flight == 0 or self._rng.random() >= shadow.share:
            return
        if len(self._running) >= self.max_in_flight:
            self._count(shadow.adapter, "busy")
            return
        task = asyncio.get_running_loop().create_task(self._run(body, plan, sampling, served, request_id))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("shadow copy failed outside its model call: %r", task.exception())

    async def _run(self, body: CopyRequest, plan: CopyPlan, sampling: SamplingOptions, served: dict,
                   request_id: str) -> None:
        spec = plan.route.shadow.adapter
        await asyncio.sleep(0)  # the answer's own response goes out before any of this work
        try:
            adapter = await self.registry.resolve(spec, "shadow.adapter")
        except CopyServeError as err:  # Redis down, or the name deleted since the route was set
            logger.info("shadow %s not resolved: %s", spec, err)
            self._count(spec, "unservable")
            return
        if adapter.kind != "lora" or adapter.base_model not in self.pipeline.models:
            self._count(spec, "unservable")  # the alias moved onto merged weights or a model not served here
            return
        if adapter.ref.tag == served.get("adapter"):
            self._count(spec, "same")  # the shadow version wrote the answer: nothing to compare it with
            return
        shadow_plan = replace(plan, route=replace(plan.route, model=adapter.base_model, shadow=None),
                              adapter=adapter.ref)
        try:
            with model_calls.priority(model_calls.BATCH_PRIORITY):
                payload = await self.pipeline.run(body, shadow_plan, sampling, f"{request_id}-shadow",
                                                  time.monotonic())
        except OverloadedError:
            self._count(spec, "overloaded")  # the queue's fault, not the version's
            return
        except Exception as err:  # the version failed to write copy: evidence against it, never the caller's error
            logger.info("shadow copy by %s failed: %r", adapter.ref.tag, err)
            self.evaluation.record_shadow_error(adapter.ref, served.get("adapter"))
            self._count(spec, "error")
            return
        self._count(spec, self.evaluation.record_shadow(payload, served) or "error")

    @staticmethod
    def _count(spec: str, outcome: str) -> None:
        metrics.SHADOWS.inc(tags={"adapter": spec.partition("@")[0], "outcome": outcome})

    async def drain(self) -> None:
        """Wait for the shadows in flight (tests; a replica shutting down)."""
        await asyncio.gather(*list(self._running), return_exceptions=True)
