"""Per-key rate limits over a sliding window, atomic in Redis (one Lua script) so that every
ingress replica shares them. Requests are checked before the work, tokens recorded after it."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from deployments.state.store import RedisStore

# KEYS[1]: sorted set of "<id>:<cost>" scored by time in ms. ARGV: now_ms, window_ms, limit, cost.
# cost > 0: admit and record when the window's total + cost fits. cost == 0: admit while total < limit.
# Returns {admitted 0/1, ms until the oldest entry leaves the window}.
ACQUIRE = """
local key, now, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
local fits = (cost > 0 and used + cost <= limit) or (cost == 0 and used < limit)
if fits then
  if cost > 0 then redis.call('ZADD', key, now, ARGV[5] .. ':' .. cost) end
  redis.call('PEXPIRE', key, window)
  return {1, 0}
end
local oldest = tonumber(entries[2] or now)
return {0, oldest + window - now}
"""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    retry_after_s: int = 0
    what: str = ""


class RateLimiter:
    def __init__(self, store: RedisStore, window_s: int):
        self.store, self.window_ms = store, window_s * 1000
        self._script = store.client.register_script(ACQUIRE) if store.client is not None else None

    async def admit(self, key_id: str, requests_limit: int | None, tokens_limit: int | None) -> Decision:
        """Both limits in one round trip (a pipeline of the two scripts). As before, a request counts
        against the request limit even when the token limit then refuses it."""
        checks = [(kind, limit, cost) for kind, limit, cost in (("requests", requests_limit, 1),
                                                                 ("tokens", tokens_limit, 0)) if limit is not None]
        if not checks:
            return Decision(True)
        now_ms = int(time.time() * 1000)

        async def run(r):
            pipe = r.pipeline(transaction=False)
            for kind, limit, cost in checks:
                await self._script(keys=[self.store.key("rl", kind, key_id)],
                                   args=[now_ms, self.window_ms, limit, cost, uuid.uuid4().hex], client=pipe)
            return await pipe.execute()

        results = await self.store.call(run)
        if results is None:  # redis down: fail open
            return Decision(True)
        for (kind, _, _), (admitted, wait_ms) in zip(checks, results, strict=True):
            if not int(admitted):
                return Decision(False, max(1, math.ceil(int(wait_ms) / 1000)), kind)
        return Decision(True)

    async def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            now_ms = int(time.time() * 1000)
            member = f"{uuid.uuid4().hex}:{tokens}"

            async def add(r):
                key = self.store.key("rl", "tokens", key_id)
                await r.zadd(key, {member: now_ms})
                await r.pexpire(key, self.window_ms)

            await self.store.call(add)
