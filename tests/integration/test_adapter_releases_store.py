"""The adapter registry's Redis structures and Lua scripts against a real redis-server (no Serve app needed):
the scenarios of tests/adapter_registry_scenarios.py, which the unit tests run on fakeredis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from contracts.config import RedisConfig
from deployments.state.adapter_releases import AdapterRegistry
from deployments.state.store import RedisStore
from tests.adapter_registry_scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_registry_scenario_on_redis(redis_server, scenario):
    """Each scenario in a fresh event loop under a key prefix of its own, removed afterwards."""
    config = RedisConfig(url=redis_server.url, key_prefix=f"releases-{uuid.uuid4().hex[:8]}:")

    async def go():
        store = RedisStore(config)
        try:
            await scenario(AdapterRegistry(store), store)
        finally:
            keys = [k async for k in store.client.scan_iter(match=f"{config.key_prefix}*")]
            if keys:
                await store.client.delete(*keys)
            await store.close()

    asyncio.run(go())
