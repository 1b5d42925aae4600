"""ModelServer deployment: one per configured model, a vLLM engine inside each replica.

Serve concerns live here (streaming through handles, timings, abort on cancel, health);
the engine is injected so unit tests can run this class with a fake engine and no Serve.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator

from contracts.config import ModelConfig
from contracts.errors import EngineStoppedError, quiet_client_errors
from contracts.process import freeze_startup_heap
from deployments.coalesce import Coalescer
from deployments.engines.base import LLMEngine
from deployments.generation import Completion, Delta, GenerationRequest
from deployments.releases.merged_weights import weights_from_env, with_merged_weights

logger = logging.getLogger("copyserve.model_server")
DEFAULT_ENGINE = "deployments.engines.vllm_engine:VLLMEngine"


def deployment_name(model: str) -> str:
    """The Serve deployment that serves ``model``."""
    return f"model-{model}"


def stop_process() -> None:
    os._exit(1)  # no cleanup to run: the engine is gone, and Serve starts a replacement


def load_engine_class(path: str) -> type[LLMEngine]:
    """``module:Class`` → class; imported lazily so only replicas load vLLM."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class ModelServer:
    """Serves one model. ``generate`` answers whole; ``generate_stream`` yields deltas then a Completion.

    A replica whose engine died stops its own process at once instead of failing requests until Serve's
    health check (period × failures, ~45 s by default) notices: a replica that fails fast wins most of the
    routing, so it would take most of the traffic. Its death is immediate news to Serve, which routes to
    the live replicas and starts a new one; the calls in flight fail as a lost replica, which
    ``model_calls`` retries elsewhere.
    """

    stop_replica = staticmethod(stop_process)  # tests replace it

    async def __init__(self, model: ModelConfig, engine_cls: str = DEFAULT_ENGINE):
        quiet_client_errors()
        self.model = model
        # Merged adapter weights come with the replica's actor options (see merged_weights).
        self.weights = weights_from_env()
        self.engine: LLMEngine = load_engine_class(engine_cls)(with_merged_weights(model, self.weights))
        started = time.monotonic()
        await self.engine.start()
        logger.info("model %s%s ready in %.1fs", model.name, f" with {self.weights.tag}" if self.weights else "",
                    time.monotonic() - started)
        freeze_startup_heap()

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[list[Delta] | Completion]:
        """Token deltas (coalesced: see ``deployments/coalesce.py``), then one final Completion with usage and timings.

        When the caller goes away Serve cancels this generator; the engine request is aborted
        in ``finally`` so no decoding continues for nobody.
        """
        started = time.monotonic()
        n = request.sampling.n
        texts, reasons = [""] * n, [None] * n
        logprobs = [[] for _ in range(n)] if request.sampling.logprobs is not None else None
        tool_calls = [()] * n if request.auto_tools else None
        first_token_s, step = None, None
        finished = False
        coalescer = Coalescer(self.model.stream_interval_ms / 1000)
        try:
            async for step in self._engine_steps(request):
                if first_token_s is None and step.completion_tokens:
                    first_token_s = time.monotonic() - started
                # A step can decode half a multi-byte character: its text is empty until the rest arrives.
                deltas = [d for d in step.deltas if d.text or d.finish_reason or d.logprobs or d.tool_calls]
                for d in deltas:
                    texts[d.index] += d.text
                    reasons[d.index] = d.finish_reason or reasons[d.index]
                    if logprobs is not None:
                        logprobs[d.index].extend(d.logprobs)
                    if d.answer is not None and tool_calls is not None:  # the finished sequence parsed whole
                        texts[d.index], tool_calls[d.index] = d.answer.content, d.answer.calls
                if deltas and (ready := coalescer.add(deltas)):
                    yield ready
            if rest := coalescer.flush():
                yield rest
            finished = True
        finally:
            if not finished:
                await asyncio.shield(self.engine.abort(request.request_id))
        yield Completion(
            model=self.model.name, texts=texts, finish_reasons=reasons,
            prompt_tokens=step.prompt_tokens if step else 0,
            completion_tokens=step.completion_tokens if step else 0,
            first_token_s=first_token_s, total_s=time.monotonic() - started,
            weights=self.weights.tag if self.weights else None, logprobs=logprobs, tool_calls=tool_calls,
        )

    async def _engine_steps(self, request: GenerationRequest):
        try:
            async for step in self.engine.generate(request):
                yield step
        except EngineStoppedError:
            self._engine_died()
            raise

    def _engine_died(self) -> None:
        logger.error("the engine of %s died: stopping this replica so Serve replaces it", self.model.name)
        # After this call returns: the error reaches the caller first when it can.
        asyncio.get_running_loop().call_later(0.05, self.stop_replica)

    async def generate(self, request: GenerationRequest) -> Completion:
        result = None
        async for item in self.generate_stream(request):
            result = item
        return result

    async def stats(self) -> dict:
        """What this replica is doing, for /healthz and tests: engine health, requests in the engine."""
        try:
            await self.engine.check_health()
            healthy = True
        except Exception:  # a dead engine is a state to report here, not an error of this call
            healthy = False
        return {"model": self.model.name, "family": self.model.family, "healthy": healthy, "pid": os.getpid(),
                "weights": self.weights.tag if self.weights else None,
                "unfinished_requests": self.engine.num_unfinished_requests()}

    async def check_health(self) -> None:
        """Serve calls this periodically; raising marks the replica unhealthy and replaces it."""
        try:
            await self.engine.check_health()
        except Exception:
            self._engine_died()
            raise

    async def __del__(self):
        engine = getattr(self, "engine", None)  # absent when __init__ failed
        if engine is not None:
            await engine.shutdown()
