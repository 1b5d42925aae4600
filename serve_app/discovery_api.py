"""Discovery, health and the studio (a mixin of ``Ingress``): /v1/models, /v1/usage, /healthz,
/openapi.json, /docs and the studio page at /."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from ray.serve.handle import DeploymentHandle

from contracts.errors import InvalidRequestError, NotFoundError
from deployments.text.channels import catalogue
from serve_app.access import Caller, caller, docs_reader
from serve_app.api_app import STUDIO_HEADERS, WEB_DIR
from serve_app.http import FastJSONResponse

HEALTH_TIMEOUT_S = 5.0

# The studio page, the docs page and health (load balancers have no key) are open; /openapi.json is open with
# server.public_docs (``docs_reader``); the rest of the family needs a key.
public = APIRouter()
router = APIRouter(dependencies=[Depends(caller)])


class DiscoveryAPI:
    """Uses the ingress's state: access, router, adapters, models, redis, config, ``_openapi``, ``_public_docs``."""

    @public.get("/", include_in_schema=False)
    async def studio(self):
        page = WEB_DIR / "index.html"
        if not page.is_file():
            raise NotFoundError(f"the web studio is not installed here ({page} is missing); the API is under /v1")
        return FileResponse(page, headers=STUDIO_HEADERS)

    @public.get("/openapi.json", include_in_schema=False, dependencies=[Depends(docs_reader)])
    async def openapi_document(self):
        return FastJSONResponse(self._openapi)

    @public.get("/docs", include_in_schema=False)
    async def docs(self):
        if not self._public_docs:
            raise NotFoundError("the API docs page is off while API keys are on (server.public_docs: false): "
                                "GET /openapi.json with your key instead")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="copyserve API")

    @router.get("/v1/models")
    async def list_models(self):
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "copyserve",
                 "copyserve": {"kind": "model"}} for name in self.models]
        routes, adapters = await asyncio.gather(self.router.routes(), self.adapters.list())  # one wait, not two
        for route in routes:
            data.append({"id": route["industry"], "object": "model", "created": created, "owned_by": "copyserve",
                         "copyserve": {"kind": "route", **route}})
        for release in adapters:
            a = release.current  # what the bare name serves; aliases name the others
            data.append({"id": f"{a.base_model}:{a.name}", "object": "model", "created": int(a.created),
                         "owned_by": "copyserve", "copyserve": {"kind": "adapter", "version": a.version,
                                                                "base_model": a.base_model, "rank": a.rank,
                                                                "adapter_kind": a.kind, "digest": a.digest,
                                                                "aliases": release.aliases}})
        return FastJSONResponse({"object": "list", "data": data})

    @router.get("/v1/channels")
    async def list_channels(self):
        """Where copy can run: each channel's fields, their limits and units, and where the limits come from."""
        return {"object": "list", "data": [c.public() for c in catalogue().values()]}

    @router.get("/v1/usage")
    async def key_usage(self, key: Caller):
        """The calling key's own requests and tokens in the current rate-limit window, by model and adapter."""
        if key is None:
            raise InvalidRequestError("usage is kept per API key, and API keys are off here (auth.enabled: false)")
        return await self.access.usage(key)

    @public.get("/healthz")
    async def healthz(self):
        async def probe(name: str, handle: DeploymentHandle) -> tuple[str, dict]:
            try:
                stats = await asyncio.wait_for(handle.stats.remote(), HEALTH_TIMEOUT_S)
                return name, {"status": "ok" if stats.pop("healthy") else "engine dead", **stats}
            except Exception as exc:  # a health probe reports any failure instead of raising
                return name, {"status": "unavailable", "error": type(exc).__name__}

        models = dict(await asyncio.gather(*(probe(n, h) for n, h in self.models.items())))
        healthy = all(m["status"] == "ok" for m in models.values())
        # Without Redis the service still answers (no cache, config routes): degraded, not down.
        redis = self.redis.status() if self.redis.client is None else (
            "ok" if await self.redis.call(lambda r: r.ping(), default=False) else self.redis.status())
        body = {"status": "ok" if healthy and redis in ("ok", "disabled") else "degraded", "models": models,
                "redis": redis, "cache": "on" if self.config.cache.enabled and redis == "ok" else "off",
                "auth": "on" if self.config.auth.enabled else "OFF (auth.enabled: false)"}
        return FastJSONResponse(body, status_code=200 if healthy else 503)
