"""Adapters served merged into the weights (GPT-J: vLLM has no LoRA kernels for it).

Activating one rolls the model deployment: its replicas get the merged folder through an env var in
their actor options (so Serve replaces them one at a time, each drained first), and the active
choice is recorded in Redis for the ingress (cache keys, listings). A replica that Serve restarts
later reads the same env var, so every replica of a version serves the same weights.
"""

from __future__ import annotations

import json
import os

from contracts.config import ModelConfig
from contracts.errors import ServiceUnavailableError
from deployments.adapters import AdapterRef
from deployments.state.store import RedisStore

WEIGHTS_ENV = "COPYSERVE_MERGED_ADAPTER"
def weights_env(ref: AdapterRef | None) -> dict[str, str | None]:
    return {WEIGHTS_ENV: json.dumps({"name": ref.name, "version": ref.version, "path": ref.path}) if ref else None}


def weights_from_env() -> AdapterRef | None:
    raw = os.environ.get(WEIGHTS_ENV)
    return AdapterRef(**json.loads(raw)) if raw else None


def with_merged_weights(model: ModelConfig, ref: AdapterRef | None) -> ModelConfig:
    """The model config a replica runs: the merged folder's weights, the base model's tokenizer and settings."""
    if ref is None:
        return model
    return model.model_copy(update={"source": ref.path, "tokenizer": model.tokenizer or model.source})


class ActiveWeights:
    """``model -> AdapterRef`` of the merged adapter each model is rolling to or serving."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("merged-weights")

    async def get(self, model: str) -> AdapterRef | None:
        raw = await self.store.call(lambda r: r.hget(self.key, model))
        return AdapterRef(**json.loads(raw)) if raw else None

    async def set(self, model: str, ref: AdapterRef | None) -> None:
        if ref is None:
            done = await self.store.call(lambda r: r.hdel(self.key, model), default=None)
        else:
            value = json.dumps({"name": ref.name, "version": ref.version, "path": ref.path})
            done = await self.store.call(lambda r: r.hset(self.key, model, value), default=None)
        if done is None:
            raise ServiceUnavailableError("the weights record (redis) is unavailable; nothing was changed")
