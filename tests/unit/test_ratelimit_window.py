"""The request window on Redis's real Lua (fakeredis): exact at the limit, rejected requests leave no trace,
entries leave the window on time, and a large window answers alike."""

import pytest

from deployments.state import ratelimit
from deployments.state.ratelimit import RateLimiter
from tests.fakes import MemoryStore


@pytest.fixture
def clock(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    return now


async def test_the_limit_admits_exactly_its_count_and_names_the_wait(clock):
    store = MemoryStore()
    limiter = RateLimiter(store, window_s=60)
    decisions = [await limiter.admit("k", 5) for _ in range(8)]
    assert [d.admitted for d in decisions] == [True] * 5 + [False] * 3
    assert {d.retry_after_s for d in decisions[5:]} == {60} and decisions[5].what == "requests"
    # Rejected attempts are not counted: the window holds the five admitted requests only.
    assert await store.client.zcard(store.key("rl", "requests", "k")) == 5
    clock[0] += 59.5
    assert not (await limiter.admit("k", 5)).admitted
    clock[0] += 0.6  # the first five leave the window
    assert (await limiter.admit("k", 5)).admitted
    assert (await limiter.admit("other", 1)).admitted  # per key


async def test_a_large_window_counts_alike(clock):
    limiter = RateLimiter(MemoryStore(), window_s=60)
    for i in range(3000):
        clock[0] += 0.001
        assert (await limiter.admit("busy", 3000)).admitted, i
    rejected = await limiter.admit("busy", 3000)
    assert not rejected.admitted and rejected.retry_after_s == 58  # the oldest leaves 57.001 s from now
