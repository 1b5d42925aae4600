"""tool_choice "auto" through the route, the model server and the formatter, with an engine that answers
what the vLLM engine yields once its tool parser has read the model's output; shapes checked with the
openai SDK's own types and stream accumulator. Models without a tool_parser answer a 400."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from contracts.config import ModelConfig
from contracts.errors import InvalidRequestError
from deployments.coalesce import merge
from deployments.generation import Completion, Delta, ToolAnswer, ToolCall
from deployments.model_server import ModelServer
from deployments.router import RoutePlan
from serve_app.http import internal_request
from serve_app.openai_api import OpenAIAPI
from serve_app.openai_format import OpenAIFormatter
from serve_app.openai_protocol import ChatCompletionRequest
from tests.fakes import FakeMethod

pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'ModelServer.__del__' was never awaited:RuntimeWarning")

PRICE = {"type": "function", "function": {"name": "get_price", "parameters": {
    "type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}
ARGS = '{"sku": "A1"}'
CALL = ToolCall(0, "chatcmpl-tool-1", "get_price", ARGS)
# The model wrote "Let me check. <tool_call>{...}</tool_call>": content first, then the call in pieces.
CALLED = [[Delta(0, "Let me check. ")],
          [Delta(0, "", tool_calls=(ToolCall(0, "chatcmpl-tool-1", "get_price", ""),))],
          [Delta(0, "", tool_calls=(ToolCall(0, arguments='{"sku": '),))],
          [Delta(0, "", "stop", tool_calls=(ToolCall(0, arguments='"A1"}'),),
                 answer=ToolAnswer("Let me check. ", (CALL,)))]]
TEXT = [[Delta(0, "Hello")], [Delta(0, " there", "stop", answer=ToolAnswer("Hello there"))]]


class Handle:
    """A model deployment's handle over a local ModelServer."""

    def __init__(self, server: ModelServer):
        self.generate = FakeMethod(server.generate)
        self.generate_stream = SimpleNamespace(remote=lambda g: Stream(server.generate_stream(g)))


class Stream:
    def __init__(self, items):
        self.items = items

    def __aiter__(self):
        return self.items.__aiter__()

    def cancel(self) -> None:
        pass


@asynccontextmanager
async def metered(_key, _tokens):
    yield None


async def settle(*_args) -> None:
    pass


class Api(OpenAIAPI):
    """The OpenAI routes over one model, tiny-qwen3, served by a ModelServer with a scripted engine."""

    def __init__(self, server: ModelServer, model: ModelConfig):
        async def resolve(_name):
            return RoutePlan(model=model.name)

        self.config = SimpleNamespace(model=lambda _name: model)
        self.router = SimpleNamespace(resolve=resolve)
        self.access = SimpleNamespace(metered=metered, settle=settle)
        self.models = self.streaming = {model.name: Handle(server)}
        self.sessions = None


async def api(steps, tool_parser: str | None = "hermes") -> Api:
    model = ModelConfig(name="tiny-qwen3", family="qwen3", source="org/q", tool_parser=tool_parser,
                        stream_interval_ms=0)
    server = ModelServer.__new__(ModelServer)
    await server.__init__(model, "tests.fakes:ScriptedEngine")
    server.engine.steps = steps
    return Api(server, model)


def body(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "tiny-qwen3", "tools": [PRICE], "messages": [
        {"role": "user", "content": "What does SKU A1 cost?"}], **fields})


async def answer(app: Api, **fields):
    return await app.chat_completions(body(**fields), internal_request("/v1/chat/completions", "rid", None), None)


async def stream(app: Api, **fields) -> list:
    response = await answer(app, stream=True, **fields)
    events = [e.removeprefix("data: ").strip() async for e in response.body_iterator]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.parametrize("fields", [{}, {"tool_choice": "auto"}])
async def test_auto_answers_the_calls_the_parser_read(fields):
    app = await api(CALLED)
    reply = ChatCompletion.model_validate(await answer(app, **fields)).choices[0]
    assert reply.finish_reason == "tool_calls" and reply.message.content == "Let me check. "
    (call,) = reply.message.tool_calls
    assert (call.id, call.type, call.function.name, call.function.arguments) == ("chatcmpl-tool-1", "function",
                                                                                 "get_price", ARGS)
    assert app.models["tiny-qwen3"].generate.calls[0][0].auto_tools  # the engine was asked to parse


async def test_auto_answers_text_when_the_model_wrote_no_call():
    reply = ChatCompletion.model_validate(await answer(await api(TEXT))).choices[0]
    assert reply.finish_reason == "stop" and reply.message.content == "Hello there"
    assert reply.message.tool_calls is None


async def test_auto_streams_content_then_the_call_in_openais_chunk_shape():
    chunks = await stream(await api(CALLED))
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    choice = state.get_final_completion().choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check. "
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        ("chatcmpl-tool-1", "get_price", ARGS)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "Let me check. "}
    assert deltas[1]["tool_calls"] == [{"index": 0, "id": "chatcmpl-tool-1", "type": "function",
                                        "function": {"name": "get_price", "arguments": ""}}]
    assert deltas[2]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"sku": '}}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["tool_calls"]


async def test_auto_streams_plain_text_as_content():
    chunks = await stream(await api(TEXT))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello there"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in chunks)


@pytest.mark.parametrize("fields", [{}, {"tool_choice": "auto"}])
async def test_auto_on_a_model_without_a_tool_parser_is_a_400_saying_what_works(fields):
    with pytest.raises(InvalidRequestError) as err:
        await answer(await api(CALLED, tool_parser=None), **fields)
    assert err.value.param == "tool_choice" and err.value.status_code == 400
    message = err.value.message
    assert "model tiny-qwen3 has no tool parser configured" in message and 'tool_choice "auto"' in message
    assert 'tool_choice "required"' in message and '{"type": "function"' in message


async def test_required_still_works_on_a_model_without_a_tool_parser():
    app = await api([[Delta(0, json.dumps([{"name": "get_price", "parameters": {"sku": "A1"}}]), "stop")]], None)
    reply = ChatCompletion.model_validate(await answer(app, tool_choice="required")).choices[0]
    assert reply.message.tool_calls[0].function.arguments == ARGS


def test_a_call_read_only_at_the_end_comes_whole_in_the_closing_chunk():
    # The streaming parse found nothing, the whole answer a call: the client still gets it.
    fmt = OpenAIFormatter("chat", "r", tools=body().tool_mode())
    assert fmt.delta_chunk("m", [Delta(0, "")]) is None  # text the parser holds back sends nothing
    completion = Completion("m", [""], ["stop"], 3, 5, tool_calls=[(CALL,)])
    closing = fmt.closing_chunks(completion)[0]["choices"][0]
    assert closing["finish_reason"] == "tool_calls"
    assert closing["delta"]["tool_calls"][0]["function"] == {"name": "get_price", "arguments": ARGS}
    assert fmt.reply(completion)[0]["tool_calls"][0]["id"] == "chatcmpl-tool-1"  # what a session keeps


def test_coalescing_folds_argument_pieces_into_their_call():
    (merged,) = merge([d for step in CALLED for d in step])
    assert merged.text == "Let me check. " and merged.finish_reason == "stop"
    assert merged.tool_calls == (CALL,) and merged.answer.calls == (CALL,)
