"""What the adapter registry does, as scenarios run against any store: the unit tests run them on
tests/fakes.py's MemoryStore (fakeredis, which runs the real Lua scripts in process),
tests/integration/test_adapter_releases_store.py on a real redis-server."""

from __future__ import annotations

import asyncio
import json

import pytest

from contracts.errors import ConflictError, InvalidRequestError, NotFoundError
from deployments.releases.adapters import Adapter, parse_spec
from deployments.state.adapter_releases import AdapterRegistry, rollback_target
from deployments.state.adapter_scripts import HISTORY_CAP


def version(name: str, digest: str, model: str = "tiny-qwen3") -> Adapter:
    return Adapter(name=name, base_model=model, path=f"/adapters/{name}/{digest[:6]}", version=0, rank=4,
                   created=1.0, manifest={"seed": digest[:4]}, digest=digest)


D1, D2, D3 = ("1" * 64), ("2" * 64), ("3" * 64)


async def versions_are_content_addressed_and_identical_content_is_a_no_op(registry: AdapterRegistry, _store) -> None:
    first = await registry.register(version("mugs", D1), "stable", "key-a")
    assert (first.adapter.version, first.unchanged, first.aliases) == (1, False, ["stable"])
    again = await registry.register(version("mugs", D1), "stable", "key-b")
    assert again.unchanged and again.adapter == first.adapter  # no new version, no new LoRA id
    staged = await registry.register(version("mugs", D2), "canary", "key-a", "try it")
    assert staged.adapter.version == 2 and staged.adapter.lora_id > first.adapter.lora_id
    release = await registry.require("mugs")
    assert release.aliases == {"stable": 1, "canary": 2} and set(release.versions) == {1, 2}
    history = await registry.history("mugs")
    assert [(e["action"], e["alias"], e["from"], e["to"], e["who"]) for e in history] == [
        ("register", "canary", None, 2, "key-a"), ("register", "stable", None, 1, "key-a")]
    assert history[0]["reason"] == "try it"
    quiet = await registry.register(version("mugs", D3), None, None)
    assert quiet.aliases == [] and (await registry.require("mugs")).aliases == {"stable": 1, "canary": 2}


async def concurrent_registrations_of_one_content_make_one_version(registry: AdapterRegistry, _store) -> None:
    results = await asyncio.gather(*(registry.register(version("race", D1), "stable", None) for _ in range(6)))
    assert sum(not r.unchanged for r in results) == 1 and {r.adapter.version for r in results} == {1}
    assert len(await registry.history("race")) == 1


async def every_form_of_naming_a_version_resolves(registry: AdapterRegistry, _store) -> None:
    await registry.register(version("shoes", D1), "stable", None)
    await registry.register(version("shoes", D2), "canary", None)
    assert (await registry.resolve("shoes")).version == 1
    assert (await registry.resolve("shoes@stable")).version == 1
    assert (await registry.resolve("shoes@canary")).version == 2
    assert (await registry.resolve("shoes@v2")).digest == D2
    assert (await registry.resolve(f"shoes@{D2[:8]}")).version == 2
    for spec, says in (("shoes@beta", "no alias 'beta'"), ("shoes@v9", "no version"),
                       (f"shoes@{D3[:10]}", "no version"), ("boots", "not registered")):
        with pytest.raises(NotFoundError, match=says) as err:
            await registry.resolve(spec)
        assert err.value.param == "adapter"


async def a_digest_prefix_two_versions_share_is_refused(registry: AdapterRegistry, _store) -> None:
    await registry.register(version("twins", "abcdef01" + "1" * 56), "stable", None)
    await registry.register(version("twins", "abcdef01" + "2" * 56), None, None)
    with pytest.raises(InvalidRequestError, match="more than one version"):
        await registry.resolve("twins@abcdef01")
    assert (await registry.resolve("twins@abcdef012")).version == 2


async def moves_check_the_version_and_who_moved(registry: AdapterRegistry, _store) -> None:
    for digest in (D1, D2):
        await registry.register(version("bags", digest), None if digest == D2 else "stable", None)
    moved = await registry.move("bags", "canary", version=2, who="key-a", reason="stage")
    assert (moved.before, moved.version, moved.aliases) == (None, 2, {"stable": 1, "canary": 2})
    with pytest.raises(NotFoundError):
        await registry.move("bags", "stable", version=7)
    with pytest.raises(ConflictError, match="moved meanwhile"):
        await registry.move("bags", "stable", version=2, expected=2)
    same = await registry.move("bags", "canary", version=2)  # already there: nothing logged
    assert same.before == 2
    promoted = await registry.move("bags", "stable", source="canary", who="key-b", action="promote")
    assert promoted.aliases == {"stable": 2, "canary": 2}
    with pytest.raises(ConflictError, match="no alias 'beta'"):
        await registry.move("bags", "stable", source="beta", action="promote")
    history = await registry.history("bags")
    assert [(e["action"], e["alias"], e["from"], e["to"], e["who"]) for e in history[:2]] == [
        ("promote", "stable", 1, 2, "key-b"), ("move", "canary", None, 2, "key-a")]
    assert rollback_target(history, "stable") == 1


async def history_is_capped(registry: AdapterRegistry, store) -> None:
    await registry.register(version("busy", D1), "stable", None)
    await registry.register(version("busy", D2), None, None)
    for i in range(HISTORY_CAP + 5):
        await registry.move("busy", "canary", version=1 + i % 2)
    history = await registry.history("busy")
    assert len(history) == HISTORY_CAP and history[0]["to"] == 1 + (HISTORY_CAP + 4) % 2
    assert await store.client.llen(store.key("adapter", "busy", "history")) == HISTORY_CAP  # not just what is read


async def a_version_an_alias_holds_stays_and_deleting_frees_its_content(registry: AdapterRegistry, _store) -> None:
    await registry.register(version("caps", D1), "stable", None)
    await registry.register(version("caps", D2), "canary", None)
    with pytest.raises(ConflictError, match="canary"):
        await registry.delete_version("caps", 2, None)
    assert await registry.unalias("caps", "canary", "key-a") is True
    await registry.delete_version("caps", 2, "key-a")
    assert set((await registry.require("caps")).versions) == {1}
    back = await registry.register(version("caps", D2), None, None)  # the same content: a new version now
    assert not back.unchanged and back.adapter.version == 3
    assert await registry.delete("caps", "key-a") is True
    assert await registry.get("caps") is None and await registry.delete("caps") is False
    assert (await registry.history("caps"))[0]["action"] == "delete"  # the audit log outlives the adapter
    fresh = await registry.register(version("caps", D1), "stable", None)
    assert fresh.adapter.version == 4  # numbers are never given twice
    assert [r.name for r in await registry.list()] == ["caps"]


async def records_from_before_versions_were_kept_are_served_and_moved_over(registry: AdapterRegistry, store) -> None:
    old = {"name": "legacy", "base_model": "tiny-qwen3", "path": "/adapters/legacy", "version": 3, "rank": 8,
           "created": 1.0, "manifest": {}, "kind": "lora", "lora_id": 11}
    await store.client.hset(store.key("adapters"), "legacy", json.dumps(old))
    await store.client.hset(store.key("adapter-versions"), "legacy", 3)
    assert [r.name for r in await registry.list()] == ["legacy"]
    served = await registry.resolve("legacy")
    assert (served.version, served.lora_id, served.digest) == (3, 11, "")
    assert await store.client.hget(store.key("adapters"), "legacy") is None  # moved on first touch
    nxt = await registry.register(version("legacy", D1), "stable", None)
    assert nxt.adapter.version == 4 and (await registry.require("legacy")).aliases == {"stable": 4}
    assert (await registry.resolve(parse_spec("legacy@v3"))).path == "/adapters/legacy"


SCENARIOS = [
    versions_are_content_addressed_and_identical_content_is_a_no_op,
    concurrent_registrations_of_one_content_make_one_version,
    every_form_of_naming_a_version_resolves,
    a_digest_prefix_two_versions_share_is_refused,
    moves_check_the_version_and_who_moved,
    history_is_capped,
    a_version_an_alias_holds_stays_and_deleting_frees_its_content,
    records_from_before_versions_were_kept_are_served_and_moved_over,
]
