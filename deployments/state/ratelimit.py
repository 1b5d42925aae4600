"""Per-key rate limits over a sliding window, atomic in Redis (one Lua script) so that every
ingress replica shares them. Requests are counted before the work; tokens are reserved before it
and settled after it."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, replace

from deployments.state.store import RedisStore

# KEYS[1]: sorted set of "<member>:<cost>" scored by time in ms. ARGV: now_ms, window_ms, limit, cost, member.
# Admits and records the entry when the window's total + cost fits under the limit.
# Returns {admitted 0/1, ms until the oldest entry leaves the window}.
ACQUIRE = """
local key, now, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
if used + cost <= limit then
  redis.call('ZADD', key, now, ARGV[5] .. ':' .. cost)
  redis.call('PEXPIRE', key, window)
  return {1, 0}
end
local oldest = tonumber(entries[2] or now)
return {0, oldest + window - now}
"""

# The request window: every entry costs 1, so the window's total is ZCARD (constant time), not a walk over
# every entry (ACQUIRE's sum): a key allowed thousands of requests a minute must not cost Redis thousands of
# steps per request, rejected ones included. Admits and records ``member`` when the window holds fewer than
# ``limit``; returns admitted 0/1 and the ms until the oldest entry leaves the window. Shared by both scripts.
_COUNT_FUNCTION = """
local function count(key, now, window, limit, member)
  redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
  if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, window)
    return 1, 0
  end
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return 0, tonumber(oldest[2] or now) + window - now
end
"""

# KEYS as ACQUIRE; ARGV: now_ms, window_ms, limit, member; the same answer.
COUNT = _COUNT_FUNCTION + """
return {count(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])}
"""

# The key check and the request count in one round trip (``admit_key``): KEYS[1] is the API key's record (a hash),
# KEYS[2] its request window; ARGV: the secret's digest, now_ms, window_ms, member, then role/limit pairs. The
# request is counted only when the record holds the digest and is not revoked, against the key's own limit, else
# its role's, if either is set. Returns {the record as HGETALL, admitted 0/1, ms to wait}.
COUNT_FOR_KEY = _COUNT_FUNCTION + """
local record = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #record, 2 do fields[record[i]] = record[i + 1] end
if fields['hash'] ~= ARGV[1] or fields['revoked'] == 'True' then return {record, 1, 0} end
local limit = tonumber(fields['requests_per_window'] or '')
if limit == 0 then limit = nil end  -- as AccessControl._limits reads it: 0 is no limit of the key's own
if not limit then
  for i = 5, #ARGV, 2 do if ARGV[i] == fields['role'] then limit = tonumber(ARGV[i + 1]) end end
end
if not limit then return {record, 1, 0} end
return {record, count(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), limit, ARGV[4])}
"""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    retry_after_s: int = 0
    what: str = ""


@dataclass
class Reservation:
    """Tokens held for one request until it settles. ``member`` is its entry in the key's token window."""

    key_id: str
    member: str
    tokens: int
    settled: bool = False


UNLIMITED = 2**53  # a window total no key reaches: reservations of keys without a token limit always fit


class RateLimiter:
    """Requests are counted at admission. Tokens are reserved at admission (``n × max_tokens``: what the
    request may use) and settled to the real count when it ends, so concurrent requests cannot all pass a
    nearly spent limit, and a request that never completes is not free."""

    def __init__(self, store: RedisStore, window_s: int):
        self.store, self.window_ms = store, window_s * 1000
        client = store.client
        self._script = client.register_script(ACQUIRE) if client is not None else None
        self._count = client.register_script(COUNT) if client is not None else None
        self._count_for_key = client.register_script(COUNT_FOR_KEY) if client is not None else None

    def _retry_after_s(self, wait_ms) -> int:
        """Whole seconds until the oldest entry leaves the window, at most the window: each caller stamps its
        own clock, so an entry stamped a moment after this caller's now would otherwise count beyond it."""
        return min(max(1, math.ceil(int(wait_ms) / 1000)), max(1, self.window_ms // 1000))

    def _tokens_key(self, key_id: str) -> str:
        return self.store.key("rl", "tokens", key_id)

    async def admit(self, key_id: str, requests_limit: int | None) -> Decision:
        """Count one request against the request limit."""
        if requests_limit is None:
            return Decision(True)
        result = await self.store.call(lambda r: self._count(
            keys=[self.store.key("rl", "requests", key_id)],
            args=[int(time.time() * 1000), self.window_ms, requests_limit, uuid.uuid4().hex], client=r))
        if result is None:  # redis down: fail open
            return Decision(True)
        admitted, wait_ms = result
        return Decision(True) if int(admitted) else Decision(False, self._retry_after_s(wait_ms), "requests")

    async def admit_key(self, record_key: str, digest: str, key_id: str,
                        role_limits: dict[str, int]) -> tuple[dict, Decision] | None:
        """Read an API key's record and count one request against its request limit, in one round trip; the
        request counts only for a valid key (KeyStore.verify checks the record again). ``role_limits``: requests
        per window by role, for keys without their own. None when Redis is unavailable."""
        roles = [part for role, limit in role_limits.items() for part in (role, limit)]
        result = await self.store.call(lambda r: self._count_for_key(
            keys=[record_key, self.store.key("rl", "requests", key_id)],
            args=[digest, int(time.time() * 1000), self.window_ms, uuid.uuid4().hex, *roles], client=r))
        if result is None:
            return None
        record, admitted, wait_ms = result
        fields = dict(zip(record[::2], record[1::2], strict=True))
        return fields, (Decision(True) if int(admitted) else Decision(False, self._retry_after_s(wait_ms), "requests"))

    async def reserve(self, key_id: str, tokens_limit: int | None, tokens: int) -> tuple[Decision, Reservation]:
        """Hold ``tokens`` in the key's window when they fit under ``tokens_limit``."""
        reservation = Reservation(key_id, f"{uuid.uuid4().hex}|reserved", tokens)
        result = await self.store.call(lambda r: self._script(
            keys=[self._tokens_key(key_id)],
            args=[int(time.time() * 1000), self.window_ms, tokens_limit or UNLIMITED, max(tokens, 1),
                  reservation.member], client=r))
        if result is None:  # redis down: fail open (nothing is held, settling writes nothing)
            return Decision(True), replace(reservation, settled=True)
        admitted, wait_ms = result
        if not int(admitted):
            return Decision(False, self._retry_after_s(wait_ms), "tokens"), replace(reservation, settled=True)
        return Decision(True), reservation

    async def settle(self, reservation: Reservation, tokens: int, label: str) -> None:
        """Replace the reservation by what the request used (0 releases it). ``label`` (model|adapter)
        is kept with the entry for ``usage``."""
        if reservation.settled:
            return
        reservation.settled = True
        now_ms = int(time.time() * 1000)

        async def write(r):
            key = self._tokens_key(reservation.key_id)
            pipe = r.pipeline(transaction=True)
            pipe.zrem(key, f"{reservation.member}:{max(reservation.tokens, 1)}")
            if tokens > 0:
                pipe.zadd(key, {f"{uuid.uuid4().hex}|{label}:{tokens}": now_ms})
                pipe.pexpire(key, self.window_ms)
            await pipe.execute()

        await self.store.call(write)

    async def usage(self, key_id: str) -> dict:
        """What a key used in the current window: tokens by label, requests settled, tokens still reserved."""
        since = int(time.time() * 1000) - self.window_ms
        entries = await self.store.call(lambda r: r.zrangebyscore(self._tokens_key(key_id), since, "+inf"))
        if entries is None:
            raise ConnectionError("redis is unavailable: usage cannot be read")
        by_label: dict[str, dict] = {}
        reserved = 0
        for entry in entries:
            head, _, count = entry.rpartition(":")
            label = head.partition("|")[2]
            if label == "reserved":
                reserved += int(count)
                continue
            row = by_label.setdefault(label, {"requests": 0, "tokens": 0})
            row["requests"] += 1
            row["tokens"] += int(count)
        return {"by_label": by_label, "reserved_tokens": reserved}
