"""Test doubles: a deterministic in-process engine that honours the LLMEngine contract without vLLM.

``FakeEngine`` emits the words ``tok0 tok1 ...`` one token per step for each of the ``n`` sequences,
sleeping ``step_s`` per step so tests can cancel mid-stream. Like a real engine it keeps decoding a
request whose consumer went away until ``abort`` is called: a request leaves ``running`` only when it
finishes or is aborted, so a test can tell whether the caller aborted it.

``MemoryStore`` is Redis in process: the real ``RedisStore`` and the real Lua scripts, on fakeredis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import fakeredis

from contracts.config import ModelConfig, RedisConfig
from deployments.engines.base import EngineStep, LLMEngine
from deployments.generation import Delta, GenerationRequest
from deployments.state.store import RedisStore


class FakeEngine(LLMEngine):
    """Deterministic engine; class attributes are the defaults, instances may be tuned per test."""

    step_s = 0.005
    prompt_tokens = 5

    def __init__(self, model: ModelConfig):
        super().__init__(model)
        self.started = False
        self.healthy = True
        self.shut_down = False
        self.running: set[str] = set()
        self.aborted: list[str] = []
        self.requests: list[GenerationRequest] = []

    async def start(self) -> None:
        self.started = True

    @staticmethod
    def token(i: int) -> str:
        return f"tok{i}" if i == 0 else f" tok{i}"

    @classmethod
    def expected_text(cls, num_tokens: int) -> str:
        return "".join(cls.token(i) for i in range(num_tokens))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineStep]:
        if not self.started:
            raise RuntimeError("engine used before start()")
        self.requests.append(request)
        self.running.add(request.request_id)
        n = request.sampling.n
        budget = request.sampling.max_tokens  # resolved by the request layer: an engine has no default of its own
        for i in range(budget):
            await asyncio.sleep(self.step_s)
            if request.request_id not in self.running:  # aborted while we slept
                return
            last = i == budget - 1
            deltas = [Delta(index=k, text=self.token(i), finish_reason="length" if last else None) for k in range(n)]
            if last:
                self.running.discard(request.request_id)
            yield EngineStep(deltas=deltas, prompt_tokens=self.prompt_tokens, completion_tokens=(i + 1) * n)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)
        self.running.discard(request_id)

    async def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("fake engine is dead")

    def num_unfinished_requests(self) -> int:
        return len(self.running)

    async def shutdown(self) -> None:
        self.shut_down = True


class ScriptedEngine(FakeEngine):
    """Answers every request with ``steps`` (the deltas of each engine step), as given per test: e.g. what
    the vLLM engine yields once its tool parser has read the model's calls."""

    steps: list[list[Delta]] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineStep]:
        self.requests.append(request)
        for count, deltas in enumerate(self.steps, start=1):
            yield EngineStep(deltas=deltas, prompt_tokens=self.prompt_tokens, completion_tokens=count)


class FakeMethod:
    """`handle.method.remote(...)`, or a local async method called directly: records the call and returns
    an awaitable."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def remote(self, *args):
        async def answer():
            # As Serve does with a DeploymentResponse argument: the callee gets the resolved value.
            resolved = tuple([await a if hasattr(a, "__await__") else a for a in args])
            self.calls.append(resolved)
            result = self.reply(*resolved)
            return await result if hasattr(result, "__await__") else result

        return answer()

    __call__ = remote


class MemoryStore(RedisStore):
    """The real RedisStore over fakeredis, which keeps its data in this process and runs the registry's real Lua
    scripts (Lua 5.1, as Redis does, through lupa). ``down = True`` plays an outage: every command fails to
    connect, and the store fails open as it does on a real Redis."""

    def __init__(self, prefix: str = "test:", server: fakeredis.FakeServer | None = None):
        """``server``: another store's, for two processes on one Redis (a restarted replica)."""
        # No client of its own (enabled=False); a generous timeout: a loaded test machine is no outage.
        super().__init__(RedisConfig(enabled=False, key_prefix=prefix, timeout_s=10))
        self.server = server or fakeredis.FakeServer()
        self.client = fakeredis.FakeAsyncRedis(server=self.server, decode_responses=True)

    @property
    def down(self) -> bool:
        return not self.server.connected

    @down.setter
    def down(self, value: bool) -> None:
        self.server.connected = not value

    async def hashes(self) -> dict[str, dict[str, str]]:
        """Every hash written, by key: what a test looks at after the code under test ran."""
        return {key: await self.client.hgetall(key) async for key in self.client.scan_iter(_type="hash")}
