"""Function calling: what a request may ask, the schema the engine writes under, and the OpenAI answer
and stream built from what it wrote."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from deployments.generation import Completion, Delta
from serve_app.openai_format import OpenAIFormatter, chat_generation
from serve_app.openai_protocol import ChatCompletionRequest

PRICE = {"type": "function", "function": {"name": "get_price", "description": "Price of a SKU", "parameters": {
    "type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}
STOCK = {"type": "function", "function": {"name": "in_stock"}}
CHAT = {"model": "ecommerce", "messages": [{"role": "user", "content": "What does SKU 42 cost?"}]}
NAMED = {"type": "function", "function": {"name": "get_price"}}


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({**CHAT, **fields})


def refusal(**fields) -> str:
    with pytest.raises(ValidationError) as err:
        request(**fields)
    return str(err.value)


def completion(text: str, finish: str = "stop") -> Completion:
    return Completion(model="m", texts=[text], finish_reasons=[finish], prompt_tokens=3, completion_tokens=5)


@pytest.mark.parametrize("fields", [{"tools": [PRICE]}, {"tools": [PRICE], "tool_choice": "auto"}])
def test_auto_lets_the_model_choose_with_the_tools_in_its_template(fields):
    generation = chat_generation(request(**fields, parallel_tool_calls=False), "r", 256)
    assert generation.auto_tools and generation.sampling.json_schema is None  # no schema: the parser reads calls
    assert [t["function"]["name"] for t in generation.tools] == ["get_price"] and not generation.parallel_tool_calls


@pytest.mark.parametrize("fields, says", [
    ({"tool_choice": "required"}, "tool_choice needs tools"),
    ({"tools": [PRICE], "tool_choice": {"type": "function", "function": {"name": "refund"}}}, "'refund'"),
    ({"tools": [PRICE, PRICE], "tool_choice": "required"}, "its own name"),
    ({"tools": [PRICE], "tool_choice": "required", "response_format": {"type": "json_object"}}, "send one of them"),
    ({"tools": [PRICE], "response_format": {"type": "json_object"}}, '"auto" by default'),
    ({"tools": [PRICE, PRICE]}, "its own name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
      "tool_choice": "required"}, "not a valid JSON Schema"),
    ({"tools": [{"type": "function", "function": {"name": "no spaces"}}], "tool_choice": "required"}, "pattern"),
])
def test_tool_requests_that_cannot_be_served_say_why(fields, says):
    assert says in refusal(**fields)


def test_none_means_text_and_sends_no_tools_or_schema():
    generation = chat_generation(request(tools=[PRICE], tool_choice="none"), "r", 256)
    assert generation.tools is None and generation.sampling.json_schema is None and not generation.auto_tools


def test_a_named_function_is_written_under_its_parameters():
    generation = chat_generation(request(tools=[PRICE, STOCK], tool_choice=NAMED), "r", 256)
    assert json.loads(generation.sampling.json_schema) == PRICE["function"]["parameters"]
    assert [t["function"]["name"] for t in generation.tools] == ["get_price", "in_stock"]  # for the template


def test_required_is_a_list_of_calls_to_the_given_functions():
    generation = chat_generation(request(tools=[PRICE, STOCK], tool_choice="required"), "r", 256)
    schema = json.loads(generation.sampling.json_schema)
    assert schema["type"] == "array" and schema["minItems"] == 1 and "maxItems" not in schema
    names = [option["properties"]["name"]["enum"] for option in schema["items"]["anyOf"]]
    assert names == [["get_price"], ["in_stock"]]
    assert schema["items"]["anyOf"][1]["properties"]["parameters"] == {"type": "object", "properties": {}}
    single = chat_generation(request(tools=[PRICE], tool_choice="required", parallel_tool_calls=False), "r", 256)
    assert json.loads(single.sampling.json_schema)["maxItems"] == 1


def formatter(**fields) -> OpenAIFormatter:
    return OpenAIFormatter("chat", "r1", tools=request(**fields).tool_mode())


def test_a_named_call_answers_tool_calls_and_stops():
    choice = formatter(tools=[PRICE], tool_choice=NAMED).response(completion('{"sku": "42"}'))["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["message"]["content"] is None and choice["finish_reason"] == "stop"  # OpenAI: a forced call stops
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_price", "arguments": '{"sku": "42"}'}


def test_required_calls_answer_each_call_and_finish_with_tool_calls():
    text = json.dumps([{"name": "get_price", "parameters": {"sku": "42"}}, {"name": "in_stock", "parameters": {}}])
    choice = formatter(tools=[PRICE, STOCK], tool_choice="required").response(completion(text))["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_price", "in_stock"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"sku": "42"} and choice["finish_reason"] == "tool_calls"
    assert len({c["id"] for c in calls}) == 2


@pytest.mark.parametrize("text", ['{"name": "get_price"}', "[]", '["get_price"]', '[{"name": "get_price"}]', "42"])
def test_anything_but_a_list_of_calls_comes_back_as_text(text):
    choice = formatter(tools=[PRICE], tool_choice="required").response(completion(text))["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": text} and choice["finish_reason"] == "stop"


def test_a_call_cut_by_the_token_budget_comes_back_as_text():
    choice = formatter(tools=[PRICE], tool_choice="required").response(completion('[{"name": "get_pr', "length"))
    assert choice["choices"][0]["message"] == {"role": "assistant", "content": '[{"name": "get_pr'}
    assert choice["choices"][0]["finish_reason"] == "length"


def test_a_named_call_streams_its_arguments_as_they_are_written():
    fmt = formatter(tools=[PRICE], tool_choice=NAMED)
    chunks = [fmt.delta_chunk("m", [Delta(0, part)]) for part in ('{"sku"', ': "42"', "}")]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["tool_calls"][0]["function"]["name"] == "get_price"
    assert first["tool_calls"][0]["id"].startswith("call_")
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks)
    assert arguments == '{"sku": "42"}'
    assert all("id" not in c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:])
    closing = fmt.closing_chunks(completion(arguments))[0]["choices"][0]
    assert closing["finish_reason"] == "stop" and closing["delta"] == {}


def test_required_calls_stream_whole_in_the_closing_chunk():
    fmt = formatter(tools=[PRICE], tool_choice="required")
    text = json.dumps([{"name": "get_price", "parameters": {"sku": "7"}}])
    assert fmt.delta_chunk("m", [Delta(0, text[:10])]) is None and fmt.delta_chunk("m", [Delta(0, text[10:])]) is None
    closing = fmt.closing_chunks(completion(text))[0]["choices"][0]
    assert closing["finish_reason"] == "tool_calls"
    assert closing["delta"]["tool_calls"][0]["index"] == 0
    assert closing["delta"]["tool_calls"][0]["function"] == {"name": "get_price", "arguments": '{"sku": "7"}'}


def test_a_conversation_carries_calls_and_their_results_to_the_template():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_price", "arguments": '{"sku":"42"}'}}
    messages = [CHAT["messages"][0], {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "19.90 EUR"}]
    sent = chat_generation(request(messages=messages), "r", 256).messages
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[1]["content"] == ""
    assert sent[2] == {"role": "tool", "content": "19.90 EUR", "tool_call_id": "call_1"}
    assert "tool_call_id" in refusal(messages=[{"role": "tool", "content": "19.90 EUR"}])
    assert "needs content" in refusal(messages=[{"role": "user"}])
    no_arguments = {"id": "c", "function": {"name": "f"}}
    assert "arguments" in refusal(messages=[{"role": "assistant", "tool_calls": [no_arguments]}])
    assert "only an assistant" in refusal(messages=[{"role": "user", "content": "x", "tool_calls": [call]}])
