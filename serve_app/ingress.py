"""The FastAPI ingress: HTTP only. It validates requests and hands them to the copy pipeline or, for the
OpenAI API, to the routed ModelServer; it shapes JSON and SSE answers and maps errors. The admin
endpoints are a mixin (``admin_api.py``); the FastAPI app itself is in ``api_app.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from contracts import metrics
from contracts.config import AppConfig
from contracts.errors import ConflictError, InvalidRequestError, NotFoundError
from deployments import model_calls
from deployments.adapters import AdapterRef, AdapterRegistry, serves_merged
from deployments.generation import Completion, GenerationRequest
from deployments.merged_weights import ActiveWeights
from deployments.router import Router
from deployments.state.cache import ResponseCache
from deployments.state.keys import ApiKey, KeyStore
from deployments.state.ratelimit import RateLimiter
from deployments.state.routes import LiveRoutes
from deployments.state.sessions import SessionStore
from deployments.state.store import RedisStore
from serve_app.access import AccessControl
from serve_app.admin_api import AdminAPI
from serve_app.api_app import STUDIO_HEADERS, WEB_DIR, app
from serve_app.copy_pipeline import CopyPipeline
from serve_app.http import SSE_HEADERS, request_id_of, sse_stream
from serve_app.openai_api import OpenAIFormatter, chat_generation, completion_generation, usage
from serve_app.openapi_doc import live_openapi
from serve_app.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    CopyRequest,
    CopyResponse,
    RevisionRequest,
)

HEALTH_TIMEOUT_S = 5.0



def owner_of(key: ApiKey | None) -> str | None:
    """Whose sessions and usage a request reaches: its key's (None when auth is off)."""
    return key.id if key else None


def server_timing(cache_s: float) -> dict[str, str]:
    return {"Server-Timing": f"cache;dur={cache_s * 1000:.2f}"} if cache_s else {}


@serve.ingress(app)
class Ingress(AdminAPI):
    """Routes: /v1/copy (+ /revise), /v1/chat/completions, /v1/completions, /v1/models, /v1/keys, /healthz."""

    def __init__(self, models: dict[str, DeploymentHandle], polish: DeploymentHandle, sentiment: DeploymentHandle,
                 config: AppConfig):
        self.models = models
        # Handles made with .options() are cached: each call would otherwise build a new handle
        # (and a new connection to the controller) per request.
        self.streaming = {name: h.options(stream=True) for name, h in models.items()}
        self.config = config
        self.redis = RedisStore(config.redis)
        # The router runs here, not behind a handle: its state is the config and Redis, its work a template
        # render, and a hop would cost every request ~8-11 ms (bench/compare.py).
        self.router = Router(config, self.redis)
        self.cache = ResponseCache(self.redis, config.cache)
        self.sessions = SessionStore(self.redis, config.sessions)
        self.keys = KeyStore(self.redis)
        self.adapters = AdapterRegistry(self.redis)
        self.active_weights = ActiveWeights(self.redis)
        self.live_routes = LiveRoutes(self.redis)
        self.access = AccessControl(self.keys, RateLimiter(self.redis, config.auth.window_s), config.auth)
        self.pipeline = CopyPipeline(self.router, models, self.streaming, polish, sentiment, self.sessions)
        app.state.max_body_bytes = config.server.max_body_bytes
        document = live_openapi(app.openapi, config)  # /openapi.json names this config's industries and models
        app.openapi = lambda: document
        # Without API keys, the Host check stands between this service and any web page (DNS rebinding).
        app.state.allowed_hosts = None if config.auth.enabled else frozenset(h.lower() for h in
                                                                              config.server.allowed_hosts)

    # --- native API --------------------------------------------------------------------------

    @app.post("/v1/copy", response_model=CopyResponse)
    async def copy(self, body: CopyRequest, request: Request):
        key = await self.access.check(request)
        received, request_id = time.monotonic(), request_id_of(request)
        plan = await self.pipeline.plan(body)
        adapter = body.adapter or plan.route.adapter  # the request's choice over the live route's
        if adapter:
            plan = replace(plan, adapter=await self._adapter(adapter, plan.route.model))
        weights = await self._merged_weights(plan.route.model)
        material = self.pipeline.cache_material(body, plan, weights)
        cache_key = self.cache.key(material) if material else None
        cache_s = 0.0  # time spent in Redis for the cache, sent as Server-Timing
        if cache_key and "no-cache" not in request.headers.get("cache-control", "").lower():
            started = time.perf_counter()
            cached = await self.cache.get(cache_key)
            cache_s = time.perf_counter() - started
            if cached is not None:
                metrics.record_copy(cached, "hit", time.monotonic() - received)
                return await self._answer(body, self._replay(cached), request_id, "hit", cache_s)

        async def finish(payload: dict) -> None:
            nonlocal cache_s
            # Mid-roll an old replica may answer: its copy must not be cached under the new weights.
            if cache_key and payload["adapter"] == (plan.adapter.tag if plan.adapter else weights):
                started = time.perf_counter()
                await self.cache.put(cache_key, payload)
                cache_s += time.perf_counter() - started
            if body.session_id:
                await self.pipeline.remember(owner_of(key), body.session_id, plan, payload)
            metrics.record_copy(payload, "miss" if cache_key else "off", time.monotonic() - received)

        return await self._run(body, plan, key, request_id, received, finish, lambda: cache_s)

    @app.post("/v1/copy/revise", response_model=CopyResponse)
    async def revise(self, body: RevisionRequest, request: Request):
        key = await self.access.check(request)
        received, request_id = time.monotonic(), request_id_of(request)
        plan = await self.pipeline.plan_revision(body, owner_of(key))

        async def finish(payload: dict) -> None:
            await self.pipeline.remember(owner_of(key), body.session_id, plan, payload)
            metrics.record_copy(payload, "off", time.monotonic() - received)

        return await self._run(body, plan, key, request_id, received, finish)

    async def _run(self, body, plan, key: ApiKey | None, request_id: str, received: float, finish,
                   cache_s=lambda: 0.0) -> Response:
        """Generate (whole or streamed) under a token reservation of ``n × max_tokens``, settled at the end."""
        reserve = body.n * (body.max_tokens or plan.max_tokens)

        async def done(payload: dict, reservation) -> None:
            await self.access.settle(reservation, payload["usage"], payload["model"], payload["adapter"])
            await finish(payload)

        if not body.stream:
            async with self.access.metered(key, reserve) as reservation:
                payload = await self.pipeline.run(body, plan, request_id, received)
                await done(payload, reservation)
            return JSONResponse(payload, headers={"X-Cache": "miss", **server_timing(cache_s())})

        async def events():
            async with self.access.metered(key, reserve) as reservation:
                async for event in self.pipeline.stream(body, plan, request_id, received):
                    if event["type"] == "final":
                        await done({k: v for k, v in event.items() if k != "type"}, reservation)
                    yield event

        return await self._answer(body, events(), request_id, "miss")

    @staticmethod
    async def _replay(payload: dict) -> AsyncIterator[dict]:
        yield {"type": "delta", "attempt": payload["attempts"], "index": 0, "text": payload["raw_text"]}
        yield {"type": "final", **payload}

    async def _answer(self, body, events: AsyncIterator[dict], request_id: str, cache: str,
                      cache_s: float = 0.0) -> Response:
        headers = {"X-Cache": cache, **server_timing(cache_s)}
        if body.stream:
            return await self._sse(events, request_id, done_marker=False, headers=headers)
        final = [e async for e in events][-1]
        return JSONResponse({k: v for k, v in final.items() if k != "type"}, headers=headers)

    # --- OpenAI-compatible API ---------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        key = await self.access.check(request)
        history = []
        if body.session_id:
            session = await self.sessions.load("chat", owner_of(key), body.session_id)
            history = session["messages"] if session else []
        request_id = request_id_of(request)
        generation = chat_generation(body, request_id, history)

        async def finish(completion: Completion) -> None:
            if body.session_id:
                reply = {"role": "assistant", "content": completion.texts[0]}
                await self.sessions.save("chat", owner_of(key), body.session_id, {"model": body.model},
                                         [*generation.messages, reply])

        return await self._openai(body, key, generation, OpenAIFormatter("chat", request_id,
                                                                         self._include_usage(body)), finish)

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: Request):
        key = await self.access.check(request)
        request_id = request_id_of(request)
        generation = completion_generation(body, request_id)

        return await self._openai(body, key, generation, OpenAIFormatter("text", request_id,
                                                                         self._include_usage(body)))

    @staticmethod
    def _include_usage(body) -> bool:
        return bool(body.stream_options and body.stream_options.include_usage)

    async def _adapter(self, name: str, model: str) -> AdapterRef | None:
        """The adapter to apply per request; None for a merged adapter, which the model's weights already are."""
        adapter = await self.adapters.require(name)
        if adapter.base_model != model:
            raise InvalidRequestError(f"adapter {name!r} is for model {adapter.base_model}, but this request is "
                                      f"served by {model}", "adapter")
        if adapter.kind == "merged":
            active = await self.active_weights.get(model)
            if active is None or active.name != name:
                raise ConflictError(f"adapter {name!r} is merged weights and model {model} serves "
                                    f"{active.tag if active else 'its base weights'}: activate it first with "
                                    f"PUT /v1/models/{model}/weights", "adapter")
            return None
        return adapter.ref

    async def _merged_weights(self, model: str) -> str | None:
        """The merged adapter a model serves (for cache keys); None for base weights or LoRA models."""
        if not serves_merged(self.config.model(model)):
            return None
        active = await self.active_weights.get(model)
        return active.tag if active else None

    async def _openai(self, body, key: ApiKey | None, generation: GenerationRequest, fmt: OpenAIFormatter,
                      finish=None):
        # `model` may name an adapter too: "<route or model>:<adapter>".
        target, _, adapter_name = body.model.partition(":")
        plan = await self.router.resolve(target)
        adapter_name = adapter_name or plan.adapter
        if adapter_name:
            generation = replace(generation, adapter=await self._adapter(adapter_name, plan.model))
        reserve = body.n * (body.max_tokens or self.config.model(plan.model).default_max_tokens)

        async def done(completion: Completion, reservation) -> None:
            await self.access.settle(reservation, usage(completion), completion.model,
                                     generation.adapter.tag if generation.adapter else completion.weights)
            if finish is not None:
                await finish(completion)

        if not body.stream:
            async with self.access.metered(key, reserve) as reservation:
                completion = await model_calls.generate(self.models[plan.model], generation)
                await done(completion, reservation)
            return fmt.response(completion)

        async def events() -> AsyncIterator[dict]:
            async with self.access.metered(key, reserve) as reservation:
                async for item in model_calls.stream(self.streaming[plan.model], generation):
                    if isinstance(item, Completion):
                        await done(item, reservation)
                        for chunk in fmt.closing_chunks(item):
                            yield chunk
                    else:
                        yield fmt.delta_chunk(plan.model, item)

        return await self._sse(events(), fmt.request_id, done_marker=True)

    @staticmethod
    async def _sse(events: AsyncIterator[dict], request_id: str, done_marker: bool,
                   headers: dict | None = None) -> StreamingResponse:
        """Wait for the first event before answering, so a bad request is still a plain 4xx."""
        try:
            first = await events.__anext__()
        except BaseException:
            await events.aclose()
            raise

        async def all_events():
            yield first
            async for event in events:
                yield event

        return StreamingResponse(sse_stream(all_events(), request_id, done_marker), media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **(headers or {})})

    # --- the web studio --------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def studio(self):
        page = WEB_DIR / "index.html"
        if not page.is_file():
            raise NotFoundError(f"the web studio is not installed here ({page} is missing); the API is under /v1")
        return FileResponse(page, headers=STUDIO_HEADERS)

    # --- discovery and health ----------------------------------------------------------------

    @app.get("/v1/models")
    async def list_models(self, request: Request):
        await self.access.check(request)
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "copyserve",
                 "copyserve": {"kind": "model"}} for name in self.models]
        for route in await self.router.routes():
            data.append({"id": route["industry"], "object": "model", "created": created, "owned_by": "copyserve",
                         "copyserve": {"kind": "route", **route}})
        for a in await self.adapters.list():
            data.append({"id": f"{a.base_model}:{a.name}", "object": "model", "created": int(a.created),
                         "owned_by": "copyserve", "copyserve": {"kind": "adapter", "version": a.version,
                                                                "base_model": a.base_model, "rank": a.rank,
                                                                "adapter_kind": a.kind}})
        return {"object": "list", "data": data}

    @app.get("/v1/usage")
    async def key_usage(self, request: Request):
        """The calling key's own requests and tokens in the current rate-limit window, by model and adapter."""
        key = await self.access.check(request)
        if key is None:
            raise InvalidRequestError("usage is kept per API key, and API keys are off here (auth.enabled: false)")
        return await self.access.usage(key)

    @app.get("/healthz")
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
        return JSONResponse(body, status_code=200 if healthy else 503)
