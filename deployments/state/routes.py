"""The live route table: what an admin changed at runtime, over the config's routes.

An industry may point at one model (+ adapter) or at weighted variants for an A/B split, and may shadow a
share of its traffic with another adapter version; every Router replica reads it per request, so a change
applies from the next request on.

Key (under the store's prefix): ``routes``, a hash of industry -> JSON: the variant list, or, with a shadow,
``{"variants": [...], "shadow": {"adapter": ..., "share": ...}}`` (a route without one keeps the plain list).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from deployments.state.store import RedisStore


@dataclass(frozen=True)
class Shadow:
    """Write ``share`` of a route's generated answers again with ``adapter``, in the background, to score it."""

    adapter: str
    share: float


@dataclass(frozen=True)
class LiveRoute:
    variants: list[dict]
    shadow: Shadow | None = None

    @classmethod
    def decode(cls, raw: str) -> LiveRoute:
        stored = json.loads(raw)
        if isinstance(stored, list):
            return cls(stored)
        shadow = stored.get("shadow")
        return cls(stored["variants"], Shadow(shadow["adapter"], float(shadow["share"])) if shadow else None)

    def encode(self) -> str:
        if self.shadow is None:
            return json.dumps(self.variants)
        return json.dumps({"variants": self.variants, "shadow": self.public()["shadow"]})

    def public(self) -> dict:
        shadow = {"adapter": self.shadow.adapter, "share": self.shadow.share} if self.shadow else None
        return {"variants": self.variants, "shadow": shadow}

    def adapters(self) -> list[tuple[str, str]]:
        """Every adapter the route names, with where: (``variant <name>`` or ``shadow``, spec)."""
        named = [(f"variant {v['name']}", v["adapter"]) for v in self.variants if v.get("adapter")]
        return named + ([("shadow", self.shadow.adapter)] if self.shadow else [])


class LiveRoutes:
    def __init__(self, store: RedisStore):
        self.store = store
        self.key = store.key("routes")

    async def get(self, industry: str) -> LiveRoute | None:
        raw = await self.store.call(lambda r: r.hget(self.key, industry))
        return LiveRoute.decode(raw) if raw else None

    async def all(self) -> dict[str, LiveRoute]:
        rows = await self.store.call(lambda r: r.hgetall(self.key), default={})
        return {k: LiveRoute.decode(v) for k, v in rows.items()}

    async def set(self, industry: str, route: LiveRoute) -> bool:
        stored = await self.store.call(lambda r: r.hset(self.key, industry, route.encode()))
        return stored is not None

    async def delete(self, industry: str) -> bool | None:
        removed = await self.store.call(lambda r: r.hdel(self.key, industry))
        return None if removed is None else bool(removed)


def pick(variants: list[dict], rng: random.Random = random) -> dict:
    """A variant chosen with probability proportional to its weight."""
    return rng.choices(variants, weights=[v["weight"] for v in variants], k=1)[0]
