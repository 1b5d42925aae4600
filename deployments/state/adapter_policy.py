"""Each adapter name's release policy (``deployments/releases/policy.py``), next to its releases.

Key (under the store's prefix): ``adapter:<name>:policy``, a hash whose field ``policy`` is the policy as JSON.
Deleting the name deletes it (``AdapterRegistry``); every ingress replica reads it when the name's evaluation
grows (the autopilot)."""

from __future__ import annotations

from contracts.errors import ServiceUnavailableError
from deployments.releases.policy import ReleasePolicy
from deployments.state.store import RedisStore

_DOWN = object()


def policy_key(store: RedisStore, name: str) -> str:
    return store.key("adapter", name, "policy")


class ReleasePolicies:
    """Reads and changes answer 503 while Redis is down (a policy nobody can read must not pass for none)."""

    def __init__(self, store: RedisStore):
        self.store = store

    async def get(self, name: str) -> ReleasePolicy | None:
        raw = await self.store.call(lambda r: r.hget(policy_key(self.store, name), "policy"), default=_DOWN)
        if raw is _DOWN:
            raise ServiceUnavailableError("the release policies (redis) are unavailable")
        return ReleasePolicy.model_validate_json(raw) if raw else None

    async def set(self, name: str, policy: ReleasePolicy) -> None:
        stored = await self.store.call(lambda r: r.hset(policy_key(self.store, name), "policy",
                                                        policy.model_dump_json()))
        if stored is None:
            raise ServiceUnavailableError("the release policies (redis) are unavailable; nothing was changed")

    async def delete(self, name: str) -> bool:
        removed = await self.store.call(lambda r: r.delete(policy_key(self.store, name)))
        if removed is None:
            raise ServiceUnavailableError("the release policies (redis) are unavailable; nothing was changed")
        return bool(removed)
