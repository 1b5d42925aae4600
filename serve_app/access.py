"""Who may call, and how much: Bearer API keys with roles, and per-key rate limits."""

from __future__ import annotations

from fastapi import Request

from contracts import metrics
from contracts.config import AuthConfig
from contracts.errors import AuthenticationError, PermissionDeniedError, RateLimitError, ServiceUnavailableError
from deployments.state.keys import ApiKey, KeyStore
from deployments.state.ratelimit import RateLimiter


class AccessControl:
    def __init__(self, keys: KeyStore, limiter: RateLimiter, config: AuthConfig):
        self.keys, self.limiter, self.config = keys, limiter, config

    async def check(self, request: Request, admin: bool = False) -> ApiKey | None:
        """The caller's key (None when auth is off); 401, 403, 429 or 503 otherwise."""
        if not self.config.enabled:
            return None
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>` "
                                      "(create one with `copyserve keys create`)")
        try:
            key = await self.keys.verify(secret.strip())
        except ConnectionError as err:
            raise ServiceUnavailableError(str(err)) from None
        if key is None:
            raise AuthenticationError("invalid or revoked API key")
        if admin and key.role != "admin":
            raise PermissionDeniedError("this endpoint needs an admin key")
        await self._admit(key)
        return key

    async def _admit(self, key: ApiKey) -> None:
        role = self.config.rate_limits.get(key.role)
        requests = key.requests_per_window or (role.requests_per_window if role else None)
        tokens = key.tokens_per_window or (role.tokens_per_window if role else None)
        decision = await self.limiter.admit(key.id, requests, tokens)
        if not decision.admitted:
            metrics.RATE_LIMITED.inc(tags={"limit": decision.what})
            limit = requests if decision.what == "requests" else tokens
            raise RateLimitError(f"rate limit reached: {limit} {decision.what} per {self.config.window_s}s for this "
                                 f"key; retry in {decision.retry_after_s}s", decision.retry_after_s)

    async def charge(self, key: ApiKey | None, usage: dict | None) -> None:
        """Count the tokens a request used against its key's token limit."""
        if key is not None and usage:
            await self.limiter.record_tokens(key.id, int(usage.get("total_tokens", 0)))
