"""OpenAI wire format: requests to GenerationRequests, Completions and deltas to OpenAI JSON."""

from __future__ import annotations

import pytest

from deployments.generation import Completion, Delta, TokenLogprob
from serve_app.openai_format import OpenAIFormatter, chat_generation, completion_generation
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest


def completion(**changes) -> Completion:
    fields = {"model": "qwen-small", "texts": ["Hello there", "Hi"], "finish_reasons": ["stop", "length"],
              "prompt_tokens": 12, "completion_tokens": 7}
    return Completion(**{**fields, **changes})


def test_chat_response_shape():
    body = OpenAIFormatter("chat", "r1").response(completion())
    assert body["id"] == "chatcmpl-r1" and body["object"] == "chat.completion"
    assert body["model"] == "qwen-small" and isinstance(body["created"], int)
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "logprobs": None,
         "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Hi"}, "logprobs": None, "finish_reason": "length"},
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def test_text_response_shape():
    body = OpenAIFormatter("text", "r2").response(completion(texts=["abc"], finish_reasons=["length"]))
    assert body["id"] == "cmpl-r2" and body["object"] == "text_completion"
    assert body["choices"] == [{"index": 0, "text": "abc", "logprobs": None, "finish_reason": "length"}]
    assert body["usage"]["total_tokens"] == 19


def test_chat_delta_sends_role_once_per_index():
    fmt = OpenAIFormatter("chat", "r3")
    first = fmt.delta_chunk("m", [Delta(0, "He"), Delta(1, "Hi")])
    second = fmt.delta_chunk("m", [Delta(0, "llo"), Delta(1, "!")])
    assert first["object"] == "chat.completion.chunk" and first["model"] == "m"
    assert [c["delta"] for c in first["choices"]] == [{"content": "He", "role": "assistant"},
                                                      {"content": "Hi", "role": "assistant"}]
    assert [c["delta"] for c in second["choices"]] == [{"content": "llo"}, {"content": "!"}]
    assert all(c["finish_reason"] is None for c in first["choices"] + second["choices"])


def test_role_sent_for_index_first_seen_later():
    fmt = OpenAIFormatter("chat", "r4")
    fmt.delta_chunk("m", [Delta(0, "a")])
    later = fmt.delta_chunk("m", [Delta(0, "b"), Delta(1, "c")])
    assert [c["delta"].get("role") for c in later["choices"]] == [None, "assistant"]


def test_text_delta_chunk():
    chunk = OpenAIFormatter("text", "r5").delta_chunk("m", [Delta(0, "abc", finish_reason="length")])
    assert chunk["object"] == "text_completion"
    assert chunk["choices"] == [{"index": 0, "text": "abc", "logprobs": None, "finish_reason": None}]


def test_closing_chunks_carry_finish_reason():
    fmt = OpenAIFormatter("chat", "r6")
    fmt.delta_chunk("m", [Delta(0, "x"), Delta(1, "y")])
    chunks = fmt.closing_chunks(completion())
    assert len(chunks) == 1
    assert [(c["index"], c["delta"], c["finish_reason"]) for c in chunks[0]["choices"]] == [
        (0, {"content": ""}, "stop"), (1, {"content": ""}, "length")]
    assert "usage" not in chunks[0]


@pytest.mark.parametrize("kind", ["chat", "text"])
def test_closing_chunks_with_usage(kind):
    chunks = OpenAIFormatter(kind, "r7", include_usage=True).closing_chunks(completion())
    assert len(chunks) == 2
    assert [c["finish_reason"] for c in chunks[0]["choices"]] == ["stop", "length"]
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert last["id"] == chunks[0]["id"] == ("chatcmpl-r7" if kind == "chat" else "cmpl-r7")


def test_chat_generation_maps_roles_and_parts():
    req = ChatCompletionRequest.model_validate({
        "model": "m", "n": 2, "temperature": 0.2, "max_completion_tokens": 30, "stop": "END", "seed": 3,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]},
            {"role": "assistant", "content": "Hi"},
        ],
    })
    gen = chat_generation(req, "rid", 256)
    assert gen.request_id.startswith("rid-1-") and gen.prompt is None
    assert chat_generation(req, "rid", 256).request_id != gen.request_id  # a client's id never reaches the engine as is
    assert gen.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, world"},
                            {"role": "assistant", "content": "Hi"})
    s = gen.sampling
    assert (s.n, s.temperature, s.max_tokens, s.stop, s.seed) == (2, 0.2, 30, ("END",), 3)


def test_completion_generation():
    req = CompletionRequest.model_validate({"model": "m", "prompt": ["Once"], "top_p": 0.5, "presence_penalty": 1})
    gen = completion_generation(req, "rid2", 256)
    assert gen.prompt == "Once" and gen.messages is None
    assert (gen.sampling.top_p, gen.sampling.presence_penalty, gen.sampling.max_tokens) == (0.5, 1.0, 16)


LP = [TokenLogprob("Hel", -0.5, (("Hel", -0.5), ("Hi", -1.5))), TokenLogprob("lo", -0.25, (("lo", -0.25),))]


def test_chat_logprobs_are_content_entries_with_bytes():
    body = OpenAIFormatter("chat", "r1", logprobs=True).response(
        completion(texts=["Hello"], finish_reasons=["stop"], logprobs=[LP]))
    (entry, second) = body["choices"][0]["logprobs"]["content"]
    assert entry == {"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108],
                     "top_logprobs": [{"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108]},
                                      {"token": "Hi", "logprob": -1.5, "bytes": [72, 105]}]}
    assert second["token"] == "lo"
    assert OpenAIFormatter("chat", "r1").response(completion())["choices"][0]["logprobs"] is None  # not asked


def test_completion_logprobs_are_parallel_lists_with_offsets_across_chunks():
    fmt = OpenAIFormatter("text", "r1", logprobs=True)
    first = fmt.delta_chunk("m", [Delta(0, "Hel", None, LP[:1])])["choices"][0]["logprobs"]
    second = fmt.delta_chunk("m", [Delta(0, "lo", None, LP[1:])])["choices"][0]["logprobs"]
    assert first == {"tokens": ["Hel"], "token_logprobs": [-0.5], "top_logprobs": [{"Hel": -0.5, "Hi": -1.5}],
                     "text_offset": [0]}
    assert second["text_offset"] == [3]  # offsets count from the start of the whole text
