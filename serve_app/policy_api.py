"""Release policies (a mixin of ``Ingress``): when an adapter's canary is promoted or rolled back on its own.
Reading needs any key (as the evaluation does); changing, an admin key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from contracts.errors import NotFoundError
from deployments.releases.policy import ReleasePolicy
from serve_app.access import admin, caller
from serve_app.protocol import PolicyRequest

# One check per route, never both (that would check, and count, a request twice).
keyed = APIRouter(dependencies=[Depends(caller)])
admin_only = APIRouter(dependencies=[Depends(admin)])


class PolicyAPI:
    """Uses the ingress's state: adapters (the registry), policies, autopilot."""

    @keyed.get("/v1/adapters/{name}/policy")
    async def get_policy(self, name: str):
        """The policy (null: none) and what it says of the canary now (null: no policy, or no canary apart from
        stable)."""
        await self.adapters.require(name)
        return await self._policy_answer(name, await self.policies.get(name))

    @admin_only.put("/v1/adapters/{name}/policy")
    async def set_policy(self, name: str, body: PolicyRequest):
        """Set (or replace) the policy; the canary's evidence so far is judged within a second."""
        await self.adapters.require(name)
        policy = ReleasePolicy.model_validate(body.model_dump())
        await self.policies.set(name, policy)
        self.autopilot.poke(name)
        return await self._policy_answer(name, policy)

    @admin_only.delete("/v1/adapters/{name}/policy")
    async def delete_policy(self, name: str):
        if not await self.policies.delete(name):
            await self.adapters.require(name)
            raise NotFoundError(f"adapter {name!r} has no release policy", "name")
        return {"name": name, "policy": None, "deleted": True}

    async def _policy_answer(self, name: str, policy: ReleasePolicy | None) -> dict:
        judged = await self.autopilot.judge(name) if policy is not None else None
        return {"name": name, "policy": policy.model_dump() if policy else None,
                "verdict": judged.public() if judged else None}
