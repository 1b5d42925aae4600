"""OpenAI wire format: requests into GenerationRequests, Completions and deltas into OpenAI JSON."""

from __future__ import annotations

import time
from collections.abc import Sequence

from deployments.generation import Completion, Delta, GenerationRequest, TokenLogprob, ToolCall, engine_request_id
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest
from serve_app.openai_tools import ToolMode, call


def chat_generation(req: ChatCompletionRequest, request_id: str, default_max_tokens: int,
                    history: list[dict] = ()) -> GenerationRequest:
    """``default_max_tokens``: the serving model's, for a request without max_tokens (``to_sampling``)."""
    # The model's chat template sees the tools (templates that know tools describe them to the model).
    mode = req.tool_mode()
    tools = tuple(t.model_dump(exclude_none=True) for t in req.tools) if mode else None
    return GenerationRequest(request_id=engine_request_id(request_id), sampling=req.to_sampling(default_max_tokens),
                             messages=tuple(history) + tuple(m.for_template() for m in req.messages), tools=tools,
                             auto_tools=bool(mode and mode.auto), parallel_tool_calls=req.parallel_tool_calls)


def completion_generation(req: CompletionRequest, request_id: str, default_max_tokens: int) -> GenerationRequest:
    return GenerationRequest(request_id=engine_request_id(request_id), sampling=req.to_sampling(default_max_tokens),
                             prompt=req.prompt)


def usage(c: Completion) -> dict:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens}


class OpenAIFormatter:
    """Builds response objects for one request of either endpoint (``chat`` or ``text`` completions)."""

    def __init__(self, kind: str, request_id: str, include_usage: bool = False, logprobs: bool = False,
                 tools: ToolMode | None = None):
        self.chat, self.request_id, self.tools = kind == "chat", request_id, tools
        self._held: dict[int, str] = {}  # "required" tool calls: the text until it is whole
        self._called: set[int] = set()  # "auto": sequences whose stream carried tool calls
        self.base = {"id": f"{'chatcmpl' if self.chat else 'cmpl'}-{request_id}",
                     "object": "chat.completion" if self.chat else "text_completion", "created": int(time.time())}
        self.include_usage, self.logprobs = include_usage, logprobs
        self._role_sent: set[int] = set()
        self._offsets: dict[int, int] = {}  # characters sent so far per sequence (text_offset of completions)

    def _choice(self, index: int, text: str, finish_reason: str | None, streaming: bool,
                logprobs: Sequence[TokenLogprob] = (), calls: Sequence[ToolCall] | None = None) -> dict:
        lp = self._logprobs(index, logprobs) if self.logprobs else None
        if not self.chat:
            return {"index": index, "text": text, "logprobs": lp, "finish_reason": finish_reason}
        if not streaming:
            message, finish_reason = self.message(text, finish_reason, calls)
            return {"index": index, "message": message, "logprobs": lp, "finish_reason": finish_reason}
        delta = {"content": text}
        if index not in self._role_sent:
            self._role_sent.add(index)
            delta["role"] = "assistant"
        return {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}

    def reply(self, c: Completion, index: int = 0) -> tuple[dict, str | None]:
        """Sequence ``index`` of a finished answer as an assistant turn, and its finish reason."""
        return self.message(c.texts[index], c.finish_reasons[index], c.tool_calls[index] if c.tool_calls else None)

    def message(self, text: str, finish_reason: str | None,
                parsed: Sequence[ToolCall] | None = None) -> tuple[dict, str | None]:
        """A finished answer as an assistant turn: its text, or the tool calls it wrote; and its finish reason.
        With "auto" the engine's tool parser has read the calls (``parsed``) and ``text`` is the rest."""
        if self.tools and self.tools.auto:
            if not parsed:
                return {"role": "assistant", "content": text}, finish_reason
            return {"role": "assistant", "content": text or None,
                    "tool_calls": [call(c.name, c.arguments, c.id) for c in parsed]}, "tool_calls"
        calls = self.tools.calls(text) if self.tools else None
        if calls is None:
            return {"role": "assistant", "content": text}, finish_reason
        # OpenAI's reasons: a forced function ends with "stop", a chosen call with "tool_calls".
        reason = finish_reason if finish_reason != "stop" or self.tools.function else "tool_calls"
        return {"role": "assistant", "content": None, "tool_calls": calls}, reason

    def _tool_delta(self, d: Delta) -> dict | None:
        """A streamed tool call: a named function's arguments as they are written; "required" calls are
        held until the list is whole (they are known only then), and sent in the closing chunk; "auto"
        content and calls as the engine's tool parser reads them."""
        if self.tools.auto:
            return self._auto_delta(d)
        if self.tools.function is None:
            self._held[d.index] = self._held.get(d.index, "") + d.text
            return None
        if d.index not in self._role_sent:
            self._role_sent.add(d.index)
            first = call(self.tools.function, d.text)
            return {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **first}]}
        return {"tool_calls": [{"index": 0, "function": {"arguments": d.text}}]}

    def _auto_delta(self, d: Delta) -> dict | None:
        delta = {"content": d.text} if d.text else {}
        if d.tool_calls:
            self._called.add(d.index)
            delta["tool_calls"] = [_call_piece(p) for p in d.tool_calls]
        if not delta and not (self.logprobs and d.logprobs):  # the parser holds text that may open a call
            return None
        if d.index not in self._role_sent:
            self._role_sent.add(d.index)
            delta = {"role": "assistant", **delta}
        return delta

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
        calls = c.tool_calls or [None] * len(c.texts)
        choices = [self._choice(i, t, r, False, lp, tc) for i, (t, r, lp, tc) in
                   enumerate(zip(c.texts, c.finish_reasons, per_sequence, calls, strict=True))]
        return {**self.base, "model": c.model, "choices": choices, "usage": usage(c)}

    def _chunk(self, model: str, choices: list[dict], **extra) -> dict:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self.base, "object": obj, "model": model, "choices": choices, **extra}

    def delta_chunk(self, model: str, deltas: list[Delta]) -> dict | None:
        # finish_reason goes out in the closing chunk only, where the whole answer is known.
        if self.tools and self.chat:
            choices = [{"index": d.index, "delta": delta, "logprobs": self._logprobs(d.index, d.logprobs)
                        if self.logprobs else None, "finish_reason": None}
                       for d in deltas if (delta := self._tool_delta(d)) is not None]
            return self._chunk(model, choices) if choices else None
        return self._chunk(model, [self._choice(d.index, d.text, None, True, d.logprobs) for d in deltas])

    def closing_chunks(self, c: Completion) -> list[dict]:
        if self.tools and self.chat:
            choices = [self._closing_tool_choice(i, r, c) for i, r in enumerate(c.finish_reasons)]
        else:
            choices = [self._choice(i, "", r, True) for i, r in enumerate(c.finish_reasons)]
        chunks = [self._chunk(c.model, choices)]
        if self.include_usage:
            chunks.append(self._chunk(c.model, [], usage=usage(c)))
        return chunks

    def _closing_tool_choice(self, index: int, finish_reason: str | None, c: Completion) -> dict:
        if self.tools.auto:
            delta = {} if index in self._role_sent else {"role": "assistant", "content": ""}
            parsed = c.tool_calls[index] if c.tool_calls else ()
            if index not in self._called and parsed:  # read whole at the end only: sent whole now
                self._called.add(index)
                delta["tool_calls"] = [_call_piece(p) for p in parsed]
            reason = "tool_calls" if index in self._called else finish_reason
        elif self.tools.function is not None:
            reason = finish_reason
            delta = {} if index in self._role_sent else {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, **call(self.tools.function, "")}]}
        else:
            message, reason = self.message(self._held.pop(index, ""), finish_reason)
            delta = {**message, "tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]} \
                if message.get("tool_calls") else message
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}


def _call_piece(piece: ToolCall) -> dict:
    """A streamed tool call piece in OpenAI's chunk shape: id, type and name come with a call's first piece."""
    if piece.id is None:
        return {"index": piece.index, "function": {"arguments": piece.arguments}}
    return {"index": piece.index, **call(piece.name or "", piece.arguments, piece.id)}
