"""The release autopilot on fakeredis (the registry's real Lua scripts): a canary that breaks its policy is
rolled back, one that holds it is promoted, with "auto" and the reason in the history; a move is conditional
on the aliases still pointing where the check saw them, so two replicas never move twice."""

from __future__ import annotations

import asyncio

import pytest

from deployments.releases.adapters import Adapter
from deployments.releases.autopilot import Autopilot
from deployments.releases.evaluation import pair_field
from deployments.releases.policy import ReleasePolicy
from deployments.state.adapter_eval import AdapterEvaluation, evaluation_key
from deployments.state.adapter_policy import ReleasePolicies
from deployments.state.adapter_releases import AdapterRegistry
from tests.fakes import MemoryStore


class Replica:
    """What one ingress replica holds for releases, on a shared Redis."""

    def __init__(self, store: MemoryStore, interval_s: float = 0.01):
        self.store = store
        self.registry = AdapterRegistry(store)
        self.evaluation = AdapterEvaluation(store)
        self.policies = ReleasePolicies(store)
        self.autopilot = Autopilot(self.registry, self.evaluation, self.policies, interval_s)
        self.evaluation.on_written = self.autopilot.poke


POLICY = ReleasePolicy(max_error_rate=0.1, max_flag_rate=0.3, min_samples=10, rollback_min_samples=5,
                       min_win_rate=0.5, auto_promote=True)


@pytest.fixture
async def replica() -> Replica:
    one = Replica(MemoryStore())
    for number in (1, 2, 3):
        adapter = Adapter("mugs", "qwen-small", f"/adapters/mugs-{number}", 0, 4, 0.0, {}, digest=str(number) * 64)
        await one.registry.register(adapter, {1: "stable", 2: "canary", 3: None}[number], "a1")
    return one


async def evidence(replica: Replica, version: int, fields: dict[str, float]) -> None:
    key = evaluation_key(replica.store, "mugs", version)
    for field, value in fields.items():
        await replica.store.client.hincrbyfloat(key, field, value)


async def aliases(replica: Replica) -> dict[str, int]:
    return (await replica.registry.get("mugs")).aliases


async def test_without_a_policy_nothing_moves(replica):
    await evidence(replica, 2, {"error:n": 50, "error:sum": 50})
    assert await replica.autopilot.check("mugs") is None and await aliases(replica) == {"stable": 1, "canary": 2}


async def test_a_canary_that_breaks_a_threshold_is_rolled_back_at_once(replica):
    await replica.policies.set("mugs", POLICY)
    await evidence(replica, 2, {"samples": 4, "error:n": 6, "error:sum": 2})  # 2 of 6: 33% > 10%
    verdict = await replica.autopilot.check("mugs")
    assert verdict.action == "rollback" and await aliases(replica) == {"stable": 1, "canary": 1}
    entry = (await replica.registry.history("mugs"))[0]
    assert {k: entry[k] for k in ("who", "action", "alias", "from", "to")} == {
        "who": "auto", "action": "rollback", "alias": "canary", "from": 2, "to": 1}
    assert entry["reason"] == "auto rollback: error rate 33.3% (2 of 6) over max_error_rate 10.0%"
    assert await replica.autopilot.check("mugs") is None  # canary is stable's version now: nothing to judge


async def test_a_canary_that_holds_is_promoted_with_its_reason(replica):
    await replica.policies.set("mugs", POLICY)
    await evidence(replica, 2, {"samples": 10, "error:n": 10, "flagged:n": 10, "flagged:sum": 1,
                                pair_field("mugs@v1", "win"): 3, pair_field("mugs@v1", "loss"): 1})
    assert (await replica.autopilot.check("mugs")).action == "promote"
    assert await aliases(replica) == {"stable": 2, "canary": 2}
    entry = (await replica.registry.history("mugs"))[0]
    assert (entry["who"], entry["action"], entry["alias"], entry["from"], entry["to"]) == ("auto", "promote",
                                                                                          "stable", 1, 2)
    assert entry["reason"].startswith("auto promote: 10 answers") and "win rate 75.0% (3 of 4)" in entry["reason"]


async def test_the_move_waits_for_nobody_who_moved_an_alias_meanwhile(replica):
    await replica.policies.set("mugs", POLICY)
    await evidence(replica, 2, {"samples": 1, "error:n": 9, "error:sum": 8})
    judge = replica.autopilot.judge

    async def judge_then_an_admin_moves(name):
        judged = await judge(name)
        await replica.registry.move("mugs", "canary", version=3, who="a1")  # between the look and the move
        return judged

    replica.autopilot.judge = judge_then_an_admin_moves
    assert await replica.autopilot.check("mugs") is None
    assert await aliases(replica) == {"stable": 1, "canary": 3}  # v3 is not what was judged: left alone


async def test_a_promote_needs_canary_still_on_the_judged_version(replica):
    await replica.policies.set("mugs", POLICY)
    await evidence(replica, 2, {"samples": 10, "error:n": 10})
    judge = replica.autopilot.judge

    async def judge_then_canary_moves(name):
        judged = await judge(name)
        await replica.registry.move("mugs", "canary", version=3, who="a1")
        return judged

    replica.autopilot.judge = judge_then_canary_moves
    assert await replica.autopilot.check("mugs") is None
    assert await aliases(replica) == {"stable": 1, "canary": 3}  # stable did not follow canary to v3


async def test_two_replicas_judging_the_same_evidence_move_once(replica):
    other = Replica(replica.store)
    await replica.policies.set("mugs", POLICY)
    await evidence(replica, 2, {"samples": 5, "error:n": 10, "error:sum": 5})
    verdicts = await asyncio.gather(replica.autopilot.check("mugs"), other.autopilot.check("mugs"))
    assert sorted(v is None for v in verdicts) == [False, True]
    autos = [e for e in await replica.registry.history("mugs") if e["who"] == "auto"]
    assert len(autos) == 1 and await aliases(replica) == {"stable": 1, "canary": 1}


async def test_recorded_evidence_pokes_one_check_per_interval(replica):
    await replica.policies.set("mugs", POLICY)
    checks = []
    check = replica.autopilot.check

    async def counted(name):
        checks.append(name)
        return await check(name)

    replica.autopilot.check = counted
    canary = (await replica.registry.resolve("mugs@canary")).ref
    for _ in range(6):
        replica.evaluation.record_error(canary)
    await replica.evaluation.drain()
    await replica.autopilot.drain()
    assert checks == ["mugs"]  # six writes, one check
    assert await aliases(replica) == {"stable": 1, "canary": 1}


async def test_redis_down_is_no_verdict(replica):
    await replica.policies.set("mugs", POLICY)
    replica.store.down = True
    assert await replica.autopilot.check("mugs") is None


async def test_deleting_the_name_deletes_its_policy(replica):
    await replica.policies.set("mugs", POLICY)
    assert await replica.policies.get("mugs") == POLICY
    await replica.registry.delete("mugs", "a1")
    assert await replica.policies.get("mugs") is None
