"""Redis, failing open: every call has a short timeout; while Redis is down callers get
``None``/defaults instead of errors, the outage is logged once, and the store retries on its
own after ``retry_after_s`` so the cache comes back when Redis does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from contracts.config import RedisConfig

logger = logging.getLogger("copyserve.redis")
T = TypeVar("T")
REFUSAL_LOG_EVERY_S = 60.0


class RedisStore:
    """One asyncio Redis client per process (made in a replica's ``__init__``, not at import)."""

    def __init__(self, config: RedisConfig):
        self.config = config
        self.prefix = config.key_prefix
        self.client = aioredis.Redis.from_url(
            config.url, socket_timeout=config.timeout_s, socket_connect_timeout=config.timeout_s,
            decode_responses=True, health_check_interval=0,
        ) if config.enabled else None
        self._down_since: float | None = None
        self._last_try = 0.0
        self._refusals: dict[str, float] = {}  # error reply → when it was last logged

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def status(self) -> str:
        if self.client is None:
            return "disabled"
        return "ok" if self._down_since is None else f"down for {time.monotonic() - self._down_since:.0f}s"

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]], default: T = None) -> T:
        """Run ``fn(client)``; on any Redis failure or timeout return ``default`` and go degraded."""
        if self.client is None:
            return default
        now = time.monotonic()
        if self._down_since is not None and now - self._last_try < self.config.retry_after_s:
            return default  # degraded: do not pay a timeout on every request
        self._last_try = now
        try:
            try:
                result = await asyncio.wait_for(fn(self.client), self.config.timeout_s * 2)
            except (RedisConnectionError, OSError):
                # A pooled connection is stale after Redis restarted: one immediate retry on a fresh one.
                result = await asyncio.wait_for(fn(self.client), self.config.timeout_s * 2)
        except ResponseError as err:
            # Redis answered, with an error (maxmemory reached, a wrong type): this call fails, but Redis is
            # up, so the service does not go degraded (cache off, keys from memory) for everyone.
            self._refused(err)
            return default
        except (RedisError, OSError, asyncio.TimeoutError) as err:
            if self._down_since is None:
                self._down_since = now
                logger.warning("redis at %s unavailable (%s): serving without cache and shared state",
                               self.config.safe_url, type(err).__name__)
            return default
        if self._down_since is not None:
            logger.warning("redis is back after %.0fs", now - self._down_since)
            self._down_since = None
        return result

    def _refused(self, err: ResponseError) -> None:
        kind = str(err).split(" ", 1)[0]  # OOM, WRONGTYPE, ...
        now = time.monotonic()
        if now - self._refusals.get(kind, -REFUSAL_LOG_EVERY_S) >= REFUSAL_LOG_EVERY_S:
            self._refusals[kind] = now
            logger.warning("redis refused a command: %s (logged once a minute per kind)", err)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
