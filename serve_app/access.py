"""Who may call, and how much: Bearer API keys with roles, and per-key rate limits; and the FastAPI
dependencies that routes declare (``caller``, ``admin``, ``docs_reader``) instead of checking by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from contracts import metrics
from contracts.config import AuthConfig
from contracts.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from deployments.state.keys import ApiKey, KeyStore
from deployments.state.ratelimit import RateLimiter, Reservation


class AccessControl:
    def __init__(self, keys: KeyStore, limiter: RateLimiter, config: AuthConfig):
        self.keys, self.limiter, self.config = keys, limiter, config
        # Requests per window by role, for keys without their own limit (the one-round-trip check reads it).
        self._role_requests = {role: limits.requests_per_window for role, limits in config.rate_limits.items()
                               if limits.requests_per_window}

    async def check(self, request: Request, admin: bool = False) -> ApiKey | None:
        """The caller's key (None when auth is off); 401, 403, 429 or 503 otherwise."""
        state = request.scope.get("state") or {}
        if "internal_caller" in state and not admin:
            # A batch line: its key was checked when the batch was created, and a batch is not held to the
            # per-request limit (its lines still reserve tokens).
            return state["internal_caller"]
        if not self.config.enabled:
            return None
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>` "
                                      "(create one with `copyserve keys create`)")
        try:
            if admin:  # a key without the role is refused (403) before its request counts
                key, decision = await self.keys.verify(secret.strip()), None
            else:  # the hot path: the key read and its request counted in one round trip
                key, decision = await self.keys.verify_counted(secret.strip(), self._count)
        except ConnectionError as err:
            raise ServiceUnavailableError(str(err)) from None
        if key is None:
            raise AuthenticationError("invalid or revoked API key")
        if admin and key.role != "admin":
            raise PermissionDeniedError("this endpoint needs an admin key")
        if admin:
            decision = await self.limiter.admit(key.id, self._limits(key)[0])
        if decision is not None and not decision.admitted:
            metrics.RATE_LIMITED.inc(tags={"limit": "requests"})
            raise RateLimitError(f"rate limit reached: {self._limits(key)[0]} requests per {self.config.window_s}s "
                                 f"for this key; retry in {decision.retry_after_s}s", decision.retry_after_s)
        return key

    async def _count(self, record_key: str, digest: str, key_id: str):
        """Count a request in the key's read (``RateLimiter.admit_key``), against the limits of its role."""
        return await self.limiter.admit_key(record_key, digest, key_id, self._role_requests)

    def _limits(self, key: ApiKey) -> tuple[int | None, int | None]:
        role = self.config.rate_limits.get(key.role)
        return (key.requests_per_window or (role.requests_per_window if role else None),
                key.tokens_per_window or (role.tokens_per_window if role else None))

    async def reserve(self, key: ApiKey | None, tokens: int) -> Reservation | None:
        """Hold ``tokens`` (``n × max_tokens``: the most a request may generate) against the key's token
        limit; 429 when they do not fit in the window now, 400 when they never could."""
        if key is None:
            return None
        _, limit = self._limits(key)
        if limit is not None and tokens > limit:
            raise InvalidRequestError(f"this request may generate up to {tokens} tokens (n × max_tokens), more than "
                                      f"this key's limit of {limit} tokens per {self.config.window_s}s; "
                                      "lower max_tokens or n", "max_tokens")
        decision, reservation = await self.limiter.reserve(key.id, limit, tokens)
        if not decision.admitted:
            metrics.RATE_LIMITED.inc(tags={"limit": "tokens"})
            raise RateLimitError(f"rate limit reached: {limit} tokens per {self.config.window_s}s for this key "
                                 f"(this request reserves {tokens}); retry in {decision.retry_after_s}s",
                                 decision.retry_after_s)
        return reservation

    async def settle(self, reservation: Reservation | None, usage: dict | None, model: str,
                     adapter: str | None) -> None:
        """Charge what a request used, in place of its reservation."""
        if reservation is not None:
            await self.limiter.settle(reservation, int((usage or {}).get("total_tokens", 0)),
                                      f"{model}|{adapter or '-'}")

    @asynccontextmanager
    async def metered(self, key: ApiKey | None, tokens: int) -> AsyncIterator[Reservation | None]:
        """A reservation for the body of the block, which settles it with the real usage. If the block fails,
        the reservation is released (an error is not charged); if the client goes away (cancelled, or a
        stream closed early) it stays charged in full: the engine may have decoded all of it, and cutting
        a request must not make it free."""
        reservation = await self.reserve(key, tokens)
        try:
            yield reservation
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:
            if reservation is not None and not reservation.settled:
                await asyncio.shield(self.limiter.settle(reservation, 0, "-"))
            raise

    async def usage(self, key: ApiKey) -> dict:
        """A key's own use in the current window, for ``GET /v1/usage``."""
        try:
            used = await self.limiter.usage(key.id)
        except ConnectionError as err:
            raise ServiceUnavailableError(str(err)) from None
        requests_limit, tokens_limit = self._limits(key)
        rows = [{"model": label.partition("|")[0], "adapter": None if label.endswith("|-") else label.partition("|")[2],
                 **counts} for label, counts in sorted(used["by_label"].items())]
        return {"object": "usage", "key_id": key.id, "window_s": self.config.window_s,
                "limits": {"requests": requests_limit, "tokens": tokens_limit},
                "requests": sum(r["requests"] for r in rows), "tokens": sum(r["tokens"] for r in rows),
                "reserved_tokens": used["reserved_tokens"], "by_model": rows}


def owner_of(key: ApiKey | None) -> str | None:
    """Whose sessions and usage a request reaches: its key's (None when auth is off)."""
    return key.id if key else None


# --- route dependencies ---------------------------------------------------------------------------
# A router declares its family's check once (``APIRouter(dependencies=[Depends(caller)])``); a handler that
# needs the key also takes ``key: Caller``. FastAPI caches a dependency per request: one check, one admission.


@dataclass
class Gate:
    """The ingress replica's access control, set by its __init__ (``install``): one ingress replica runs per
    process, and Serve serves a copy of the FastAPI app, so ``app.state`` is not the place (as ``http.EDGE``)."""

    access: AccessControl | None = None
    public_docs: bool = False  # server.public_docs, or API keys off


GATE = Gate()


def install(access: AccessControl, public_docs: bool) -> None:
    GATE.access, GATE.public_docs = access, public_docs


def _access() -> AccessControl:
    if GATE.access is None:  # Serve routes requests only to a constructed replica
        raise ServiceUnavailableError("this ingress replica is still starting; try again")
    return GATE.access


async def caller(request: Request) -> ApiKey | None:
    """Any valid key (None when auth is off): 401, 429 or 503 otherwise."""
    return await _access().check(request)


async def admin(request: Request) -> ApiKey | None:
    """An admin key: 403 for a user key, and as ``caller`` otherwise."""
    return await _access().check(request, admin=True)


async def docs_reader(request: Request) -> None:
    """/openapi.json names every model and route: open only with ``public_docs``, else any key."""
    if not GATE.public_docs:
        await caller(request)


Caller = Annotated[ApiKey | None, Depends(caller)]
# On an admin_only router's routes: the same check as the router's (FastAPI runs it once), to know who acted.
AdminCaller = Annotated[ApiKey | None, Depends(admin)]
