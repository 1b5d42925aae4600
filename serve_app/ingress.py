"""The FastAPI ingress: HTTP only. It validates requests, asks the Router where they go, calls the
chosen ModelServer through its handle, and shapes JSON or SSE answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from deployments.generation import Completion, GenerationRequest, SamplingOptions
from serve_app.config import ServerConfig
from serve_app.http import SSE_HEADERS, RequestContextMiddleware, install_error_handlers, request_id_of, sse_stream
from serve_app.openai_api import OpenAIFormatter, chat_generation, completion_generation
from serve_app.protocol import ChatCompletionRequest, CompletionRequest, CopyRequest, CopyResponse, Timings, Usage

HEALTH_TIMEOUT_S = 5.0

app = FastAPI(title="copyserve", version="0.1.0", description="Copywriting on Ray Serve and vLLM")
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)


@serve.ingress(app)
class Ingress:
    """Routes: /v1/copy, /v1/chat/completions, /v1/completions, /v1/models, /healthz."""

    def __init__(self, router: DeploymentHandle, models: dict[str, DeploymentHandle], server: ServerConfig):
        self.router = router
        self.models = models
        # Handles made with .options() are cached: each call would otherwise build a new handle
        # (and a new connection to the controller) per request.
        self.streaming = {name: h.options(stream=True) for name, h in models.items()}
        self.server = server
        app.state.max_body_bytes = server.max_body_bytes

    # --- native API --------------------------------------------------------------------------

    @app.post("/v1/copy", response_model=CopyResponse)
    async def copy(self, body: CopyRequest, request: Request):
        received = time.monotonic()
        request_id = request_id_of(request)
        plan = await self.router.plan_copy.remote(body.industry, body.product, body.keywords, body.tone,
                                                  body.length, body.language)
        generation = GenerationRequest(
            request_id=request_id, messages=tuple(plan.messages),
            sampling=SamplingOptions(n=body.n, temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                                     max_tokens=body.max_tokens or plan.max_tokens),
        )

        def final(c: Completion) -> dict:
            texts = [t.strip() for t in c.texts]
            return CopyResponse(
                id=request_id, created=int(time.time()), industry=plan.route.industry, model=c.model,
                language=plan.language, text=texts[0], texts=texts, finish_reasons=c.finish_reasons,
                usage=Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                            total_tokens=c.prompt_tokens + c.completion_tokens),
                timings=Timings(first_token_ms=c.first_token_s and round(c.first_token_s * 1000, 1),
                                generation_ms=round(c.total_s * 1000, 1),
                                total_ms=round((time.monotonic() - received) * 1000, 1),
                                tokens_per_s=round(c.tokens_per_s, 2)),
            ).model_dump()

        if not body.stream:
            return final(await self.models[plan.route.model].generate.remote(generation))

        async def events(items: AsyncIterator) -> AsyncIterator[dict]:
            async for item in items:
                if isinstance(item, Completion):
                    yield {"type": "final", **final(item)}
                else:
                    for d in item:
                        yield {"type": "delta", "index": d.index, "text": d.text}

        items = await self._open_stream(plan.route.model, generation)
        return StreamingResponse(sse_stream(events(items), request_id, done_marker=False),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

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

        async def events(items: AsyncIterator) -> AsyncIterator[dict]:
            async for item in items:
                if isinstance(item, Completion):
                    for chunk in fmt.closing_chunks(item):
                        yield chunk
                else:
                    yield fmt.delta_chunk(plan.model, item)

        items = await self._open_stream(plan.model, generation)
        return StreamingResponse(sse_stream(events(items), generation.request_id, done_marker=True),
                                 media_type="text/event-stream", headers=SSE_HEADERS)

    async def _open_stream(self, model: str, generation: GenerationRequest) -> AsyncIterator:
        """Start streaming and wait for the first item, so a bad request is still a plain 4xx."""
        stream: DeploymentResponseGenerator = self.streaming[model].generate_stream.remote(generation)
        try:
            first = await stream.__anext__()
        except BaseException:
            stream.cancel()
            raise

        async def items():
            done = False
            try:
                yield first
                async for item in stream:
                    yield item
                done = True
            finally:
                if not done:  # client went away: cancelling reaches the replica, which aborts the engine request
                    stream.cancel()

        return items()

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
