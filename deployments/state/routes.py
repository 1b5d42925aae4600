"""The live route table: what an admin changed at runtime, over the config's routes.

An industry may point at one model (+ adapter) or at weighted variants for an A/B split;
every Router replica reads it per request, so a change applies from the next request on.
"""

from __future__ import annotations

import json
import random

from deployments.state.store import RedisStore


class LiveRoutes:
    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("routes")

    async def get(self, industry: str) -> list[dict] | None:
        raw = await self.store.call(lambda r: r.hget(self.key, industry))
        return json.loads(raw) if raw else None

    async def all(self) -> dict[str, list[dict]]:
        rows = await self.store.call(lambda r: r.hgetall(self.key), default={})
        return {k: json.loads(v) for k, v in rows.items()}

    async def set(self, industry: str, variants: list[dict]) -> bool:
        stored = await self.store.call(lambda r: r.hset(self.key, industry, json.dumps(variants)))
        return stored is not None

    async def delete(self, industry: str) -> bool | None:
        removed = await self.store.call(lambda r: r.hdel(self.key, industry))
        return None if removed is None else bool(removed)


def pick(variants: list[dict], rng: random.Random = random) -> dict:
    """A variant chosen with probability proportional to its weight."""
    return rng.choices(variants, weights=[v["weight"] for v in variants], k=1)[0]
