"""Test doubles: a deterministic in-process engine that honours the LLMEngine contract without vLLM.

``FakeEngine`` emits the words ``tok0 tok1 ...`` one token per step for each of the ``n`` sequences,
sleeping ``step_s`` per step so tests can cancel mid-stream. Like a real engine it keeps decoding a
request whose consumer went away until ``abort`` is called: a request leaves ``running`` only when it
finishes or is aborted, so a test can tell whether the caller aborted it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from contracts.config import ModelConfig
from deployments.engines.base import EngineStep, LLMEngine
from deployments.generation import Delta, GenerationRequest


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


class MemoryRedis:
    """The few Redis commands the adapter registry calls outside its scripts, on dicts; its Lua scripts run as
    the Python twins below. tests/integration/test_adapter_releases_store.py holds the real scripts to the same
    behaviour against a real redis-server."""

    def __init__(self):
        self.hashes: dict[str, dict[str, str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.counters: dict[str, int] = {}

    def hash(self, key: str) -> dict[str, str]:
        return self.hashes.setdefault(key, {})

    async def hset(self, key: str, field: str, value) -> int:
        self.hash(key)[field] = str(value)
        return 1

    async def hget(self, key: str, field: str) -> str | None:
        return self.hashes.get(key, {}).get(field)

    async def hkeys(self, key: str) -> list[str]:
        return list(self.hashes.get(key, {}))

    async def smembers(self, key: str) -> set[str]:
        return set(self.sets.get(key, set()))

    async def lrange(self, key: str, start: int, end: int) -> list[str]:
        return self.lists.get(key, [])[start:end + 1]

    async def hincrbyfloat(self, key: str, field: str, amount: float) -> float:
        value = float(self.hash(key).get(field, 0)) + float(amount)
        self.hash(key)[field] = repr(value)
        return value

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(self.hashes.get(key, {}))

    async def delete(self, *keys: str) -> int:
        return sum(self.hashes.pop(k, None) is not None for k in keys)

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        return MemoryPipeline(self)

    def register_script(self, text: str):
        from deployments.state import adapter_scripts as lua

        name = next(n for n in ("SNAPSHOT", "RESOLVE", "REGISTER", "MOVE", "UNALIAS", "DELETE_VERSION", "DELETE")
                    if getattr(lua, n) == text)
        twin = getattr(RegistryScripts(self), name.lower())

        async def run(keys, args, client=None):
            return twin(keys, args)

        return run


class MemoryPipeline:
    """redis-py's pipeline: commands queued without awaiting, run in order by ``execute``."""

    def __init__(self, db: MemoryRedis):
        self.db, self.queued = db, []

    def __getattr__(self, command: str):
        def queue(*args):
            self.queued.append((getattr(self.db, command), args))
            return self

        return queue

    async def execute(self) -> list:
        return [await command(*args) for command, args in self.queued]


class RegistryScripts:
    """deployments/state/adapter_scripts.py in Python: same keys, arguments and replies."""

    def __init__(self, db: MemoryRedis):
        self.db = db

    def _prelude(self, k, name):
        legacy = self.db.hashes.get(k[4], {}).pop(name, None)
        if legacy:
            version = str(json.loads(legacy)["version"])
            self.db.hash(k[0]).setdefault(version, legacy)
            self.db.hash(k[2]).setdefault("stable", version)
            self.db.sets.setdefault(k[5], set()).add(name)

    def _log(self, k, entry, from_, to):
        from deployments.state.adapter_scripts import HISTORY_CAP

        number = lambda v: None if v in (None, "") else int(v)  # noqa: E731
        history = self.db.lists.setdefault(k[3], [])
        history.insert(0, json.dumps(json.loads(entry) | {"from": number(from_), "to": number(to)}))
        del history[HISTORY_CAP:]

    def _exists(self, key) -> int:
        return int(bool(self.db.hashes.get(key)))

    def snapshot(self, k, a):
        self._prelude(k, a[0])
        flat = lambda h: [x for pair in h.items() for x in pair]  # noqa: E731
        return [flat(self.db.hashes.get(k[0], {})), flat(self.db.hashes.get(k[2], {}))]

    def resolve(self, k, a):
        self._prelude(k, a[0])
        version = a[2]
        if a[1] == "alias":
            version = self.db.hashes.get(k[2], {}).get(a[2])
            if version is None:
                return ["no-alias", self._exists(k[0])]
        elif a[1] == "digest":
            found = [v for d, v in self.db.hashes.get(k[1], {}).items() if d.startswith(a[2])]
            if len(found) > 1:
                return ["ambiguous", 1]
            if not found:
                return ["no-version", self._exists(k[0])]
            version = found[0]
        record = self.db.hashes.get(k[0], {}).get(version)
        return ["ok", record] if record else ["no-version", self._exists(k[0])]

    def register(self, k, a):
        name, fields, digest, alias, entry = a
        self._prelude(k, name)
        existing = self.db.hashes.get(k[1], {}).get(digest)
        if existing and existing in self.db.hashes.get(k[0], {}):
            return [0, self.db.hashes[k[0]][existing]]
        counters = self.db.hash(k[6])
        version = counters[name] = str(int(counters.get(name, 0)) + 1)
        self.db.counters[k[7]] = lora_id = self.db.counters.get(k[7], 0) + 1
        record = json.dumps(json.loads(fields) | {"version": int(version), "lora_id": lora_id})
        self.db.hash(k[0])[version] = record
        self.db.hash(k[1])[digest] = version
        self.db.sets.setdefault(k[5], set()).add(name)
        before = None
        if alias:
            before = self.db.hash(k[2]).get(alias)
            self.db.hash(k[2])[alias] = version
        self._log(k, entry, before, version)
        return [1, record]

    def move(self, k, a):
        name, alias, kind, value, expected, entry = a
        self._prelude(k, name)
        aliases = self.db.hash(k[2])
        version = value if kind == "version" else aliases.get(value)
        if version is None:
            return ["no-source", "", ""]
        if version not in self.db.hashes.get(k[0], {}):
            return ["no-version", "", version]
        current = aliases.get(alias, "")
        if expected != "*" and current != expected:
            return ["changed", current, version]
        if current == version:
            return ["same", current, version]
        aliases[alias] = version
        self._log(k, entry, current, version)
        return ["ok", current, version]

    def unalias(self, k, a):
        self._prelude(k, a[0])
        current = self.db.hash(k[2]).pop(a[1], None)
        if current is None:
            return 0
        self._log(k, a[2], current, None)
        return 1

    def delete_version(self, k, a):
        name, version, entry = a
        self._prelude(k, name)
        versions = self.db.hash(k[0])
        if version not in versions:
            return ["no-version", ""]
        held = [alias for alias, v in self.db.hash(k[2]).items() if v == version]
        if held:
            return ["aliased", ",".join(held)]
        del versions[version]
        self.db.hashes[k[1]] = {d: v for d, v in self.db.hash(k[1]).items() if v != version}
        if not versions:
            self.db.hashes[k[1]], self.db.hashes[k[2]] = {}, {}
            self.db.sets.get(k[5], set()).discard(name)
        self._log(k, entry, version, None)
        return ["ok", ""]

    def delete(self, k, a):
        name, entry = a
        self._prelude(k, name)
        if not self._exists(k[0]) and name not in self.db.sets.get(k[5], set()):
            return 0
        for key in k[:3]:
            self.db.hashes.pop(key, None)
        self.db.sets.get(k[5], set()).discard(name)
        self._log(k, entry, None, None)
        return 1


class MemoryStore:
    """RedisStore's interface (key, client, call) over a MemoryRedis; ``down`` plays an outage."""

    def __init__(self, prefix: str = "test:"):
        self.prefix, self.client, self.down = prefix, MemoryRedis(), False

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def call(self, fn, default=None):
        return default if self.down else await fn(self.client)
