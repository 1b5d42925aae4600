"""Merged weights that follow an alias: a promote, a rollback or any alias move rolls the model.

GPT-J adapters are served merged, one version per model at a time, so an alias move cannot apply
per request as it does for LoRA; instead every ingress replica looks at the models activated by an
alias and rolls each one whose alias now names another version (one roll at a time per model: the
weights claim). A move seen mid-roll is picked up once the model is HEALTHY again.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.config import AppConfig
from contracts.errors import ConflictError, NotFoundError
from deployments.releases.adapters import Selector
from deployments.releases.merged_weights import ActiveWeights, PendingRolls
from deployments.state.adapter_releases import AdapterRegistry
from serve_app import weights_roll

logger = logging.getLogger("copyserve.weights_follow")
FOLLOW_POLL_S = 2.0  # each ingress replica's look at followed aliases (one HGETALL, one lookup per follower)


class AliasFollower:
    """One ingress replica's look at the models that follow an alias (any replica may start a roll; the claim
    lets one through)."""

    def __init__(self, config: AppConfig, adapters: AdapterRegistry, active: ActiveWeights, pending: PendingRolls):
        self.config, self.adapters, self.active, self.pending = config, adapters, active, pending
        self._lost: set[tuple[str, str, str]] = set()  # (model, name, alias) already reported gone

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception as err:  # a controller or Redis hiccup: the next look tries again
                logger.warning("following adapter aliases: %r; trying again", err)
            await asyncio.sleep(FOLLOW_POLL_S)

    async def step(self) -> list[str]:
        """Start a roll for each model whose followed alias moved; the models rolled."""
        rolled = []
        for model, (ref, alias) in (await self.active.following()).items():
            try:
                target = await self.adapters.resolve(Selector(ref.name, "alias", alias))
            except NotFoundError:  # the alias was removed: keep serving what runs, say so once
                if (model, ref.name, alias) not in self._lost:
                    self._lost.add((model, ref.name, alias))
                    logger.warning("%s follows %s@%s, which no longer exists: it keeps serving %s", model,
                                   ref.name, alias, ref.tag)
                continue
            self._lost.discard((model, ref.name, alias))
            if target.version == ref.version:
                continue
            try:
                if await weights_roll.change(self.config, model, target.ref, alias, self.active, self.pending,
                                             unless_moved_from=ref):
                    logger.info("%s: %s@%s moved to %s: rolling from %s", model, ref.name, alias, target.ref.tag,
                                ref.tag)
                    rolled.append(model)
            except ConflictError:
                pass  # another change is under way (or another replica started this one): look again later
        return rolled
