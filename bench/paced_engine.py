"""A synthetic engine for the ceiling benchmark only (never the product's default): it emits tokens at a
fixed pace per stream, as a GPU engine would, so what is measured is the graph around it.

Each request decodes ``max_tokens`` tokens, one every ``1 / tokens_per_s_per_stream`` seconds, like a
real engine stepping every sequence at once: one asyncio task per replica ticks, each tick advances
every running request by one token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from deployments.engines.base import EngineStep, LLMEngine
from deployments.generation import Delta, GenerationRequest

WORDS = ["Fresh", " copy", " for", " every", " shelf", ",", " written", " fast", "."]


class PacedEngine(LLMEngine):
    """Every running request gets one token per tick: ``engine_kwargs: {tokens_per_s: ...}`` of the model."""

    def __init__(self, model):
        super().__init__(model)
        self.step_s = 1.0 / float(model.engine.engine_kwargs.get("tokens_per_s", 100))
        self.queues: dict[str, asyncio.Queue] = {}
        self.ticker: asyncio.Task | None = None

    async def start(self) -> None:
        self.ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.step_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            for queue in list(self.queues.values()):
                queue.put_nowait(None)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineStep]:
        budget = request.sampling.max_tokens  # resolved by the request layer (its to_sampling)
        n = request.sampling.n
        self.queues[request.request_id] = queue = asyncio.Queue()
        try:
            done = 0
            while done < budget:
                await queue.get()
                ticks = 1
                while not queue.empty():  # a late consumer gets the tokens it missed in one step
                    queue.get_nowait()
                    ticks += 1
                ticks = min(ticks, budget - done)
                text = "".join(WORDS[(done + k) % len(WORDS)] for k in range(ticks))
                done += ticks
                reason = "length" if done == budget else None
                yield EngineStep([Delta(k, text, reason) for k in range(n)], 8, done * n)
        finally:
            self.queues.pop(request.request_id, None)

    async def abort(self, request_id: str) -> None:
        self.queues.pop(request_id, None)

    async def check_health(self) -> None:
        if self.ticker is None or self.ticker.done():
            raise RuntimeError("paced engine not ticking")

    def num_unfinished_requests(self) -> int:
        return len(self.queues)
