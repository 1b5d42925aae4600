"""vLLM's own hermes tool parser (Qwen's ``<tool_call>`` format) as the engine uses it, on fixed model
output with the tiny Qwen3 tokenizer: no engine, no weights loaded."""

from __future__ import annotations

import pytest

from contracts.config import ModelConfig, models_home
from deployments.generation import Delta, GenerationRequest, SamplingOptions, ToolCall

pytest.importorskip("vllm")
TINY_QWEN3 = models_home() / "tiny-qwen3"
if not (TINY_QWEN3 / "tokenizer.json").is_file():
    pytest.skip(f"{TINY_QWEN3} is missing: run `copyserve models prepare`", allow_module_level=True)

from vllm.tokenizers import get_tokenizer  # noqa: E402 - after the skips: imports vLLM

from deployments.engines.vllm_tools import ToolCallReader, check_tool_parser, parser_class  # noqa: E402

MODEL = ModelConfig(name="tiny-qwen3", family="qwen3", source=str(TINY_QWEN3), tool_parser="hermes")
PRICE = {"type": "function", "function": {"name": "get_price", "parameters": {
    "type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}}}
CALLED = 'Let me check. <tool_call>\n{"name": "get_price", "arguments": {"sku": "A1"}}\n</tool_call>'


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(str(TINY_QWEN3))


def reader(tokenizer, tools=(PRICE,)) -> ToolCallReader:
    sampling = SamplingOptions(temperature=0, top_p=1.0, max_tokens=16)
    request = GenerationRequest("r", sampling, messages=({"role": "user", "content": "Price of A1?"},),
                                tools=tools, auto_tools=True)
    return ToolCallReader(parser_class(MODEL, tokenizer), tokenizer, request, {"add_generation_prompt": True},
                          None, [1, 2, 3])


def decode(tokenizer, tools_reader: ToolCallReader, text: str) -> list[Delta]:
    """The text as an engine yields it, one token per step, through the reader."""
    ids = tokenizer.encode(text)
    return [tools_reader.read(Delta(0, tokenizer.decode([t]), "stop" if i == len(ids) - 1 else None), [t])
            for i, t in enumerate(ids)]


def test_a_tool_parser_vllm_does_not_know_fails_the_replica_naming_the_known_ones():
    check_tool_parser(MODEL)
    check_tool_parser(MODEL.model_copy(update={"tool_parser": None}))
    with pytest.raises(ValueError, match=r"tool_parser 'hermes2' is not one of vLLM's tool parsers: .*hermes"):
        check_tool_parser(MODEL.model_copy(update={"tool_parser": "hermes2"}))
    assert parser_class(MODEL.model_copy(update={"tool_parser": None}), None) is None


def test_hermes_reads_a_qwen_tool_call_streamed_and_whole(tokenizer):
    tools = reader(tokenizer)
    assert tools.sampling_overrides()["skip_special_tokens"] is False  # the parser needs its markers
    deltas = decode(tokenizer, tools, CALLED)
    assert "".join(d.text for d in deltas) == "Let me check. "
    pieces = [p for d in deltas for p in d.tool_calls]
    first = pieces[0]
    assert first.index == 0 and first.name == "get_price" and first.id
    assert "".join(p.arguments for p in pieces) == '{"sku": "A1"}'
    answer = deltas[-1].answer
    assert answer.content == "Let me check. "
    assert answer.calls == (ToolCall(0, first.id, "get_price", '{"sku": "A1"}'),)  # the streamed id is kept
    assert all(d.answer is None for d in deltas[:-1])


def test_hermes_leaves_plain_text_as_content(tokenizer):
    deltas = decode(tokenizer, reader(tokenizer), "The price is 9 EUR.")
    assert "".join(d.text for d in deltas) == "The price is 9 EUR."
    assert not any(d.tool_calls for d in deltas)
    assert deltas[-1].answer.content == "The price is 9 EUR." and deltas[-1].answer.calls == ()


def test_strict_functions_are_constrained_by_vllms_structural_tag(tokenizer):
    strict = {**PRICE, "function": {**PRICE["function"], "strict": True}}
    assert reader(tokenizer).sampling_overrides()["structured_outputs"] is None
    constrained = reader(tokenizer, (strict,)).sampling_overrides()["structured_outputs"]
    assert "<tool_call>" in constrained.structural_tag and "get_price" in constrained.structural_tag


@pytest.mark.parametrize("strict", [False, True])
def test_the_engine_builds_vllm_sampling_params_with_the_parsers_settings(tokenizer, monkeypatch, strict):
    """The engine's own SamplingParams call, as a request in "auto" mode reaches it (no engine started)."""
    from deployments.engines.vllm_engine import VLLMEngine

    monkeypatch.setattr(VLLMEngine, "max_model_len", property(lambda self: 2048))
    function = {**PRICE, "function": {**PRICE["function"], "strict": True}} if strict else PRICE
    tools = reader(tokenizer, (function,))
    request = GenerationRequest("r", SamplingOptions(temperature=0, top_p=1.0, max_tokens=16), tools=(function,),
                                messages=({"role": "user", "content": "Price of A1?"},), auto_tools=True)
    params = VLLMEngine(MODEL)._sampling_params(request, 10, tools)
    assert params.skip_special_tokens is False and params.max_tokens == 16
    assert (params.structured_outputs is not None) == strict
