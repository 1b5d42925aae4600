"""Response cache for /v1/copy: reproducible answers, keyed by everything that changes them."""

from __future__ import annotations

import hashlib
import json

from contracts.config import CacheConfig
from deployments.state.store import RedisStore


def cache_key_material(industry: str | None, model: str, adapter: str | None, messages: list[dict],
                       sampling: dict, postprocess: bool, quality: dict) -> str:
    """Canonical JSON of what decides the answer. The rendered prompt covers the normalised request
    (industry alias, product, keywords, tone, length, language) and the template that shaped it."""
    return json.dumps({"v": 1, "industry": industry, "model": model, "adapter": adapter, "messages": messages,
                       "sampling": sampling, "postprocess": postprocess, "quality": quality},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class ResponseCache:
    def __init__(self, store: RedisStore, config: CacheConfig):
        self.store, self.config = store, config

    def key(self, material: str) -> str:
        return self.store.key("cache", hashlib.sha256(material.encode()).hexdigest())

    async def get(self, key: str) -> dict | None:
        if not self.config.enabled:
            return None
        raw = await self.store.call(lambda r: r.get(key))
        return json.loads(raw) if raw else None

    async def put(self, key: str, payload: dict) -> None:
        if self.config.enabled:
            data = json.dumps(payload, ensure_ascii=False)
            await self.store.call(lambda r: r.set(key, data, ex=self.config.ttl_s))
