"""Automatic promote and rollback: each ingress replica, after its evaluation writes grow an adapter's sums,
checks that name's canary against its release policy and moves an alias when the policy says so.

Off the response path and cheap: a write pokes the name, and one check per name runs at most every
``interval_s`` per replica (pokes in between are folded into it): a policy read, a registry snapshot and one
hash read. Two replicas may judge the same evidence at once; the move is one Lua script conditional on the
aliases still pointing where the check saw them, so only one of them moves, and the other's 409 is dropped."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from contracts import metrics
from contracts.errors import ConflictError, ServiceUnavailableError
from deployments.releases.policy import CANARY, STABLE, Evidence, ReleasePolicy, Verdict, decide
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.state.adapter_policy import ReleasePolicies
from deployments.state.adapter_releases import AdapterRegistry

logger = logging.getLogger("copyserve.releases")
CHECK_INTERVAL_S = 1.0
WHO = "auto"  # the history's actor for automatic moves


@dataclass(frozen=True)
class Judgement:
    policy: ReleasePolicy
    canary: int  # the versions the aliases pointed at when judged
    stable: int
    verdict: Verdict

    def public(self) -> dict:
        return {"canary": self.canary, "stable": self.stable, **self.verdict.public()}


class Autopilot:
    def __init__(self, registry: AdapterRegistry, evaluation: AdapterEvaluation, policies: ReleasePolicies,
                 interval_s: float = CHECK_INTERVAL_S):
        self.registry, self.evaluation, self.policies = registry, evaluation, policies
        self.interval_s = interval_s
        self._due: dict[str, asyncio.Task] = {}  # held: the loop keeps only weak references to tasks

    def poke(self, name: str) -> None:
        """New evidence for ``name``: a check within ``interval_s`` (one already due covers it)."""
        if name not in self._due:
            self._due[name] = asyncio.get_running_loop().create_task(self._later(name))

    async def _later(self, name: str) -> None:
        try:
            await asyncio.sleep(self.interval_s)
        finally:
            self._due.pop(name, None)  # evidence from here on is for the next check
        try:
            await self.check(name)
        except Exception:  # a background check has no caller: the log is where it fails
            logger.exception("release autopilot: checking %s failed", name)

    async def judge(self, name: str) -> Judgement | None:
        """The name's policy, its canary's version and what the policy says of it now; None without a policy, a
        canary apart from stable, or Redis."""
        policy = await self.policies.get(name)
        release = await self.registry.get(name) if policy is not None else None
        if release is None:
            return None
        canary, stable = release.aliases.get(CANARY), release.aliases.get(STABLE)
        if canary is None or stable is None or canary == stable:
            return None
        sums = await self.evaluation.read(name, [canary])
        if sums is None:
            return None
        return Judgement(policy, canary, stable, decide(policy, Evidence.of(sums[canary], f"{name}@v{stable}")))

    async def check(self, name: str) -> Verdict | None:
        """Judge ``name``'s canary and make the move its verdict calls for; the verdict acted on, else None."""
        try:
            judged = await self.judge(name)
        except ServiceUnavailableError:
            return None  # Redis down: the next evidence (written once it is back) pokes again
        if judged is None or judged.verdict.action is None:
            return None
        canary, verdict = judged.canary, judged.verdict
        try:
            if verdict.action == "rollback":
                # canary onto stable's version, only if canary still serves the version judged
                await self.registry.move(name, CANARY, source=STABLE, expected=canary, who=WHO, action="rollback",
                                         reason=verdict.reason)
            else:
                # stable onto the judged version, only if canary still points at it and stable is still what the
                # evidence (the win rate) was against
                await self.registry.move(name, STABLE, source=CANARY, source_at=canary, expected=judged.stable,
                                         who=WHO, action="promote", reason=verdict.reason)
        except (ConflictError, ServiceUnavailableError) as err:
            logger.info("release autopilot: %s of %s@v%s not made: %s", verdict.action, name, canary, err)
            return None
        metrics.AUTO_MOVES.inc(tags={"adapter": name, "action": verdict.action})
        logger.warning("release autopilot: %s@v%s %s (%s)", name, canary, verdict.action, verdict.reason)
        return verdict

    async def drain(self) -> None:
        """Wait for the checks due (tests; a replica shutting down)."""
        await asyncio.gather(*list(self._due.values()), return_exceptions=True)
