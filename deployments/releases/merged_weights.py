"""Adapters served merged into the weights (GPT-J: vLLM has no LoRA kernels for it).

Activating one rolls the model deployment: its replicas get the merged folder through an env var in
their actor options (so Serve replaces them one at a time, each drained first), and the active
choice is recorded in Redis for the ingress (cache keys, listings). A replica that Serve restarts
later reads the same env var, so every replica of a version serves the same weights.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

from contracts.config import ModelConfig
from contracts.errors import ServiceUnavailableError
from deployments.releases.adapters import Adapter, AdapterRef, parse_spec
from deployments.state.store import RedisStore

WEIGHTS_ENV = "COPYSERVE_MERGED_ADAPTER"
_UNAVAILABLE = object()


def weights_env(ref: AdapterRef | None) -> dict[str, str | None]:
    return {WEIGHTS_ENV: json.dumps(_record(ref)) if ref else None}


def _record(ref: AdapterRef) -> dict:
    """A merged version as the weights record and a replica's environment hold it (no digest for a version
    registered before digests were taken)."""
    record = {"name": ref.name, "version": ref.version, "path": ref.path}
    return record | {"digest": ref.digest} if ref.digest else record


def _parse(raw: str) -> tuple[AdapterRef, str | None]:
    record = json.loads(raw)
    follows = record.pop("follows", None)
    return AdapterRef(**record), follows


def serves_named(active: AdapterRef | None, follows: str | None, adapter: Adapter, spec: str) -> bool:
    """Whether a model serving ``active`` (following the alias ``follows``) serves the merged ``adapter`` that a
    request names as ``spec``: a bare name asks for whichever version of it the model serves; a version, for
    that one; an alias, for its version, or for what the model serves when it follows that alias (rolling to
    the alias's new version within seconds of a move)."""
    if active is None or active.name != adapter.name:
        return False
    if "@" not in spec.strip():
        return True
    named = parse_spec(spec)
    return (named.kind == "alias" and named.value == follows) or active.version == adapter.version


def weights_from_env() -> AdapterRef | None:
    raw = os.environ.get(WEIGHTS_ENV)
    return AdapterRef(**json.loads(raw)) if raw else None


def with_merged_weights(model: ModelConfig, ref: AdapterRef | None) -> ModelConfig:
    """The model config a replica runs: the merged folder's weights, the base model's tokenizer and settings."""
    if ref is None:
        return model
    return model.model_copy(update={"source": ref.path, "tokenizer": model.tokenizer or model.source})


class ActiveWeights:
    """``model -> AdapterRef`` of the merged adapter version each model is rolling to or serving, and the alias it
    follows when it was activated by one (``name`` or ``name@alias``): moving that alias rolls the model again
    (``serve_app/weights_follow.py``). Activated by version, it stays on that version."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("merged-weights")

    async def claim(self, model: str, hold_s: int) -> str | None:
        """Hold the right to change ``model``'s weights for ``hold_s`` (any ingress replica): two PUTs must
        not roll at once. Returns a token, or None when another change holds it."""
        token = uuid.uuid4().hex
        claimed = await self.store.call(
            lambda r: r.set(self.store.key("weights-change", model), token, nx=True, ex=hold_s), default=_UNAVAILABLE)
        if claimed is _UNAVAILABLE:
            raise ServiceUnavailableError("the weights record (redis) is unavailable; nothing was changed")
        return token if claimed else None

    async def release(self, model: str) -> None:
        """Give the claim back early (the change failed, so nothing is rolling)."""
        await self.store.call(lambda r: r.delete(self.store.key("weights-change", model)))

    async def get(self, model: str) -> AdapterRef | None:
        return (await self.followed(model))[0]

    async def followed(self, model: str) -> tuple[AdapterRef | None, str | None]:
        """The version ``model`` serves (None: its base weights) and the alias it follows (None: pinned)."""
        raw = await self.store.call(lambda r: r.hget(self.key, model))
        return _parse(raw) if raw else (None, None)

    async def following(self) -> dict[str, tuple[AdapterRef, str]]:
        """``model -> (version served, alias followed)`` of every model activated by an alias."""
        raw = await self.store.call(lambda r: r.hgetall(self.key), default={})
        return {model: (ref, alias) for model, (ref, alias) in ((m, _parse(v)) for m, v in raw.items()) if alias}

    async def set(self, model: str, ref: AdapterRef | None, follows: str | None = None) -> None:
        if ref is None:
            done = await self.store.call(lambda r: r.hdel(self.key, model), default=None)
        else:
            value = json.dumps(_record(ref) | ({"follows": follows} if follows else {}))
            done = await self.store.call(lambda r: r.hset(self.key, model, value), default=None)
        if done is None:
            raise ServiceUnavailableError("the weights record (redis) is unavailable; nothing was changed")


# Take a pending roll only as it was read: a newer roll of the same model (a rollback) is left alone.
TAKE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


@dataclass(frozen=True)
class PendingRoll:
    model: str
    count: int          # the replica count to come back to
    deployed_at: float  # wall-clock time of the surged deploy
    record: str         # as stored, to take exactly this roll


class PendingRolls:
    """``model -> {"count", "deployed_at"}`` of rolls still at their surged replica count. In Redis, not in
    the memory of the ingress replica that started the roll: any ingress replica can finish it."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("weights-rolls")
        self._take = store.client.register_script(TAKE) if store.client is not None else None

    async def add(self, model: str, count: int, deployed_at: float) -> None:
        value = json.dumps({"count": count, "deployed_at": deployed_at})
        if await self.store.call(lambda r: r.hset(self.key, model, value), default=None) is None:
            raise ServiceUnavailableError("the weights record (redis) is unavailable; nothing was changed")

    async def all(self) -> list[PendingRoll]:
        raw = await self.store.call(lambda r: r.hgetall(self.key), default={})
        return [PendingRoll(model, **json.loads(value), record=value) for model, value in raw.items()]

    async def take(self, roll: PendingRoll) -> bool:
        """Remove ``roll`` if it is still the model's pending roll; True for the one caller that did."""
        if self._take is None:
            return False
        return bool(await self.store.call(
            lambda r: self._take(keys=[self.key], args=[roll.model, roll.record], client=r), default=0))
