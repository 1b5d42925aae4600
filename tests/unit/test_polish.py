"""Polish deployment class without Serve: rules mode on a Draft, llm mode with a fake rewriter handle."""

from __future__ import annotations

import yaml

from contracts.config import PolishConfig
from deployments.generation import Completion, GenerationRequest
from deployments.polish import PROMPT_FILE, Polish
from deployments.text.draft import Draft
from tests.fakes import FakeMethod

EDIT_KEYS = {"rule", "before", "after", "start", "flagged", "why"}
PROMPTS = yaml.safe_load(PROMPT_FILE.read_text(encoding="utf-8"))




class FakeRewriter:
    def __init__(self, text: str, finish_reason: str = "stop"):
        self.generate = FakeMethod(lambda request: Completion(
            model="writer", texts=[text], finish_reasons=[finish_reason], prompt_tokens=20, completion_tokens=12))

    @property
    def requests(self) -> list[GenerationRequest]:
        return [args[0] for args in self.generate.calls]


def llm_polish(rewriter: FakeRewriter, **config) -> Polish:
    return Polish(PolishConfig(mode="llm", llm_model="writer", **config), models={"writer": rewriter})


# --- rules mode --------------------------------------------------------------------------------

async def test_rules_mode_polishes_en_draft():
    raw = "great shoes , light and warm. Risk-free returns. And"
    draft = Draft(raw, "en", industry="finance", finish_reason="length")
    out = await Polish(PolishConfig()).process(draft)
    assert out is draft
    assert out.text == "Great shoes, light and warm. Lower-risk returns."
    assert out.raw_text == raw
    assert out.edits and all(set(e) == EDIT_KEYS for e in out.edits)
    assert [e["rule"] for e in out.edits] == ["trim_incomplete", "punctuation", "capitalize", "compliance"]
    assert out.edits[0] == {"rule": "trim_incomplete", "before": " And", "after": "", "start": len(raw) - 4,
                            "flagged": False, "why": None}
    assert out.edits[-1]["why"] and out.edits[-1]["before"] == "Risk-free"


async def test_rules_mode_polishes_zh_draft_with_industry_rules():
    raw = "「这款跑鞋是全网最好的,独一无二。」"
    out = await Polish(PolishConfig()).process(Draft(raw, "zh", industry="ecommerce", finish_reason="stop"))
    assert out.text == "这款跑鞋是全网出色的，独一无二。"
    assert out.raw_text == raw
    flagged = [e for e in out.edits if e["flagged"]]
    assert [(e["before"], e["after"]) for e in flagged] == [("独一无二", "独一无二")] and flagged[0]["why"]


async def test_rules_mode_clean_text_has_no_edits():
    text = "Light, warm and ready for the trail. Order today!"
    out = await Polish(PolishConfig()).process(Draft(text, "en", industry="ecommerce", finish_reason="stop"))
    assert (out.text, out.edits, out.raw_text) == (text, [], text)


async def test_rules_mode_without_industry_applies_only_the_all_section():
    out = await Polish(PolishConfig()).process(Draft("顶级面料，最好的选择。", "zh"))
    assert out.text == "高品质面料，最好的选择。"


async def test_rules_file_from_config(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("retail:\n  - {terms: [cheap], action: replace, replacement: affordable, why: brand voice}\n")
    polish = Polish(PolishConfig(rules_file=str(path)))
    out = await polish.process(Draft("Cheap shoes for cheap feet.", "en", industry="retail"))
    assert out.text == "Affordable shoes for affordable feet."
    assert {e["why"] for e in out.edits} == {"brand voice"}


def test_rules_mode_has_no_rewriter():
    assert Polish(PolishConfig(), models={"writer": FakeRewriter("x")}).rewriter is None


# --- llm mode ----------------------------------------------------------------------------------

async def test_llm_mode_rewrite_is_the_first_edit_then_rules_run():
    raw = "This shoe shoe is light light."
    rewriter = FakeRewriter("  great shoes , light and warm. guaranteed returns.  ")
    out = await llm_polish(rewriter).process(Draft(raw, "en", industry="finance", finish_reason="stop"))
    assert out.text == "Great shoes, light and warm. Potential returns."
    assert out.raw_text == raw
    first = out.edits[0]
    assert first == {"rule": "llm_rewrite", "before": raw, "after": "great shoes , light and warm. guaranteed returns.",
                     "start": 0, "flagged": False, "why": None}
    assert [e["rule"] for e in out.edits[1:]] == ["punctuation", "capitalize", "capitalize", "compliance"]
    assert all(set(e) == EDIT_KEYS for e in out.edits)


async def test_llm_mode_request_uses_temperature_zero_and_the_en_prompt():
    rewriter = FakeRewriter("Light and warm.")
    await llm_polish(rewriter, llm_max_tokens=99).process(Draft("light and warm", "en"))
    [request] = rewriter.requests
    assert isinstance(request, GenerationRequest)
    assert request.sampling.temperature == 0 and request.sampling.max_tokens == 99
    assert request.prompt is None and request.request_id.startswith("polish-")
    system, user = request.messages
    assert system == {"role": "system", "content": PROMPTS["en"]["system"]}
    assert user["role"] == "user" and user["content"].startswith("Edit this marketing copy.")
    assert user["content"].endswith("\n\nlight and warm")


async def test_llm_mode_zh_draft_gets_the_zh_prompt():
    rewriter = FakeRewriter("这款跑鞋轻盈透气,全网最好。")
    out = await llm_polish(rewriter).process(Draft("这款跑鞋 轻盈 透气", "zh", industry="ecommerce"))
    [request] = rewriter.requests
    system, user = request.messages
    assert system["content"] == PROMPTS["zh"]["system"] and "编辑" in system["content"]
    assert user["content"].startswith("请润色下面的营销文案") and user["content"].endswith("这款跑鞋 轻盈 透气")
    assert request.sampling.temperature == 0
    assert out.text == "这款跑鞋轻盈透气，全网出色。"
    assert out.edits[0]["rule"] == "llm_rewrite" and out.edits[0]["after"] == "这款跑鞋轻盈透气,全网最好。"
    assert out.raw_text == "这款跑鞋 轻盈 透气"


async def test_llm_mode_unchanged_or_empty_rewrite_records_no_rewrite_edit():
    for reply in ("Light and warm.", "   "):
        rewriter = FakeRewriter(reply)
        out = await llm_polish(rewriter).process(Draft("Light and warm.", "en"))
        assert (out.text, out.edits) == ("Light and warm.", [])
        assert len(rewriter.requests) == 1


async def test_llm_mode_prompt_does_not_render_template_syntax_in_the_copy():
    rewriter = FakeRewriter("ok.")
    await llm_polish(rewriter).process(Draft("{{ 7 * 7 }} shoes", "en"))
    assert rewriter.requests[0].messages[1]["content"].endswith("{{ 7 * 7 }} shoes")


async def test_llm_mode_rewrite_cut_by_its_budget_is_trimmed():
    rewriter = FakeRewriter("Great shoes. Light and warm. Order to", finish_reason="length")
    out = await llm_polish(rewriter).process(Draft("Great shoes. Light and warm. Order today.", "en",
                                                   finish_reason="stop"))
    assert out.text == "Great shoes. Light and warm."
