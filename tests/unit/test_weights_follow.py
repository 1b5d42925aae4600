"""Merged weights that follow an alias (GPT-J): moving the alias (promote, rollback, PUT .../aliases/...) rolls
the model onto the alias's new version, once, from whichever ingress replica looks first; a pinned version, a
model mid-roll and a removed alias roll nothing. The registry and the weights record are the real ones, on
fakeredis; the Serve controller is tests/unit/test_weights_roll.py's, in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.config import load_config
from deployments.releases.adapters import Adapter, AdapterRef
from deployments.releases.merged_weights import ActiveWeights, serves_named
from deployments.state.adapter_releases import AdapterRegistry
from serve_app import weights_roll
from serve_app.weights_follow import AliasFollower
from tests.fakes import MemoryStore
from tests.unit.test_weights_roll import SOLO, Controller, Pending, status

ROOT = Path(__file__).resolve().parents[2]
HEALTHY = status("HEALTHY", RUNNING=1)


def merged(number: int) -> Adapter:
    return Adapter("tutor", SOLO, f"/adapters/tutor/v{number}/merged", number, 4, 0.0, {}, kind="merged",
                   digest=str(number) * 64)


class Replicas:
    """Two ingress replicas' followers on one Redis, with the registry and weights record they share."""

    def __init__(self, monkeypatch, statuses):
        self.config = load_config(ROOT / "tests/configs/integration.yaml")
        self.control = Controller(monkeypatch, self.config, statuses)
        store = MemoryStore()
        self.registry, self.weights, self.pending = AdapterRegistry(store), ActiveWeights(store), Pending()
        self.followers = [AliasFollower(self.config, self.registry, self.weights, self.pending) for _ in range(2)]

    async def activate(self, spec: str) -> None:
        target = await self.registry.resolve(spec)
        follows = spec.partition("@")[2] or "stable"
        await self.weights.set(SOLO, target.ref, None if follows.startswith("v") else follows)

    def rolled_to(self) -> list[str]:
        """The merged version each deploy put on the model's replicas."""
        return [self.control.spec(c, SOLO)["ray_actor_options"]["runtime_env"]["env_vars"]["COPYSERVE_MERGED_ADAPTER"]
                for c in self.control.deployed]


async def test_a_promote_rolls_the_model_once_from_one_replica(monkeypatch):
    stack = Replicas(monkeypatch, [HEALTHY] * 4)
    await stack.registry.register(merged(1), "stable", None)
    await stack.registry.register(merged(2), "canary", None)
    await stack.activate("tutor")  # a bare name: the stable alias
    assert [await f.step() for f in stack.followers] == [[], []]  # nothing moved: nothing rolls
    await stack.registry.move("tutor", "stable", source="canary", action="promote")
    assert [await f.step() for f in stack.followers] == [[SOLO], []]  # the second finds it claimed / done
    assert await stack.weights.followed(SOLO) == (merged(2).ref, "stable")
    (deployed,) = stack.rolled_to()
    assert '"version": 2' in deployed and SOLO in stack.pending.rolls


async def test_a_rollback_rolls_back_once_the_model_is_healthy_again(monkeypatch):
    # The promote's roll is still under way when the rollback comes: the follower waits for HEALTHY.
    stack = Replicas(monkeypatch, [HEALTHY, status("UPDATING", RUNNING=2), HEALTHY])
    await stack.registry.register(merged(1), "stable", None)
    await stack.registry.register(merged(2), "canary", None)
    await stack.activate("tutor@stable")
    await stack.registry.move("tutor", "stable", source="canary", action="promote")
    assert await stack.followers[0].step() == [SOLO]
    await stack.weights.release(SOLO)  # the roll's claim runs out (SETTLE_GRACE_S) while Serve rolls
    await stack.registry.move("tutor", "stable", version=1, action="rollback")
    assert await stack.followers[1].step() == []  # UPDATING: not now
    assert await stack.followers[1].step() == [SOLO]
    assert await stack.weights.followed(SOLO) == (merged(1).ref, "stable")
    assert ['"version": 2' in d for d in stack.rolled_to()] == [True, False]


@pytest.mark.parametrize("spec", ["tutor@v1", "tutor@11111111"])
async def test_a_pinned_version_ignores_alias_moves(monkeypatch, spec):
    stack = Replicas(monkeypatch, [HEALTHY])
    await stack.registry.register(merged(1), "stable", None)
    await stack.registry.register(merged(2), "canary", None)
    await stack.weights.set(SOLO, (await stack.registry.resolve(spec)).ref)  # pinned: follows nothing
    await stack.registry.move("tutor", "stable", version=2)
    assert await stack.followers[0].step() == [] and stack.control.deployed == []


async def test_a_removed_alias_keeps_what_runs(monkeypatch):
    stack = Replicas(monkeypatch, [HEALTHY])
    await stack.registry.register(merged(1), "stable", None)
    await stack.registry.register(merged(2), "canary", None)
    await stack.activate("tutor@canary")
    assert await stack.registry.unalias("tutor", "canary", None)
    assert await stack.followers[0].step() == [] and stack.control.deployed == []
    assert await stack.weights.followed(SOLO) == (merged(2).ref, "canary")


async def test_a_change_made_meanwhile_by_hand_is_not_undone(monkeypatch):
    stack = Replicas(monkeypatch, [HEALTHY])
    await stack.registry.register(merged(1), "stable", None)
    await stack.registry.register(merged(2), "canary", None)
    await stack.activate("tutor")
    await stack.registry.move("tutor", "stable", version=2)
    seen = merged(1).ref
    await stack.weights.set(SOLO, None)  # an admin put the base weights back after the follower looked
    assert not await weights_roll.change(stack.config, SOLO, merged(2).ref, "stable", stack.weights, stack.pending,
                                         unless_moved_from=seen)
    assert await stack.weights.followed(SOLO) == (None, None) and stack.control.deployed == []
    assert await stack.weights.claim(SOLO, 1) is not None  # and the claim was given back


REF1 = merged(1).ref


@pytest.mark.parametrize("active, follows, spec, resolves_to, served", [
    (REF1, "stable", "tutor", 1, True),           # a bare name: whichever version the model serves
    (REF1, "stable", "tutor", 2, True),
    (REF1, None, "tutor@v1", 1, True),
    (REF1, "stable", "tutor@stable", 2, True),    # the alias the model follows, moved: rolling to it within seconds
    (REF1, None, "tutor@stable", 2, False),       # pinned to v1: the alias names another version
    (REF1, "stable", "tutor@v2", 2, False),       # another version: activate it first
    (REF1, "stable", "tutor@canary", 2, False),   # another alias, naming another version
    (REF1, "stable", "tutor@canary", 1, True),    # another alias, naming the version served
    (None, None, "tutor", 1, False),              # base weights
    (AdapterRef("other", 1, "/x"), "stable", "tutor", 1, False),
])
def test_what_a_request_naming_a_merged_adapter_is_served(active, follows, spec, resolves_to, served):
    assert serves_named(active, follows, merged(resolves_to), spec) is served
