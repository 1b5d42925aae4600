"""The Redis state pieces against a real redis-server (no Serve app needed)."""

import asyncio
import time
import uuid

import pytest

from contracts.config import CacheConfig, RedisConfig, SessionConfig
from deployments.state.cache import ResponseCache, cache_key_material
from deployments.state.keys import KeyStore
from deployments.state.ratelimit import RateLimiter
from deployments.state.sessions import SessionStore
from deployments.state.store import RedisStore


@pytest.fixture
def with_store(redis_server):
    """Run ``fn(store)`` in a fresh event loop: the asyncio client belongs to the loop that made it."""
    config = RedisConfig(url=redis_server.url, key_prefix=f"unit-{uuid.uuid4().hex[:8]}:")

    def run(fn):
        async def go():
            store = RedisStore(config)
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(go())

    return run


def run(coro):
    return asyncio.run(coro)


def test_cache_key_covers_adapter_version_and_sampling():
    base = dict(industry="ecommerce", model="m", adapter=None, messages=[{"role": "user", "content": "x"}],
                sampling={"temperature": 0}, postprocess=True, quality={})
    keys = {cache_key_material(**base),
            cache_key_material(**{**base, "adapter": "shoes@v1"}),
            cache_key_material(**{**base, "adapter": "shoes@v2"}),
            cache_key_material(**{**base, "sampling": {"temperature": 0, "seed": 1}}),
            cache_key_material(**{**base, "postprocess": False})}
    assert len(keys) == 5
    assert cache_key_material(**base) == cache_key_material(**dict(reversed(list(base.items()))))


def test_cache_round_trip_and_ttl(with_store):
    async def go(store):
        cache = ResponseCache(store, CacheConfig(ttl_s=1))
        key = cache.key("material")
        assert await cache.get(key) is None
        await cache.put(key, {"text": "文案", "n": 1})
        assert await cache.get(key) == {"text": "文案", "n": 1}
        await asyncio.sleep(1.2)
        assert await cache.get(key) is None
    with_store(go)


def test_keys_are_hashed_verified_and_revoked(with_store):
    async def go(store):
        keys = KeyStore(store)
        key, secret = await keys.create("user", "shop")
        assert (await keys.verify(secret)).id == key.id
        assert await keys.verify(secret + "x") is None
        stored = await store.call(lambda r: r.hgetall(store.key("key", key.id)))
        assert secret not in str(stored)  # only the hash is kept
        assert await keys.revoke(key.id) is True
        assert await keys.verify(secret) is None
        assert await keys.revoke("no-such-id") is False
    with_store(go)


def test_unreachable_redis_fails_open_and_known_keys_survive():
    async def go():
        down = RedisStore(RedisConfig(url="redis://127.0.0.1:1/0", timeout_s=0.1, retry_after_s=60))
        started = time.perf_counter()
        assert await down.call(lambda r: r.get("x"), default="fallback") == "fallback"
        assert time.perf_counter() - started < 1 and down.status().startswith("down")
        started = time.perf_counter()
        assert await down.call(lambda r: r.get("x")) is None  # degraded: no timeout paid again
        assert time.perf_counter() - started < 0.01
        with pytest.raises(ConnectionError):
            await KeyStore(down).verify("cs-unknown")
        await down.close()
    run(go())


def test_sliding_window_is_exact_under_concurrency(with_store):
    async def go(store):
        limiter = RateLimiter(store, window_s=2)
        decisions = await asyncio.gather(*(limiter.admit("k1", 5, None) for _ in range(12)))
        assert sum(d.admitted for d in decisions) == 5
        assert all(1 <= d.retry_after_s <= 2 for d in decisions if not d.admitted)
        assert (await limiter.admit("other-key", 5, None)).admitted  # limits are per key
        await asyncio.sleep(2.1)
        assert (await limiter.admit("k1", 5, None)).admitted
    with_store(go)


def test_token_limit_counts_recorded_tokens(with_store):
    async def go(store):
        limiter = RateLimiter(store, window_s=60)
        assert (await limiter.admit("k", None, 100)).admitted
        await limiter.record_tokens("k", 60)
        assert (await limiter.admit("k", None, 100)).admitted
        await limiter.record_tokens("k", 50)
        refused = await limiter.admit("k", None, 100)
        assert not refused.admitted and refused.what == "tokens"
    with_store(go)


def test_sessions_keep_system_prompt_and_last_turns(with_store):
    async def go(store):
        sessions = SessionStore(store, SessionConfig(max_turns=2, ttl_s=60))
        messages = [{"role": "system", "content": "s"}] + [
            {"role": role, "content": f"{role}{i}"} for i in range(5) for role in ("user", "assistant")]
        assert await sessions.save("abc", {"model": "m"}, messages)
        loaded = await sessions.load("abc")
        assert loaded["meta"] == {"model": "m"}
        assert [m["content"] for m in loaded["messages"]] == ["s", "user3", "assistant3", "user4", "assistant4"]
        assert await sessions.load("missing") is None
        ttl = await store.call(lambda r: r.ttl(store.key("session", "abc")))
        assert 0 < ttl <= 60
    with_store(go)
