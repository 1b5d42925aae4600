"""OpenAI wire format: requests into GenerationRequests, Completions and deltas into OpenAI JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from deployments.generation import (
    Completion,
    Delta,
    GenerationRequest,
    SamplingOptions,
    TokenLogprob,
    engine_request_id,
)
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest, OpenAISampling


def _sampling(req: OpenAISampling) -> SamplingOptions:
    fmt = req.response_format
    return SamplingOptions(
        n=req.n, temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens, seed=req.seed,
        stop=tuple(req.stop), presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        json_schema=json.dumps(fmt.json_schema.json_schema) if fmt and fmt.type == "json_schema" else None,
        json_object=bool(fmt and fmt.type == "json_object"), logprobs=req.logprobs_k(),
    )


def chat_generation(req: ChatCompletionRequest, request_id: str, history: list[dict] = ()) -> GenerationRequest:
    # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
    messages = tuple(history) + tuple({"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                                      for m in req.messages)
    return GenerationRequest(request_id=engine_request_id(request_id), sampling=_sampling(req), messages=messages)


def completion_generation(req: CompletionRequest, request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id=engine_request_id(request_id), sampling=_sampling(req), prompt=req.prompt)


def usage(c: Completion) -> dict:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens}


class OpenAIFormatter:
    """Builds response objects for one request of either endpoint (``chat`` or ``text`` completions)."""

    def __init__(self, kind: str, request_id: str, include_usage: bool = False, logprobs: bool = False):
        self.chat, self.request_id = kind == "chat", request_id
        self.base = {"id": f"{'chatcmpl' if self.chat else 'cmpl'}-{request_id}",
                     "object": "chat.completion" if self.chat else "text_completion", "created": int(time.time())}
        self.include_usage, self.logprobs = include_usage, logprobs
        self._role_sent: set[int] = set()
        self._offsets: dict[int, int] = {}  # characters sent so far per sequence (text_offset of completions)

    def _choice(self, index: int, text: str, finish_reason: str | None, streaming: bool,
                logprobs: Sequence[TokenLogprob] = ()) -> dict:
        lp = self._logprobs(index, logprobs) if self.logprobs else None
        if not self.chat:
            return {"index": index, "text": text, "logprobs": lp, "finish_reason": finish_reason}
        if not streaming:
            return {"index": index, "message": {"role": "assistant", "content": text},
                    "logprobs": lp, "finish_reason": finish_reason}
        delta = {"content": text}
        if index not in self._role_sent:
            self._role_sent.add(index)
            delta["role"] = "assistant"
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}

    def _logprobs(self, index: int, tokens: Sequence[TokenLogprob]) -> dict:
        """OpenAI's two shapes: ``content`` entries for chat, parallel lists for completions."""
        if self.chat:
            return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
                                 "top_logprobs": [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}
                                                  for tok, lp in t.top]} for t in tokens]}
        offsets, at = [], self._offsets.get(index, 0)
        for t in tokens:
            offsets.append(at)
            at += len(t.token)
        self._offsets[index] = at
        return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
                "top_logprobs": [dict(t.top) for t in tokens], "text_offset": offsets}

    def response(self, c: Completion) -> dict:
        per_sequence = c.logprobs or [()] * len(c.texts)
        choices = [self._choice(i, t, r, False, lp) for i, (t, r, lp) in
                   enumerate(zip(c.texts, c.finish_reasons, per_sequence, strict=True))]
        return {**self.base, "model": c.model, "choices": choices, "usage": usage(c)}

    def _chunk(self, model: str, choices: list[dict], **extra) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self.base, "object": obj, "model": model, "choices": choices, **extra}

    def delta_chunk(self, model: str, deltas: list[Delta]) -> dict:
        # finish_reason goes out in the closing chunk only, where the whole answer is known.
        return self._chunk(model, [self._choice(d.index, d.text, None, True, d.logprobs) for d in deltas])

    def closing_chunks(self, c: Completion) -> list[dict]:
        chunks = [self._chunk(c.model, [self._choice(i, "", r, True) for i, r in enumerate(c.finish_reasons)])]
        if self.include_usage:
            chunks.append(self._chunk(c.model, [], usage=usage(c)))
        return chunks
