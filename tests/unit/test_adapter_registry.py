"""The adapter registry on fakeredis (tests/fakes.py's MemoryStore: the real store and Lua scripts, in process): the
same scenarios run against a real redis-server in tests/integration/test_adapter_releases_store.py."""

from __future__ import annotations

import pytest

from contracts.errors import ServiceUnavailableError
from deployments.state.adapter_releases import AdapterRegistry, rollback_target
from tests.adapter_registry_scenarios import D1, SCENARIOS, version
from tests.fakes import MemoryStore


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_registry_scenario_in_memory(scenario):
    store = MemoryStore()
    await scenario(AdapterRegistry(store), store)


async def test_changes_and_requests_get_a_503_while_redis_is_down_and_listings_fail_open():
    store = MemoryStore()
    registry = AdapterRegistry(store)
    await registry.register(version("mugs", D1), "stable", None)
    store.down = True
    for call in (registry.resolve("mugs"), registry.register(version("mugs", "2" * 64), "stable", None),
                 registry.move("mugs", "canary", version=1), registry.history("mugs"), registry.delete("mugs")):
        with pytest.raises(ServiceUnavailableError):
            await call
    assert await registry.list() == []


def entry(action, alias, from_, to):
    return {"action": action, "alias": alias, "from": from_, "to": to}


@pytest.mark.parametrize("alias, moves, expected", [
    ("stable", [], None),
    ("stable", [entry("register", "stable", None, 1)], None),  # nothing before the first version
    ("stable", [entry("register", "stable", None, 1), entry("register", "stable", 1, 2)], 1),
    ("stable", [entry("register", "stable", None, 1), entry("register", "canary", None, 2),
                entry("promote", "stable", 1, 2)], 1),
    # each rollback undoes one move: 1 -> 2 -> 3, back to 2, then back to 1, then nothing is left
    ("stable", [entry("move", "stable", 1, 2), entry("move", "stable", 2, 3), entry("rollback", "stable", 3, 2)], 1),
    ("stable", [entry("move", "stable", 1, 2), entry("rollback", "stable", 2, 1)], None),
    ("stable", [entry("move", "stable", 1, 2), entry("move", "canary", 5, 6)], 1),  # other aliases do not count
    ("stable", [entry("move", "stable", 1, 2), entry("delete", None, None, None),
                entry("register", "stable", None, 3)], None),  # a deleted adapter's past is not its own
    ("canary", [entry("move", "canary", 1, 2), entry("unalias", "canary", 2, None),
                entry("move", "canary", None, 4)], None),
    ("stable", [entry("move", "stable", 1, 2), entry("delete-version", None, 7, None)], 1),
])
def test_rollback_walks_back_one_move_at_a_time(alias, moves, expected):
    assert rollback_target(list(reversed(moves)), alias) == expected  # history comes newest first
