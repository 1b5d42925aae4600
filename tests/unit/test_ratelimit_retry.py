"""Retry-After from the sliding window: whole seconds, at least 1, never past the window (callers stamp
their own clocks, so the oldest entry may carry a stamp a moment after this caller's now)."""

from types import SimpleNamespace

import pytest

from deployments.state.ratelimit import RateLimiter


@pytest.mark.parametrize("wait_ms, seconds", [(1, 1), (999, 1), (1001, 2), (2000, 2), (2005, 2), (9000, 2)])
def test_retry_after_is_whole_seconds_within_the_window(wait_ms, seconds):
    limiter = RateLimiter(SimpleNamespace(client=None), window_s=2)
    assert limiter._retry_after_s(wait_ms) == seconds
