"""Polish rules: structure (trim, quotes, repeats), punctuation and case, compliance, and clean text untouched."""

from __future__ import annotations

import pytest

from deployments.text.polish_rules import (
    RULES_FILE,
    ComplianceRule,
    Edit,
    apply_compliance,
    capitalize_sentences,
    collapse_repeats,
    load_compliance,
    normalize_punctuation,
    polish_text,
    strip_wrapping_quotes,
    trim_incomplete,
)


@pytest.fixture(scope="module")
def compliance() -> dict[str, list[ComplianceRule]]:
    return load_compliance()


def rules_for(compliance: dict, industry: str) -> list[ComplianceRule]:
    """What Polish applies for an industry: the `all` section, then the industry's own rules."""
    return compliance["all"] + compliance.get(industry, [])


def assert_located(text: str, edits: list[Edit], out: str | None = None) -> None:
    """Edits are in-order patches: each `before` is at its `start` in the text as it stood then, and
    replaying them all on the input gives the output."""
    for e in edits:
        assert text[e.start:e.start + len(e.before)] == e.before, e
        if not e.flagged:
            text = text[:e.start] + e.after + text[e.start + len(e.before):]
    if out is not None:
        assert text == out


# --- trim_incomplete ---------------------------------------------------------------------------

def test_trim_en_cuts_back_to_last_complete_sentence_on_length():
    text = "Great shoes. Comfortable all day! And the"
    out, edits = trim_incomplete(text, "length")
    assert out == "Great shoes. Comfortable all day!"
    assert edits == [Edit("trim_incomplete", " And the", "", 33)]
    assert_located(text, edits)


def test_trim_zh_cuts_back_to_last_complete_sentence_on_length():
    text = "这双鞋轻盈透气。舒适一整天！而且价格"
    out, edits = trim_incomplete(text, "length")
    assert out == "这双鞋轻盈透气。舒适一整天！"
    assert [(e.rule, e.before, e.after, e.start) for e in edits] == [("trim_incomplete", "而且价格", "", 14)]


@pytest.mark.parametrize("finish_reason", ["stop", None])
@pytest.mark.parametrize("text", ["Great shoes. Comfortable all day! And the", "这双鞋轻盈透气。舒适一整天！而且价格"])
def test_trim_only_when_generation_hit_the_length_limit(text, finish_reason):
    assert trim_incomplete(text, finish_reason) == (text, [])


@pytest.mark.parametrize("text", ["Lightweight shoes for every day and", "轻盈透气的运动鞋，适合", "Only $3.50 for"])
def test_trim_keeps_text_without_any_complete_sentence(text):
    assert trim_incomplete(text, "length") == (text, [])


def test_trim_keeps_text_that_already_ends_a_sentence():
    assert trim_incomplete("Great shoes. Comfortable all day!", "length") == ("Great shoes. Comfortable all day!", [])
    assert trim_incomplete("舒适一整天！", "length") == ("舒适一整天！", [])


def test_trim_keeps_the_closing_quote_of_the_last_sentence():
    out, edits = trim_incomplete('He said "Great shoes." And the', "length")
    assert out == 'He said "Great shoes."'
    assert edits[0].before == " And the" and edits[0].start == 22


# --- strip_wrapping_quotes ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected", "before"),
    [
        ('"Great shoes for every day."', "Great shoes for every day.", '"…"'),
        ("“Great shoes for every day.”", "Great shoes for every day.", "“…”"),
        ('"Great shoes for every day.', "Great shoes for every day.", '"…'),  # closing quote lost
        ("「轻盈透气的运动鞋。」", "轻盈透气的运动鞋。", "「…」"),
        ("“轻盈透气的运动鞋。”", "轻盈透气的运动鞋。", "“…”"),
        ("“轻盈透气的运动鞋。", "轻盈透气的运动鞋。", "“…"),
        ('  "Great shoes."  ', "Great shoes.", '"…"'),
    ],
)
def test_wrapping_quotes_removed(text, expected, before):
    out, edits = strip_wrapping_quotes(text)
    assert out == expected
    assert all(e.rule == "strip_wrapping_quotes" and e.after == "" for e in edits)
    assert "".join(e.before.strip() for e in edits) == before.replace("…", "")
    assert_located(text, edits, out)


@pytest.mark.parametrize(
    "text",
    ['He said "hi" to me.', '"Light" is our motto.', "“轻”是我们的理念。", "No quotes at all.", "它叫“飞鞋”"],
)
def test_quotes_that_do_not_wrap_the_text_stay(text):
    assert strip_wrapping_quotes(text) == (text, [])


# --- collapse_repeats --------------------------------------------------------------------------

def test_en_phrase_loop_collapsed():
    out, edits = collapse_repeats("SUNYAL, SUNYAL, SUNYAL", "en")
    assert out == "SUNYAL"
    assert edits == [Edit("collapse_repeats", "SUNYAL, SUNYAL, SUNYAL", "SUNYAL", 0)]


def test_en_multiword_loop_and_doubled_word_collapsed():
    text = "Meet the new shoes. Run faster run faster run faster every day. It is very very light."
    out, edits = collapse_repeats(text, "en")
    assert out == "Meet the new shoes. Run faster every day. It is very light."
    assert [(e.before, e.after) for e in edits] == [("Run faster run faster run faster", "Run faster"),
                                                    ("very very", "very")]
    assert_located(text, edits, out)


def test_zh_phrase_loop_collapsed():
    assert collapse_repeats("好用好用好用", "zh") == ("好用", [Edit("collapse_repeats", "好用好用好用", "好用", 0)])
    out, edits = collapse_repeats("这款鞋子真的好穿，好穿，好穿。", "zh")
    assert out == "这款鞋子真的好穿。"
    assert_located("这款鞋子真的好穿，好穿，好穿。", edits)


def test_en_repeated_sentence_later_dropped():
    text = "Buy SUNYAL today. It is light and warm. Buy SUNYAL today."
    out, edits = collapse_repeats(text, "en")
    assert out == "Buy SUNYAL today. It is light and warm."
    assert edits[0] == Edit("collapse_repeats", "Buy SUNYAL today.", "", 40)
    assert_located(text, edits, out)


def test_zh_repeated_sentence_later_dropped():
    text = "这双鞋很轻。穿着很舒服。这双鞋很轻。适合跑步。"
    out, edits = collapse_repeats(text, "zh")
    assert out == "这双鞋很轻。穿着很舒服。适合跑步。"
    assert edits == [Edit("collapse_repeats", "这双鞋很轻。", "", 12)]


def test_repeated_sentence_matched_regardless_of_case_and_end_punctuation():
    out, _ = collapse_repeats("Order now! Free shipping on all sizes. order now.", "en")
    assert out == "Order now! Free shipping on all sizes."


@pytest.mark.parametrize(
    ("text", "language"),
    [("Walk step by step, day after day, mile after mile.", "en"),
     ("Light, warm and waterproof. Warm enough for winter.", "en"),
     ("轻盈、透气、耐磨。穿上它，走得更远。", "zh")],
)
def test_no_false_repeats(text, language):
    assert collapse_repeats(text, language) == (text, [])


def test_en_repeat_keeps_a_number_followed_by_its_decimal_variant():
    text = "Available in sizes 8, 8.5, 9 and 9.5."
    assert collapse_repeats(text, "en") == (text, [])


# --- normalize_punctuation ---------------------------------------------------------------------

def test_zh_half_width_punctuation_next_to_chinese_becomes_full_width():
    text = "这款鞋子很轻,穿着舒服.颜色:黑;白!喜欢吗?"
    out, edits = normalize_punctuation(text, "zh")
    assert out == "这款鞋子很轻，穿着舒服。颜色：黑；白！喜欢吗？"
    assert [(e.rule, e.before, e.after) for e in edits] == [
        ("punctuation", ",", "，"), ("punctuation", ".", "。"), ("punctuation", ":", "："),
        ("punctuation", ";", "；"), ("punctuation", "!", "！"), ("punctuation", "?", "？")]
    assert edits[0].start == 6
    assert_located(text, edits)


def test_zh_half_width_punctuation_before_chinese_after_latin():
    out, _ = normalize_punctuation("全新SUNYAL,轻盈透气", "zh")
    assert out == "全新SUNYAL，轻盈透气"


def test_zh_space_before_half_width_punctuation_goes_with_it():
    text = "很好 !真的很轻 , 穿着舒服 ."
    out, edits = normalize_punctuation(text, "zh")
    assert out == "很好！真的很轻，穿着舒服。"
    assert [(e.before, e.after) for e in edits][:3] == [(" !", "！"), (" ,", "，"), (" .", "。")]
    assert_located(text, edits, out)


@pytest.mark.parametrize("text", ["请稍候...", "请稍候 ...", "敬请期待...新品上市"])
def test_zh_ellipsis_dots_are_not_full_stops(text):
    out, _ = normalize_punctuation(text, "zh")
    assert "。" not in out and "..." in out


def test_zh_spaces_between_chinese_removed():
    text = "这款 鞋子 很轻 ， 穿着 舒服。"
    out, edits = normalize_punctuation(text, "zh")
    assert out == "这款鞋子很轻，穿着舒服。"
    assert all(e.before.strip() == "" and e.after == "" for e in edits) and len(edits) == 5
    assert_located(text, edits, out)


@pytest.mark.parametrize("text", ["每双仅需3.5元，限时优惠。", "评分4.8分，好评如潮。", "SUNYAL 跑鞋 3.5 折"])
def test_zh_decimals_untouched(text):
    assert normalize_punctuation(text, "zh") == (text, [])


def test_en_full_width_punctuation_becomes_ascii():
    text = "Great shoes，light and warm。Buy now！Why wait？Colors：black；white（new）"
    out, edits = normalize_punctuation(text, "en")
    assert out == "Great shoes, light and warm. Buy now! Why wait? Colors: black; white(new)"
    assert not any("\uff00" <= c <= "\uffef" or c in "。" for c in out)
    assert edits[0] == Edit("punctuation", "，", ", ", 11)


def test_en_no_space_before_punctuation():
    text = "Great shoes , light and warm . Ready ? Go !"
    out, edits = normalize_punctuation(text, "en")
    assert out == "Great shoes, light and warm. Ready? Go!"
    assert [(e.before, e.after) for e in edits] == [(" ,", ","), (" .", "."), (" ?", "?"), (" !", "!")]
    assert edits[0].start == 11 and edits[-1].start == 38  # in-order: earlier fixes shifted it by 3
    assert_located(text, edits, out)


def test_en_space_after_punctuation_glued_to_a_letter():
    text = "Light,warm!Buy?Now;today.Free shipping."
    out, edits = normalize_punctuation(text, "en")
    assert out == "Light, warm! Buy? Now; today. Free shipping."
    assert [(e.before, e.after, e.start) for e in edits] == [(",", ", ", 5), ("!", "! ", 11), ("?", "? ", 16),
                                                             (";", "; ", 21), (".", ". ", 28)]
    assert_located(text, edits, out)


@pytest.mark.parametrize("text", ["Save 3.5% today.", "Prices from $1,299.99, shipped in 2 days.",
                                  "Visit us at 9:30 am."])
def test_en_numbers_untouched(text):
    assert normalize_punctuation(text, "en") == (text, [])


def test_multiple_spaces_collapsed():
    assert normalize_punctuation("Light   and warm.", "en")[0] == "Light and warm."


def test_normalize_punctuation_edits_replay():
    text = "Great shoes ,light and warm"
    out, edits = normalize_punctuation(text, "en")
    assert out == "Great shoes, light and warm"
    assert_located(text, edits, out)


# --- capitalize_sentences ----------------------------------------------------------------------

def test_en_sentence_initial_capitals():
    text = "great shoes. light and warm! buy now? yes.\nnew colors too."
    out, edits = capitalize_sentences(text, "en")
    assert out == "Great shoes. Light and warm! Buy now? Yes.\nNew colors too."
    assert edits[0] == Edit("capitalize", "g", "G", 0)
    assert [(e.before, e.after, e.start) for e in edits[1:3]] == [(". l", ". L", 11), ("! b", "! B", 27)]
    assert_located(text, edits)


def test_capitalize_leaves_decimals_and_mid_sentence_words():
    text = "Save 3.5% on the new SUNYAL shoes. they are light."
    assert capitalize_sentences(text, "en")[0] == "Save 3.5% on the new SUNYAL shoes. They are light."


def test_capitalize_does_nothing_for_chinese():
    assert capitalize_sentences("good shoes. 很好。", "zh") == ("good shoes. 很好。", [])


# --- compliance --------------------------------------------------------------------------------

def test_ecommerce_absolute_terms_replaced(compliance):
    text = "这是最好的跑鞋，品质最佳，排名第一，国家级工艺，顶级面料。"
    out, edits = apply_compliance(text, rules_for(compliance, "ecommerce"))
    assert out == "这是出色的跑鞋，品质出色，领先，高标准工艺，高品质面料。"
    by_before = {e.before: e for e in edits}
    assert set(by_before) == {"最好", "最佳", "排名第一", "国家级", "顶级"}
    assert by_before["国家级"].after == "高标准" and "国家级" in by_before["国家级"].why  # from the `all` section
    assert by_before["顶级"].after == "高品质"
    assert by_before["排名第一"].after == "领先"  # the longer term wins over 第一
    assert by_before["最好"].start == 2 and by_before["最好"].rule == "compliance"
    assert all(not e.flagged and e.why for e in edits)


def test_ecommerce_first_replaced(compliance):
    out, edits = apply_compliance("全网第一的跑鞋", rules_for(compliance, "ecommerce"))
    assert out == "全网领先的跑鞋"
    assert (edits[0].before, edits[0].after, edits[0].start) == ("第一", "领先", 2)


def test_ecommerce_unique_is_flagged_not_replaced(compliance):
    text = "独一无二的设计，限量发售。"
    out, edits = apply_compliance(text, rules_for(compliance, "ecommerce"))
    assert out == text
    assert len(edits) == 1
    e = edits[0]
    assert (e.rule, e.before, e.after, e.start, e.flagged) == ("compliance", "独一无二", "独一无二", 0, True)
    assert e.why and "证明" in e.why


def test_ecommerce_en_superlative_flagged(compliance):
    text = "The number one shoe for runners."
    out, edits = apply_compliance(text, rules_for(compliance, "ecommerce"))
    assert out == text and [(e.before, e.flagged) for e in edits] == [("number one", True)]


def test_finance_zh_longest_term_first(compliance):
    text = "保本保息，稳赚，零风险。另有保本产品。"
    out, edits = apply_compliance(text, rules_for(compliance, "finance"))
    assert out == "稳健，收益有波动，风险较低。另有稳健产品。"
    assert [e.before for e in edits] == ["保本保息", "保本", "稳赚", "零风险"]
    assert edits[0].start == 0 and edits[0].after == "稳健"  # 保本保息 as one term, not 保本 + 保息
    assert "保息" not in out


def test_finance_en_replacements_keep_a_sentence_initial_capital(compliance):
    text = "Risk-free investing with guaranteed returns. It is risk-free."
    out, edits = apply_compliance(text, rules_for(compliance, "finance"))
    assert out == "Lower-risk investing with potential returns. It is lower-risk."
    assert {(e.before, e.after) for e in edits} == {("Risk-free", "Lower-risk"), ("risk-free", "lower-risk"),
                                                    ("guaranteed returns", "potential returns")}


@pytest.mark.parametrize("text", ["Take the riskfreeway home.", "A risk-freeway sign.", "No risky bets.",
                                  "Guaranteed returnsfund"])
def test_finance_en_terms_match_on_word_boundaries(compliance, text):
    assert apply_compliance(text, rules_for(compliance, "finance")) == (text, [])


def test_finance_flag_high_returns(compliance):
    out, edits = apply_compliance("高收益理财", rules_for(compliance, "finance"))
    assert out == "高收益理财" and edits[0].flagged and edits[0].why


def test_education_guaranteed_pass(compliance):
    out, edits = apply_compliance("A guaranteed pass, 保过!", rules_for(compliance, "education"))
    assert out == "A structured preparation, 助力备考!"
    assert {e.before for e in edits} == {"guaranteed pass", "保过"}


def test_rules_of_another_industry_do_not_apply(compliance):
    text = "保本保息，稳赚，零风险, guaranteed returns, risk-free, guaranteed pass"
    assert apply_compliance(text, rules_for(compliance, "ecommerce")) == (text, [])
    assert apply_compliance("排名第一，独一无二", rules_for(compliance, "finance")) == ("排名第一，独一无二", [])


def test_all_section_applies_to_every_industry(compliance):
    for industry in ("ecommerce", "finance", "education", "unknown"):
        assert apply_compliance("世界级品质", rules_for(compliance, industry))[0] == "高标准品质"


def test_default_rules_file_loads():
    rules = load_compliance(RULES_FILE)
    assert {"all", "ecommerce", "finance", "education"} <= set(rules)
    assert all(isinstance(r, ComplianceRule) for rs in rules.values() for r in rs)


def test_replace_rule_without_replacement_names_the_file(tmp_path):
    path = tmp_path / "bad-rules.yaml"
    path.write_text("finance:\n  - {terms: [稳赚], action: replace, why: test}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad-rules.yaml") as err:
        load_compliance(path)
    assert "replacement" in str(err.value)


def test_custom_rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("all:\n  - {terms: [cheap], action: replace, replacement: affordable, why: brand}\n")
    rules = load_compliance(path)
    assert apply_compliance("Cheap and cheerful.", rules["all"])[0] == "Affordable and cheerful."


def test_first_time_shipping_is_not_an_absolute_claim(compliance):
    text = "下单后第一时间发货。"
    assert apply_compliance(text, rules_for(compliance, "ecommerce")) == (text, [])


def test_compliance_edits_replay(compliance):
    text = "顶级面料，最好的选择，顶级做工"
    out, edits = apply_compliance(text, rules_for(compliance, "ecommerce"))
    assert out == "高品质面料，出色的选择，高品质做工"
    assert_located(text, edits, out)


def test_collapse_repeats_edits_replay():
    text = "It is very very soft. It is very very soft."
    out, edits = collapse_repeats(text, "en")
    assert out == "It is very soft."
    assert_located(text, edits, out)


# --- polish_text -------------------------------------------------------------------------------

CLEAN = [
    ("Our new running shoes are light, breathable and built to last. Wear them on the trail, in the city, or at "
     "the gym. Order today and feel the difference!", "en"),
    ("这款运动鞋轻盈透气，穿着舒适。鞋底采用耐磨橡胶，适合日常通勤和跑步。现在下单，立享八折优惠！", "zh"),
    ("Save 3.5% today.", "en"),
    ("Meet the SUNYAL AirFlex, a jacket the NorthPeak team designed for rain. It packs into its own pocket.", "en"),
    ("限时优惠，每双仅需99.9元。", "zh"),
]


@pytest.mark.parametrize(("text", "language"), CLEAN)
@pytest.mark.parametrize("finish_reason", ["stop", "length"])
@pytest.mark.parametrize("industry", ["ecommerce", "finance", "education"])
def test_clean_text_comes_through_unchanged(compliance, text, language, finish_reason, industry):
    assert polish_text(text, language, finish_reason, rules_for(compliance, industry)) == (text, [])


def test_polish_text_en_runs_all_rules_in_order(compliance):
    text = '"great shoes , light and warm.Great for runners, runners, runners. great shoes , light and warm. And'
    out, edits = polish_text(text, "en", "length", rules_for(compliance, "finance"))
    assert out == "Great shoes, light and warm. Great for runners."
    rules = [e.rule for e in edits]
    assert rules[:2] == ["trim_incomplete", "strip_wrapping_quotes"]
    assert {"punctuation", "collapse_repeats", "capitalize"} <= set(rules)
    assert rules.index("punctuation") < rules.index("collapse_repeats") < rules.index("capitalize")


def test_polish_text_zh_with_compliance(compliance):
    text = "“这款 跑鞋是全网最好的,销量第一.穿着舒服!穿着舒服!而且"
    out, edits = polish_text(text, "zh", "length", rules_for(compliance, "ecommerce"))
    assert out == "这款跑鞋是全网出色的，领先。穿着舒服！"
    assert edits[-1].rule == "compliance" and {e.rule for e in edits} >= {
        "trim_incomplete", "strip_wrapping_quotes", "punctuation", "collapse_repeats", "compliance"}


@pytest.mark.parametrize("text, language, finish_reason, industry", [
    ('"your bottle is great. it keeps drinks cold , and it is leak-proof!it is the best in the world. it keeps '
     "drinks cold , and it is leak-proof! Plus, it's a great way to keep your", "en", "length", "ecommerce"),
    ("Guaranteed returns , risk-free!Guaranteed returns , risk-free! invest now", "en", "length", "finance"),
    ("“这款咖啡机非常好用,小巧便携!全网最低价,销量第一。 好用好用好用。第一时间发货", "zh", "length", "ecommerce"),
    ("本产品保本保息,零风险 ,稳赚!本产品保本保息,零风险 ,稳赚!", "zh", "stop", "finance"),
])
def test_polish_text_edits_replay_raw_into_polished(compliance, text, language, finish_reason, industry):
    out, edits = polish_text(text, language, finish_reason, rules_for(compliance, industry))
    assert edits and out != text
    assert_located(text, edits, out)
