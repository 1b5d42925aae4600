"""Admin endpoints of the ingress (a mixin of ``Ingress``): live routes, merged weights, API keys (adapters
and their releases: ``releases_api.py``). Reading needs any key; changing, and listing keys, an admin key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from contracts.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from deployments.model_server import deployment_name
from deployments.releases.adapters import parse_spec, serves_merged
from deployments.state.routes import LiveRoute, Shadow
from serve_app import serve_control, weights_roll
from serve_app.access import admin, caller
from serve_app.protocol import KeyCreateRequest, RouteUpdateRequest, WeightsRequest

# Reading needs any key; changing, and reading keys, an admin key. One of the two per route, never both:
# that would check, and count, a request twice.
keyed = APIRouter(dependencies=[Depends(caller)])
admin_only = APIRouter(dependencies=[Depends(admin)])


class AdminAPI:
    """Uses the ingress's state: access, router, models, config, live_routes, adapters, active_weights,
    pending_rolls, keys, ``_adapter``."""

    # --- admin: live routes ----------------------------------------------------------------------

    @keyed.get("/v1/routes")
    async def list_routes(self):
        live = await self.router.live_routes()
        data = []
        for route in await self.router.routes():
            found = live.get(route["industry"])
            data.append({**route, "source": "live" if found else "config",
                         **(found.public() if found else {"variants": [{"name": "config", "model": route["model"],
                                                                        "adapter": None, "weight": 1.0}],
                                                          "shadow": None})})
        return {"object": "list", "data": data}

    @admin_only.put("/v1/routes/{industry}")
    async def set_route(self, industry: str, body: RouteUpdateRequest):
        known = {r["industry"] for r in await self.router.routes()}
        if industry not in known:
            raise NotFoundError(f"no route {industry!r}; routes: {', '.join(sorted(known))}", "industry")
        variants = body.variant_list()
        for i, v in enumerate(variants):
            if v["model"] not in self.models:
                raise InvalidRequestError(f"variants.{i}.model: no model {v['model']!r}", "model")
            if v["adapter"]:
                await self._adapter(v["adapter"], v["model"])
        shadow = None
        if body.shadow:
            shadow = Shadow(body.shadow.adapter, body.shadow.share)
            adapter = await self.adapters.resolve(shadow.adapter, "shadow.adapter")
            if adapter.kind != "lora" or adapter.base_model not in self.models:
                raise InvalidRequestError(f"shadow.adapter: {shadow.adapter} ({adapter.ref.tag}) is a {adapter.kind} "
                                          f"adapter of {adapter.base_model}; a shadow runs a LoRA adapter of a served "
                                          "model per request", "shadow.adapter")
        route = LiveRoute(variants, shadow)
        if not await self.live_routes.set(industry, route):
            raise ServiceUnavailableError("the route table (redis) is unavailable; nothing changed")
        return {"industry": industry, **route.public()}

    @admin_only.delete("/v1/routes/{industry}")
    async def reset_route(self, industry: str):
        removed = await self.live_routes.delete(industry)
        if removed is None:
            raise ServiceUnavailableError("the route table (redis) is unavailable")
        return {"industry": industry, "source": "config", "reset": removed}

    # --- admin: merged weights (GPT-J) ----------------------------------------------------------

    @admin_only.put("/v1/models/{model}/weights", status_code=202)
    async def set_weights(self, model: str, body: WeightsRequest):
        """Roll a model's replicas onto a merged adapter (or back to base), one drained replica at a time."""
        target = self._model_config(model)
        if not serves_merged(target):
            raise InvalidRequestError(f"model {model} applies LoRA adapters per request: name the adapter on "
                                      "requests or routes instead", "model")
        ref, follows = None, None
        if body.adapter:
            # An alias (or a bare name: its stable alias) is followed: moving it later rolls the model again.
            selector = parse_spec(body.adapter)
            adapter = await self.adapters.resolve(selector)
            if adapter.base_model != model or adapter.kind != "merged":
                raise InvalidRequestError(f"adapter {body.adapter!r} is a {adapter.kind} adapter of "
                                          f"{adapter.base_model}, not merged weights of {model}", "adapter")
            ref, follows = adapter.ref, selector.value if selector.kind == "alias" else None
        await weights_roll.change(self.config, model, ref, follows, self.active_weights, self.pending_rolls)
        return {"model": model, "adapter": ref.tag if ref else None, "follows": follows, "status": "rolling",
                "watch": f"GET /v1/models/{model}/weights"}

    @keyed.get("/v1/models/{model}/weights")
    async def get_weights(self, model: str):
        self._model_config(model)
        active, follows = await self.active_weights.followed(model)
        status = await asyncio.to_thread(serve_control.deployment_status, self.config.server.app_name)
        return {"model": model, "adapter": active.tag if active else None, "follows": follows,
                "deployment": status.get(deployment_name(model), {})}

    def _model_config(self, model: str):
        if model not in self.models:
            raise NotFoundError(f"no model {model!r}; models: {', '.join(self.models)}", "model")
        return self.config.model(model)

    # --- admin: API keys ---------------------------------------------------------------------

    @admin_only.get("/v1/keys")
    async def list_keys(self):
        keys = await self.keys.list()
        if keys is None:
            raise ServiceUnavailableError("the key store (redis) is unavailable")
        return {"object": "list", "data": [k.public() for k in keys]}

    @admin_only.post("/v1/keys", status_code=201)
    async def create_key(self, body: KeyCreateRequest):
        try:
            key, secret = await self.keys.create(body.role, body.name, body.requests_per_window,
                                                 body.tokens_per_window)
        except ConnectionError as err:
            raise ServiceUnavailableError(str(err)) from None
        return {**key.public(), "key": secret}

    @admin_only.delete("/v1/keys/{key_id}")
    async def revoke_key(self, key_id: str):
        revoked = await self.keys.revoke(key_id)
        if revoked is None:
            raise ServiceUnavailableError("the key store (redis) is unavailable")
        if not revoked:
            raise NotFoundError(f"no API key with id {key_id!r}", "key_id")
        return {"id": key_id, "revoked": True}
