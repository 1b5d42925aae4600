"""The FastAPI ingress: HTTP only. It validates requests and hands them to the copy pipeline or, for the
OpenAI API, to the routed ModelServer; it shapes JSON and SSE answers and maps errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.generation import Completion, GenerationRequest
from serve_app.config import ServerConfig
from serve_app.copy_pipeline import CopyPipeline, model_stream
from serve_app.http import SSE_HEADERS, RequestContextMiddleware, install_error_handlers, request_id_of, sse_stream
from serve_app.openai_api import OpenAIFormatter, chat_generation, completion_generation
from serve_app.protocol import ChatCompletionRequest, CompletionRequest, CopyRequest, CopyResponse

HEALTH_TIMEOUT_S = 5.0

app = FastAPI(title="copyserve", version="0.1.0", description="Copywriting on Ray Serve and vLLM")
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)


@serve.ingress(app)
class Ingress:
    """Routes: /v1/copy, /v1/chat/completions, /v1/completions, /v1/models, /healthz."""

    def __init__(self, router: DeploymentHandle, models: dict[str, DeploymentHandle], polish: DeploymentHandle,
                 sentiment: DeploymentHandle, server: ServerConfig):
        self.router = router
        self.models = models
        # Handles made with .options() are cached: each call would otherwise build a new handle
        # (and a new connection to the controller) per request.
        self.streaming = {name: h.options(stream=True) for name, h in models.items()}
        self.pipeline = CopyPipeline(router, models, self.streaming, polish, sentiment)
        self.server = server
        app.state.max_body_bytes = server.max_body_bytes

    # --- native API --------------------------------------------------------------------------

    @app.post("/v1/copy", response_model=CopyResponse)
    async def copy(self, body: CopyRequest, request: Request):
        received, request_id = time.monotonic(), request_id_of(request)
        if not body.stream:
            return await self.pipeline.run(body, request_id, received)
        return await self._sse(self.pipeline.stream(body, request_id, received), request_id, done_marker=False)

    # --- OpenAI-compatible API ---------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        generation = chat_generation(body, request_id_of(request))
        return await self._openai(body, generation, OpenAIFormatter("chat", generation.request_id,
                                                                    self._include_usage(body)))

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: Request):
        generation = completion_generation(body, request_id_of(request))
        return await self._openai(body, generation, OpenAIFormatter("text", generation.request_id,
                                                                    self._include_usage(body)))

    @staticmethod
    def _include_usage(body) -> bool:
        return bool(body.stream_options and body.stream_options.include_usage)

    async def _openai(self, body, generation: GenerationRequest, fmt: OpenAIFormatter):
        plan = await self.router.resolve.remote(body.model)
        if not body.stream:
            return fmt.response(await self.models[plan.model].generate.remote(generation))

        async def events() -> AsyncIterator[dict]:
            async for item in model_stream(self.streaming[plan.model], generation):
                if isinstance(item, Completion):
                    for chunk in fmt.closing_chunks(item):
                        yield chunk
                else:
                    yield fmt.delta_chunk(plan.model, item)

        return await self._sse(events(), generation.request_id, done_marker=True)

    @staticmethod
    async def _sse(events: AsyncIterator[dict], request_id: str, done_marker: bool) -> StreamingResponse:
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
                                 headers=SSE_HEADERS)

    # --- discovery and health ----------------------------------------------------------------

    @app.get("/v1/models")
    async def list_models(self):
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "copyserve",
                 "copyserve": {"kind": "model"}} for name in self.models]
        for route in await self.router.routes.remote():
            data.append({"id": route["industry"], "object": "model", "created": created, "owned_by": "copyserve",
                         "copyserve": {"kind": "route", **route}})
        return {"object": "list", "data": data}

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
        body = {"status": "ok" if healthy else "degraded", "models": models,
                "redis": "not configured"}
        return JSONResponse(body, status_code=200 if healthy else 503)
