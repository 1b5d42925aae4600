"""API keys: Bearer secrets with a role, stored hashed in Redis; the secret is shown once."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from deployments.state.store import RedisStore

# While Redis is down, keys verified within this window keep working (fail open for known keys only).
# A key revoked just before an outage works that long on the replicas that had verified it.
DEFAULT_OUTAGE_GRACE_S = 600

T = TypeVar("T")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    created: float
    requests_per_window: int | None = None
    tokens_per_window: int | None = None
    revoked: bool = False

    def public(self) -> dict:
        return asdict(self)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, store: RedisStore, outage_grace_s: float = DEFAULT_OUTAGE_GRACE_S):
        self.store, self.outage_grace_s = store, outage_grace_s
        self._verified: dict[str, tuple[ApiKey, float]] = {}

    def _record(self, key_id: str) -> str:
        return self.store.key("key", key_id)

    async def create(self, role: str, name: str = "", requests_per_window: int | None = None,
                     tokens_per_window: int | None = None) -> tuple[ApiKey, str]:
        secret = "cs-" + secrets.token_urlsafe(32)
        digest = hash_secret(secret)
        key = ApiKey(id=digest[:16], name=name, role=role, created=time.time(),
                     requests_per_window=requests_per_window, tokens_per_window=tokens_per_window)
        fields = {k: ("" if v is None else str(v)) for k, v in key.public().items()} | {"hash": digest}

        async def write(r):
            await r.hset(self._record(key.id), mapping=fields)
            await r.hset(self.store.key("keyhash"), digest, key.id)
            return True

        if not await self.store.call(write, default=False):
            raise ConnectionError("redis is unavailable: the key was not stored")
        return key, secret

    @staticmethod
    def _parse(fields: dict) -> ApiKey:
        opt = lambda v: int(v) if v else None  # noqa: E731
        return ApiKey(id=fields["id"], name=fields.get("name", ""), role=fields["role"],
                      created=float(fields["created"]), requests_per_window=opt(fields.get("requests_per_window")),
                      tokens_per_window=opt(fields.get("tokens_per_window")), revoked=fields.get("revoked") == "True")

    async def list(self) -> list[ApiKey] | None:
        async def read(r):
            ids = await r.hvals(self.store.key("keyhash"))
            return [await r.hgetall(self._record(i)) for i in ids]

        rows = await self.store.call(read)
        return None if rows is None else sorted((self._parse(f) for f in rows if f), key=lambda k: k.created)

    async def get(self, key_id: str) -> ApiKey | None:
        """A key by its id (revoked ones too), None when unknown; ConnectionError when Redis is unavailable."""
        fields = await self.store.call(lambda r: r.hgetall(self._record(key_id)))
        if fields is None:
            raise ConnectionError("redis is unavailable: cannot read the key")
        return self._parse(fields) if fields else None

    async def revoke(self, key_id: str) -> bool | None:
        async def write(r):
            if not await r.exists(self._record(key_id)):
                return False
            await r.hset(self._record(key_id), "revoked", "True")
            return True

        self._verified = {h: v for h, v in self._verified.items() if v[0].id != key_id}
        return await self.store.call(write)

    async def verify(self, secret: str) -> ApiKey | None:
        """The key for a secret, or None. Raises ConnectionError when Redis is down and the key is not
        one verified recently (the caller answers 503 rather than letting unknown keys in)."""
        digest = hash_secret(secret)
        # A key's id is its digest's first 16 hex digits (``create``): one read, no lookup through keyhash;
        # the full digest stored in the record rules out two secrets sharing those digits.
        return self._checked(digest, await self.store.call(lambda r: r.hgetall(self._record(digest[:16]))))

    async def verify_counted(self, secret: str, count: Callable[[str, str, str], Awaitable[tuple[dict, T] | None]]
                             ) -> tuple[ApiKey | None, T | None]:
        """``verify`` with a request counted in the same round trip: ``count(record key, digest, key id)``
        reads the record and counts (``RateLimiter.admit_key``). The count's answer is None while Redis is down
        (a key verified recently still passes, uncounted) and meaningless for an invalid key."""
        digest = hash_secret(secret)
        counted = await count(self._record(digest[:16]), digest, digest[:16])
        key = self._checked(digest, counted[0] if counted else None)
        return key, (counted[1] if counted and key else None)

    def _checked(self, digest: str, fields: dict | None) -> ApiKey | None:
        if fields is None:  # Redis unavailable
            known = self._verified.get(digest)
            if known and time.monotonic() - known[1] < self.outage_grace_s:
                return known[0]
            raise ConnectionError("cannot verify API keys while redis is unavailable")
        key = self._parse(fields) if fields and fields.get("hash") == digest else None
        if key is None or key.revoked:
            self._verified.pop(digest, None)
            return None
        self._verified[digest] = (key, time.monotonic())
        return key
