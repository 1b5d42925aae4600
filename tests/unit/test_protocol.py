"""Request schemas: the native copy request and the OpenAI-compatible ones."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serve_app.openai_format import chat_generation
from serve_app.openai_protocol import ChatCompletionRequest, ChatMessage, CompletionRequest
from serve_app.protocol import CopyRequest

CHAT = {"model": "ecommerce", "messages": [{"role": "user", "content": "hi"}]}


def copy_request(**fields) -> CopyRequest:
    return CopyRequest.model_validate({"industry": "ecommerce", "product": "Shoes", **fields})


def error_locs(err: pytest.ExceptionInfo) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}


def test_copy_request_defaults_and_stripping():
    req = copy_request(industry="  电商 ", product="  Trail Shoes\n", keywords=[" light ", "grippy"], tone=" calm ")
    assert req.industry == "电商" and req.product == "Trail Shoes"
    assert req.keywords == ["light", "grippy"] and req.tone == "calm"
    assert (req.length, req.language, req.n, req.stream) == ("medium", None, 1, False)


@pytest.mark.parametrize(("fields", "loc"), [
    ({"colour": "red"}, "colour"),
    ({"product": "   "}, "product"),
    ({"temperature": 2.01}, "temperature"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"keywords": ["ok", "  "]}, "keywords.1"),
    ({"keywords": [""]}, "keywords.0"),
    ({"length": "epic"}, "length"),
    ({"language": "fr"}, "language"),
    ({"top_p": 0}, "top_p"),
])
def test_copy_request_rejects(fields, loc):
    with pytest.raises(ValidationError) as err:
        copy_request(**fields)
    assert loc in error_locs(err)


def test_copy_request_accepts_bounds():
    req = copy_request(temperature=2, n=8, top_p=1)
    assert (req.temperature, req.n, req.top_p) == (2, 8, 1)


def test_max_completion_tokens_overrides_max_tokens():
    both = {**CHAT, "max_tokens": 10, "max_completion_tokens": 20}
    assert ChatCompletionRequest.model_validate(both).max_tokens == 20
    assert ChatCompletionRequest.model_validate({**CHAT, "max_tokens": 10}).max_tokens == 10
    assert ChatCompletionRequest.model_validate(CHAT).max_tokens is None


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, []), ([], [])])
def test_stop_normalised_to_list(stop, expected):
    assert ChatCompletionRequest.model_validate({**CHAT, "stop": stop}).stop == expected


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], ["a", ""], ""])
def test_stop_rejects_too_many_or_empty(stop):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({**CHAT, "stop": stop})
    assert "stop" in error_locs(err)


def test_chat_ignores_unknown_fields():
    req = ChatCompletionRequest.model_validate({**CHAT, "metadata": {"a": 1}, "parallel_tool_calls": True})
    assert not hasattr(req, "metadata")
    assert "metadata" not in req.model_dump()


@pytest.mark.parametrize("field,value", [("logit_bias", {"50256": -100})])
def test_chat_refuses_known_fields_it_does_not_serve(field, value):
    """Known OpenAI fields are never silently dropped: a 400 names the field."""
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({**CHAT, field: value})
    assert field in error_locs(err) and "not served" in str(err.value)


@pytest.mark.parametrize("field,value", [("logit_bias", {}), ("tools", []),
                                         ("response_format", {"type": "text"}), ("tool_choice", "none")])
def test_chat_accepts_the_defaults_of_fields_it_does_not_serve(field, value):
    assert ChatCompletionRequest.model_validate({**CHAT, field: value})


@pytest.mark.parametrize("fields, k", [({}, None), ({"logprobs": True}, 0), ({"logprobs": True, "top_logprobs": 3}, 3),
                                       ({"logprobs": False, "top_logprobs": 0}, None)])
def test_chat_logprobs_ask_the_engine_for_k_alternatives(fields, k):
    assert chat_generation(ChatCompletionRequest.model_validate({**CHAT, **fields}), "r", 256).sampling.logprobs == k


@pytest.mark.parametrize("fields, says", [({"top_logprobs": 3}, "needs logprobs"), ({"logprobs": True,
                                                                                      "top_logprobs": 21}, "20")])
def test_chat_top_logprobs_out_of_place_is_a_400_naming_it(fields, says):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({**CHAT, **fields})
    assert "top_logprobs" in error_locs(err) and says in str(err.value)


HEADLINE = {"type": "object", "properties": {"headline": {"type": "string", "maxLength": 30}},
            "required": ["headline"], "additionalProperties": False}


@pytest.mark.parametrize("fmt, schema, json_object", [
    ({"type": "text"}, None, False),
    ({"type": "json_object"}, None, True),
    ({"type": "json_schema", "json_schema": {"name": "ad", "schema": HEADLINE, "strict": True}}, HEADLINE, False),
])
def test_response_format_becomes_the_engine_constraint(fmt, schema, json_object):
    request = ChatCompletionRequest.model_validate({**CHAT, "response_format": fmt})
    sampling = chat_generation(request, "r", 256).sampling
    assert (json.loads(sampling.json_schema) if sampling.json_schema else None) == schema
    assert sampling.json_object is json_object


@pytest.mark.parametrize("fmt, says", [
    ({"type": "json_schema"}, "give json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "ad", "schema": {"type": "objekt"}}}, "not a valid JSON Schema"),
    ({"type": "json_schema", "json_schema": {"name": "bad name!", "schema": HEADLINE}}, "name"),
    ({"type": "xml"}, "type"),
])
def test_a_bad_response_format_is_a_400_that_says_what_is_wrong(fmt, says):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({**CHAT, "response_format": fmt})
    assert any(loc.startswith("response_format") for loc in error_locs(err)) and says in str(err.value)


@pytest.mark.parametrize("field,value", [("echo", True), ("best_of", 3), ("suffix", "end")])
def test_completions_refuse_fields_they_do_not_serve(field, value):
    with pytest.raises(ValidationError) as err:
        CompletionRequest.model_validate({"model": "m", "prompt": "p", field: value})
    assert field in error_locs(err)


@pytest.mark.parametrize("seed", [2**70, -(2**64)])
def test_seed_outside_the_engine_range_is_a_400(seed):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({**CHAT, "seed": seed})
    assert "seed" in error_locs(err)


def test_chat_requires_messages():
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({**CHAT, "messages": []})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({**CHAT, "messages": [{"role": "tool", "content": "x"}]})


def test_chat_message_text_joins_parts():
    msg = ChatMessage.model_validate({"role": "user", "content": [{"type": "text", "text": "a"},
                                                                  {"type": "text", "text": "b"}]})
    assert msg.text() == "ab"


def test_completion_prompt_list_of_one_becomes_str():
    req = CompletionRequest.model_validate({"model": "m", "prompt": ["Once upon"]})
    assert req.prompt == "Once upon"
    assert req.max_tokens == 16


@pytest.mark.parametrize("prompt", [["a", "b"], [], "", [""]])
def test_completion_prompt_rejects(prompt):
    with pytest.raises(ValidationError) as err:
        CompletionRequest.model_validate({"model": "m", "prompt": prompt})
    assert "prompt" in error_locs(err)


def test_blank_model_rejected():
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "  ", "prompt": "x"})


@pytest.mark.parametrize("body", [{**CHAT, "messages": [{"role": "user", "content": "hi \ud800"}]},
                                  {**CHAT, "stop": ["\udfff"]}])
def test_unpaired_surrogates_are_a_400_not_a_500_later(body):
    with pytest.raises(ValidationError, match="valid Unicode"):
        ChatCompletionRequest.model_validate(body)


def test_copy_text_must_be_valid_unicode():
    with pytest.raises(ValidationError, match=r"product: text must be valid Unicode"):
        CopyRequest.model_validate({"industry": "ecommerce", "product": "mug \udc80"})
    assert CopyRequest.model_validate({"industry": "电商", "product": "保温杯 ☕"}).product == "保温杯 ☕"
