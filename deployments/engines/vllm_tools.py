"""tool_choice "auto" on a vLLM engine: the model answers text or calls in its own format (Hermes'
``<tool_call>{...}</tool_call>`` for Qwen, ...), and vLLM's tool parser named by the model's config
reads them, the way vLLM's own chat server does (its ``Parser``: ``adjust_request``, ``parse_delta``
while streaming, ``parse`` on the finished answer). Imports vLLM: engine replicas only."""

from __future__ import annotations

from dataclasses import replace

from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.parser import ParserManager
from vllm.parser.abstract_parser import Parser
from vllm.renderers.chat_utils import make_tool_call_id
from vllm.tool_parsers import ToolParserManager

from contracts.config import ModelConfig
from deployments.generation import Delta, GenerationRequest, ToolAnswer, ToolCall


def check_tool_parser(model: ModelConfig) -> None:
    """A ``tool_parser`` vLLM does not know fails the replica at once, with the names it knows (checked
    here, not at config load: the config package does not import vLLM)."""
    known = ToolParserManager.list_registered()
    if model.tool_parser is not None and model.tool_parser not in known:
        raise ValueError(f"model {model.name}: tool_parser {model.tool_parser!r} is not one of vLLM's tool "
                         f"parsers: {', '.join(known)}")


def parser_class(model: ModelConfig, tokenizer) -> type[Parser] | None:
    """vLLM's parser for the model's tool-call format, checked against its tokenizer (some parsers need
    their marker tokens in the vocabulary); None when the config names no tool parser."""
    if model.tool_parser is None:
        return None
    try:
        return ParserManager.get_parser(tool_parser_name=model.tool_parser, enable_auto_tools=True,
                                        model_name=model.source, tokenizer=tokenizer)
    except TypeError as err:  # vLLM words it with its CLI flags; say which config field it is
        raise ValueError(f"model {model.name}: tool_parser {model.tool_parser!r} cannot be used: {err}") from None


class ToolCallReader:
    """One request's answers read by the tool parser: content deltas and call pieces while it streams,
    then each finished sequence parsed whole (as vLLM answers non-streaming requests)."""

    def __init__(self, parser_cls: type[Parser], tokenizer, request: GenerationRequest, chat_template_kwargs: dict,
                 model_config, prompt_token_ids: list[int]):
        self._make = lambda: parser_cls(tokenizer, self.request.tools, model_config=model_config,
                                        chat_template_kwargs=chat_template_kwargs)
        self.request = ChatCompletionRequest(messages=list(request.messages), tools=list(request.tools or ()),
                                             tool_choice="auto", parallel_tool_calls=request.parallel_tool_calls)
        # The parser may keep special tokens in the text (its markers) or constrain calls (strict tools).
        self.request = self._make().adjust_request(self.request)
        self.prompt_token_ids = prompt_token_ids
        self._streams: dict[int, Parser] = {}  # parsers are stateful: one per sequence
        self._raw: dict[int, str] = {}
        self._ids: dict[int, dict[int, str]] = {}  # call ids streamed per sequence, kept in the whole answer

    def sampling_overrides(self) -> dict:
        return {"skip_special_tokens": self.request.skip_special_tokens,
                "structured_outputs": self.request.structured_outputs}

    def read(self, delta: Delta, token_ids) -> Delta:
        """The engine's raw delta as content and call pieces; the last one of a sequence carries its answer."""
        i, finished = delta.index, delta.finish_reason is not None
        self._raw[i] = self._raw.get(i, "") + delta.text
        parser = self._streams.setdefault(i, self._make())
        message = parser.parse_delta(delta.text, list(token_ids), self.request, self.prompt_token_ids,
                                     finished=finished)
        ids = self._ids.setdefault(i, {})
        pieces = []
        for piece in message.tool_calls if message else ():
            call_id = piece.id or (None if piece.index in ids else make_tool_call_id())
            ids.setdefault(piece.index, call_id)
            fn = piece.function
            pieces.append(ToolCall(piece.index, call_id, fn.name if fn else None, (fn.arguments if fn else None) or ""))
        content = (message.content if message else None) or ""
        return replace(delta, text=content, tool_calls=tuple(pieces), answer=self._answer(i) if finished else None)

    def _answer(self, index: int) -> ToolAnswer:
        _, content, calls = self._make().parse(self._raw.pop(index), self.request, enable_auto_tools=True)
        ids = self._ids.get(index, {})
        return ToolAnswer(content or "", tuple(ToolCall(n, ids.get(n) or c.id or make_tool_call_id(), c.name,
                                                        c.arguments) for n, c in enumerate(calls or ())))
