"""The OpenAI-compatible API (a mixin of ``Ingress``): /v1/chat/completions and /v1/completions.

``model`` names a model, a route (industry) or ``<route or model>:<adapter>``; the wire format is
``openai_format.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from fastapi import APIRouter, Depends, Request

from contracts.errors import InvalidRequestError
from deployments import model_calls
from deployments.generation import Completion, GenerationRequest
from deployments.state.keys import ApiKey
from serve_app.access import Caller, caller, owner_of
from serve_app.http import request_id_of, sse_response
from serve_app.openai_format import OpenAIFormatter, chat_generation, completion_generation, usage
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest
from serve_app.openai_tools import auto_refused

router = APIRouter(dependencies=[Depends(caller)])


class OpenAIAPI:
    """Uses the ingress's state: access, router, sessions, models, streaming handles, config, ``_adapter``."""

    @router.post("/v1/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request, key: Caller):
        history = []
        if body.session_id:
            session = await self.sessions.load("chat", owner_of(key), body.session_id)
            history = session["messages"] if session else []
        request_id = request_id_of(request)
        fmt = self._formatter("chat", body, request_id)

        async def finish(generation: GenerationRequest, completion: Completion) -> None:
            if body.session_id:
                reply, _ = fmt.reply(completion)
                await self.sessions.save("chat", owner_of(key), body.session_id, {"model": body.model},
                                         [*generation.messages, reply])

        return await self._openai(body, key, lambda default: chat_generation(body, request_id, default, history),
                                  fmt, finish)

    @router.post("/v1/completions")
    async def completions(self, body: CompletionRequest, request: Request, key: Caller):
        request_id = request_id_of(request)
        return await self._openai(body, key, lambda default: completion_generation(body, request_id, default),
                                  self._formatter("text", body, request_id))

    @staticmethod
    def _formatter(kind: str, body, request_id: str) -> OpenAIFormatter:
        return OpenAIFormatter(kind, request_id, include_usage=bool(body.stream_options and
                                                                    body.stream_options.include_usage),
                               logprobs=body.logprobs_k() is not None,
                               tools=body.tool_mode() if kind == "chat" else None)

    async def _openai(self, body, key: ApiKey | None, build: Callable[[int], GenerationRequest],
                      fmt: OpenAIFormatter, finish=None):
        """``build`` makes the engine request given the serving model's ``default_max_tokens`` (known once the
        model is): the reservation and the engine then read the same resolved sampling."""
        # `model` may name an adapter too: "<route or model>:<adapter>".
        target, _, adapter_name = body.model.partition(":")
        plan = await self.router.resolve(target)
        generation = build(self.config.model(plan.model).default_max_tokens)
        if generation.auto_tools and not self.config.model(plan.model).tool_parser:
            raise InvalidRequestError(auto_refused(plan.model), "tool_choice")
        adapter_name = adapter_name or plan.adapter
        if adapter_name:
            generation = replace(generation, adapter=await self._adapter(adapter_name, plan.model))
        reserve = generation.sampling.n * generation.sampling.max_tokens

        async def done(completion: Completion, reservation) -> None:
            await self.access.settle(reservation, usage(completion), completion.model,
                                     generation.adapter.tag if generation.adapter else completion.weights)
            if finish is not None:
                await finish(generation, completion)

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
                    elif (chunk := fmt.delta_chunk(plan.model, item)) is not None:
                        yield chunk

        return await sse_response(events(), fmt.request_id, done_marker=True)
