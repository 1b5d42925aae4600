"""The Redis state pieces against a real redis-server (no Serve app needed)."""

import asyncio
import time
import uuid

import pytest

from contracts.config import CacheConfig, RedisConfig, SessionConfig
from deployments.releases.merged_weights import PendingRolls
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


@pytest.mark.parametrize("grace_s, works", [(600, True), (0, False)])
def test_known_keys_work_through_an_outage_only_within_the_grace(with_store, grace_s, works):
    async def go(store):
        keys = KeyStore(store, outage_grace_s=grace_s)
        key, secret = await keys.create("user", "shop")
        assert (await keys.verify(secret)).id == key.id
        keys.store = RedisStore(RedisConfig(url="redis://127.0.0.1:1/0", timeout_s=0.1, retry_after_s=60))  # outage
        try:
            if works:
                assert (await keys.verify(secret)).id == key.id
            else:
                with pytest.raises(ConnectionError):
                    await keys.verify(secret)
        finally:
            await keys.store.close()
    with_store(go)


def test_a_pending_roll_is_taken_once_and_never_a_newer_one(with_store):
    async def go(store):
        pending = PendingRolls(store)
        await pending.add("tiny-gptj", 1, 100.0)
        (seen,) = await pending.all()
        first, second = await asyncio.gather(pending.take(seen), pending.take(seen))  # two ingress replicas
        assert sorted([first, second]) == [False, True] and await pending.all() == []
        await pending.add("tiny-gptj", 1, 100.0)
        (old,) = await pending.all()
        await pending.add("tiny-gptj", 1, 200.0)  # a rollback deployed since this was read
        assert not await pending.take(old)
        assert [r.deployed_at for r in await pending.all()] == [200.0]
    with_store(go)


def test_sliding_window_is_exact_under_concurrency(with_store):
    async def go(store):
        limiter = RateLimiter(store, window_s=2)
        decisions = await asyncio.gather(*(limiter.admit("k1", 5) for _ in range(12)))
        assert sum(d.admitted for d in decisions) == 5
        assert all(1 <= d.retry_after_s <= 2 for d in decisions if not d.admitted)
        assert (await limiter.admit("other-key", 5)).admitted  # limits are per key
        await asyncio.sleep(2.1)
        assert (await limiter.admit("k1", 5)).admitted
    with_store(go)


def test_a_key_read_counts_its_request_only_when_the_key_is_valid(with_store):
    """The key check and the request count in one script: a wrong or revoked secret counts nothing against
    the key's window; a valid one counts against its own limit over its role's, and is refused past it."""
    async def go(store):
        keys, limiter = KeyStore(store), RateLimiter(store, window_s=60)
        count = lambda roles: lambda record, digest, key_id: limiter.admit_key(record, digest, key_id, roles)  # noqa: E731
        key, secret = await keys.create("user", "shop")
        window = store.key("rl", "requests", key.id)
        found, decision = await keys.verify_counted(secret, count({"user": 3}))
        assert found.id == key.id and decision.admitted and await store.client.zcard(window) == 1
        # Another secret whose record cannot hold its digest, and a secret of no key: no count, no decision.
        assert await keys.verify_counted(secret + "x", count({"user": 3})) == (None, None)
        assert await store.client.zcard(window) == 1
        decisions = [(await keys.verify_counted(secret, count({"user": 3})))[1] for _ in range(3)]
        assert [d.admitted for d in decisions] == [True, True, False] and decisions[2].retry_after_s >= 1
        assert (await keys.verify_counted(secret, count({})))[1].admitted  # no limit: admitted, not counted
        assert await store.client.zcard(window) == 3
        own, own_secret = await keys.create("user", "own limit", requests_per_window=1)
        assert (await keys.verify_counted(own_secret, count({"user": 100})))[1].admitted
        assert not (await keys.verify_counted(own_secret, count({"user": 100})))[1].admitted
        zero, zero_secret = await keys.create("user", "zero", requests_per_window=0)  # 0: the role's limit holds
        assert [(await keys.verify_counted(zero_secret, count({"user": 1})))[1].admitted for _ in range(2)] == \
            [True, False]
        await keys.revoke(key.id)
        await store.client.delete(window)
        assert await keys.verify_counted(secret, count({"user": 3})) == (None, None)
        assert await store.client.zcard(window) == 0
    with_store(go)


def test_concurrent_reservations_cannot_overrun_the_token_limit(with_store):
    """Reservations are atomic: ten requests asking 30 tokens each against a limit of 100 → three pass."""
    async def go(store):
        limiter = RateLimiter(store, window_s=60)
        results = await asyncio.gather(*(limiter.reserve("k", 100, 30) for _ in range(10)))
        admitted = [r for d, r in results if d.admitted]
        assert len(admitted) == 3
        assert all(d.what == "tokens" and d.retry_after_s >= 1 for d, _ in results if not d.admitted)
        assert (await limiter.usage("k"))["reserved_tokens"] == 90
    with_store(go)


def test_settling_replaces_the_reservation_with_the_real_use(with_store):
    async def go(store):
        limiter = RateLimiter(store, window_s=60)
        _, big = await limiter.reserve("k", 100, 80)
        assert not (await limiter.reserve("k", 100, 30))[0].admitted  # 80 held
        await limiter.settle(big, 12, "m|-")
        await limiter.settle(big, 99, "m|-")  # settling twice changes nothing
        decision, small = await limiter.reserve("k", 100, 30)
        assert decision.admitted
        await limiter.settle(small, 0, "-")  # released: a failed request costs nothing
        used = await limiter.usage("k")
        assert used == {"by_label": {"m|-": {"requests": 1, "tokens": 12}}, "reserved_tokens": 0}
        assert (await limiter.usage("other"))["by_label"] == {}  # usage is per key
    with_store(go)


def test_sessions_keep_system_prompt_and_last_turns(with_store):
    async def go(store):
        sessions = SessionStore(store, SessionConfig(max_turns=2, ttl_s=60))
        messages = [{"role": "system", "content": "s"}] + [
            {"role": role, "content": f"{role}{i}"} for i in range(5) for role in ("user", "assistant")]
        assert await sessions.save("copy", "key1", "abc", {"model": "m"}, messages)
        loaded = await sessions.load("copy", "key1", "abc")
        assert loaded["meta"] == {"model": "m"}
        assert [m["content"] for m in loaded["messages"]] == ["s", "user3", "assistant3", "user4", "assistant4"]
        assert await sessions.load("copy", "key1", "missing") is None
        # Ids are chosen by clients: another key, or the other kind of session, never reaches this one.
        assert await sessions.load("copy", "key2", "abc") is None
        assert await sessions.load("chat", "key1", "abc") is None
        assert await sessions.load("copy", None, "abc") is None
        ttl = await store.call(lambda r: r.ttl(store.key("session", "copy", "key1", "abc")))
        assert 0 < ttl <= 60
    with_store(go)


def test_a_full_redis_refuses_writes_but_is_not_an_outage(with_store):
    """maxmemory reached: writes get an error reply (OOM). That call fails open; reads, keys and the
    rest of the service go on as with Redis up (before, one OOM reply turned the store degraded)."""
    async def go(store):
        cache = ResponseCache(store, CacheConfig(ttl_s=60))
        before = cache.key("before")
        await cache.put(before, {"text": "kept"})
        used = int((await store.client.info("memory"))["used_memory"])
        await store.client.config_set("maxmemory-policy", "noeviction")
        await store.client.config_set("maxmemory", str(used + 512 * 1024))
        try:
            filler = store.key("filler")
            for i in range(4096):  # ~1 MiB past the limit: writes start to fail with OOM
                if await store.call(lambda r, i=i: r.set(f"{filler}:{i}", "x" * 1024)) is None:
                    break
            else:
                raise AssertionError("maxmemory was never reached")
            assert await store.call(lambda r: r.set(f"{filler}:big", "x" * 65536)) is None  # refused, quietly
            assert store.status() == "ok"  # not degraded
            assert await cache.get(before) == {"text": "kept"}  # reads still served from Redis
        finally:
            await store.client.config_set("maxmemory", "0")
            keys = [k async for k in store.client.scan_iter(f"{store.key('filler')}:*")]
            if keys:
                await store.client.delete(*keys)
    with_store(go)
