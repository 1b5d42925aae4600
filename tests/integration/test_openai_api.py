"""The OpenAI-compatible endpoints through the official openai client, unchanged but for base_url."""

import json

import pytest
from openai import BadRequestError, NotFoundError, OpenAI


@pytest.fixture(scope="module")
def oai(base_url, user_key):
    return OpenAI(base_url=f"{base_url}/v1", api_key=user_key, max_retries=0)


@pytest.mark.parametrize("model, served_by", [
    ("ecommerce", "smollm2-135m-instruct"), ("金融", "tiny-qwen3"), ("tiny-gptj", "tiny-gptj"),
])
def test_chat_completion(oai, model, served_by):
    r = oai.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."},
                                                           {"role": "user", "content": "Name a fruit."}],
                                    max_tokens=8, temperature=0)
    assert r.model == served_by and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in {"stop", "length"}
    assert 0 < r.usage.completion_tokens <= 8


def test_chat_completion_stream_with_usage(oai):
    stream = oai.chat.completions.create(model="smollm2-135m-instruct", max_tokens=10, temperature=0, stream=True,
                                         stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "Say hello to the team."}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 10
    whole = oai.chat.completions.create(model="smollm2-135m-instruct", max_tokens=10, temperature=0,
                                        messages=[{"role": "user", "content": "Say hello to the team."}])
    assert whole.choices[0].message.content == text


def test_completion_and_stream(oai):
    r = oai.completions.create(model="education", prompt="Our new course teaches", max_tokens=6, temperature=0)
    assert r.model == "tiny-gptj" and r.choices[0].text and 0 < r.usage.completion_tokens <= 6
    streamed = "".join(c.choices[0].text for c in oai.completions.create(
        model="education", prompt="Our new course teaches", max_tokens=6, temperature=0, stream=True))
    assert streamed == r.choices[0].text


def test_models_lists_models_and_routes(oai):
    ids = {m.id for m in oai.models.list().data}
    assert {"smollm2-135m-instruct", "tiny-qwen3", "tiny-gptj", "ecommerce", "finance", "education"} <= ids


def test_client_errors_surface_as_openai_errors(oai):
    with pytest.raises(NotFoundError, match="known|route"):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(BadRequestError, match="max_tokens"):
        oai.chat.completions.create(model="tiny-gptj", messages=[{"role": "user", "content": "hi"}],
                                    max_tokens=100_000, stream=True)


HEADLINE = {"type": "object", "properties": {"headline": {"type": "string", "maxLength": 24}},
            "required": ["headline"], "additionalProperties": False}


@pytest.mark.parametrize("model", ["ecommerce", "finance"])  # SmolLM2 and Qwen3
def test_a_json_schema_holds_while_the_answer_is_written(oai, model):
    fmt = {"type": "json_schema", "json_schema": {"name": "ad", "schema": HEADLINE, "strict": True}}
    for seed in range(3):
        r = oai.chat.completions.create(model=model, max_tokens=48, temperature=1.0, seed=seed, response_format=fmt,
                                        messages=[{"role": "user", "content": "A headline for a steel water bottle."}])
        answer = json.loads(r.choices[0].message.content)  # valid JSON, by construction
        assert set(answer) == {"headline"} and len(answer["headline"]) <= 24, answer
    streamed = oai.chat.completions.create(model=model, max_tokens=48, temperature=0, stream=True, response_format=fmt,
                                           messages=[{"role": "user", "content": "A headline for running shoes."}])
    answer = json.loads("".join(c.choices[0].delta.content or "" for c in streamed if c.choices))
    assert len(answer["headline"]) <= 24


def test_json_object_and_bad_schemas(oai):
    r = oai.chat.completions.create(model="ecommerce", max_tokens=24, temperature=0,
                                    response_format={"type": "json_object"},
                                    messages=[{"role": "user", "content": "Describe a desk lamp as JSON."}])
    assert r.choices[0].message.content.lstrip().startswith("{")
    with pytest.raises(BadRequestError) as err:
        oai.chat.completions.create(model="ecommerce", max_tokens=8, messages=[{"role": "user", "content": "x"}],
                                    response_format={"type": "json_schema",
                                                     "json_schema": {"name": "x", "schema": {"type": "objekt"}}})
    assert "response_format" in str(err.value) and "not a valid JSON Schema" in str(err.value)


def by_sku(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": f"{name} of a product by SKU", "parameters": {
        "type": "object", "properties": {"sku": {"type": "string", "maxLength": 8}}, "required": ["sku"],
        "additionalProperties": False}}}


@pytest.mark.parametrize("model", ["ecommerce", "finance"])  # two engines: forced calls work on every model
def test_tool_calls_are_written_under_the_functions_schemas(oai, model):
    ask = [{"role": "user", "content": "What does SKU A42 cost?"}]
    tools = [by_sku("get_price"), by_sku("in_stock")]
    named = {"type": "function", "function": {"name": "get_price"}}
    r = oai.chat.completions.create(model=model, max_tokens=48, temperature=0, messages=ask, tools=tools,
                                    tool_choice=named)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_price" and set(json.loads(call.function.arguments)) == {"sku"}
    assert r.choices[0].message.content is None and r.choices[0].finish_reason == "stop"

    r = oai.chat.completions.create(model=model, max_tokens=48, temperature=0.8, seed=1, messages=ask, tools=tools,
                                    tool_choice="required", parallel_tool_calls=False)
    (chosen,) = r.choices[0].message.tool_calls
    assert chosen.function.name in {"get_price", "in_stock"} and r.choices[0].finish_reason == "tool_calls"
    assert len(json.loads(chosen.function.arguments)["sku"]) <= 8

    stream = oai.chat.completions.create(model=model, max_tokens=48, temperature=0, messages=ask, tools=tools,
                                         tool_choice=named, stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert deltas[0].tool_calls[0].function.name == "get_price"
    arguments = "".join(tc.function.arguments or "" for d in deltas for tc in d.tool_calls or [])
    assert arguments == call.function.arguments  # the same call, written as it was decoded

    # The conversation goes on with the call's result.
    turn = {"role": "assistant", "tool_calls": [{"id": call.id, "type": "function",
                                                 "function": {"name": "get_price", "arguments": arguments}}]}
    follow = oai.chat.completions.create(model=model, max_tokens=8, temperature=0, messages=[
        *ask, turn, {"role": "tool", "tool_call_id": call.id, "content": "19.90 EUR"}])
    assert follow.choices[0].message.content and follow.choices[0].message.tool_calls is None

    if model == "ecommerce":  # SmolLM2's config names no tool parser: the model cannot be left to choose
        with pytest.raises(BadRequestError) as err:
            oai.chat.completions.create(model=model, max_tokens=8, messages=ask, tools=tools)
        assert 'tool_choice "required"' in str(err.value) and "smollm2-135m-instruct" in str(err.value)
        assert err.value.body["param"] == "tool_choice"


def test_auto_lets_qwen3_choose_and_vllms_parser_reads_its_calls(oai):
    """tiny-qwen3 names the hermes parser. Its weights are random (and its chat template, SmolLM2's, does not
    describe tools), so it rarely writes a call: what must hold is that "auto" is served, that text and calls
    are told apart consistently, and that a stream says what the whole answer says. vLLM's parser on a real
    call is tests/unit/test_vllm_tools.py."""
    ask = [{"role": "user", "content": "What does SKU A42 cost?"}]
    tools = [by_sku("get_price"), by_sku("in_stock")]
    for choice in (None, "auto"):
        kwargs = {"tool_choice": choice} if choice else {}
        r = oai.chat.completions.create(model="finance", max_tokens=16, temperature=0, messages=ask, tools=tools,
                                        **kwargs)
        message, finish = r.choices[0].message, r.choices[0].finish_reason
        assert (finish == "tool_calls") == bool(message.tool_calls)
        assert "<tool_call>" not in (message.content or "")
        for call in message.tool_calls or []:
            assert call.id and call.function.name in {"get_price", "in_stock"} and json.loads(call.function.arguments)

        chunks = list(oai.chat.completions.create(model="finance", max_tokens=16, temperature=0, messages=ask,
                                                  tools=tools, stream=True, **kwargs))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        names = [tc.function.name for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []
                 if tc.function and tc.function.name]
        assert content == (message.content or "") and names == [c.function.name for c in message.tool_calls or []]
        assert chunks[-1].choices[0].finish_reason == finish

    strict = {**by_sku("get_price"), "function": {**by_sku("get_price")["function"], "strict": True}}
    r = oai.chat.completions.create(model="finance", max_tokens=16, temperature=0, messages=ask, tools=[strict])
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")  # the CPU engine takes vLLM's structural tag


def test_logprobs_come_from_the_engine(oai):
    r = oai.chat.completions.create(model="ecommerce", max_tokens=8, temperature=0, logprobs=True, top_logprobs=2,
                                    messages=[{"role": "user", "content": "Name a colour."}])
    entries = r.choices[0].logprobs.content
    assert len(entries) == r.usage.completion_tokens
    assert "".join(e.token for e in entries) == r.choices[0].message.content
    for e in entries:  # greedy: the chosen token is the most likely one
        assert e.logprob <= 0 and len(e.top_logprobs) == 2 and e.top_logprobs[0].logprob == e.logprob
    streamed = oai.chat.completions.create(model="ecommerce", max_tokens=8, temperature=0, logprobs=True, stream=True,
                                           messages=[{"role": "user", "content": "Name a colour."}])
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert tokens == [e.token for e in entries]
    text = oai.completions.create(model="tiny-gptj", prompt="Once upon a time", max_tokens=5, logprobs=1,
                                  temperature=0).choices[0]
    assert len(text.logprobs.tokens) == len(text.logprobs.token_logprobs) == len(text.logprobs.top_logprobs) == 5
    assert text.logprobs.text_offset[0] == 0
