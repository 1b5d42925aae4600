"""Channels: each platform's unit counted by its own rule, schemas that hold the limits by construction,
fields trimmed to a boundary, the catalogue validated, and a channel's copy through the pipeline."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from contracts.errors import InvalidRequestError, NotFoundError
from deployments.text.channels import SHORTEST_SHRUNK_FIELD as SHORTEST
from deployments.text.channels import ChannelField, catalogue, fit_text, measure
from serve_app.channel_copy import with_channel
from serve_app.protocol import CopyResponse
from tests.unit.test_copy_pipeline import FakeModel, FakeSentiment, copy_request, make_pipeline, make_plan, run


@pytest.mark.parametrize("text, unit, expected", [
    ("Trail shoes", "characters", 11),
    ("双11 sale", "width", 9),                 # Google Ads: double-width characters count 2
    ("淘宝ABC", "gbk_bytes", 7),               # Taobao: a Chinese character is 2 bytes
    ("Hello 世界", "x_weighted", 10),          # twitter-text: CJK weighs 2
    ("café – now", "x_weighted", 10),         # Latin-1 and the en dash weigh 1
    ("a" * 160, "sms_segments", 1),           # GSM-7: 160 in one segment
    ("a" * 161, "sms_segments", 2),           # then 153 a segment
    ("€" * 80, "sms_segments", 1),            # the euro is an escape + 1: 160 septets
    ("€" * 81, "sms_segments", 2),
    ("短" * 70, "sms_segments", 1),            # UCS-2: 70 in one segment
    ("短" * 71, "sms_segments", 2),
    ("Sale! 🎉", "sms_segments", 1),           # an emoji makes it UCS-2 (7 of 70)
])
def test_units_count_as_the_platforms_do(text, unit, expected):
    assert measure(text, unit) == expected


def test_the_catalogue_has_every_anchor_channel_with_valid_schemas():
    channels = catalogue()
    assert {"google-rsa", "meta-ad", "amazon-product", "taobao-title", "xiaohongshu-note", "weibo-post", "x-post",
            "sms", "email"} <= set(channels)
    for channel in channels.values():
        for language in channel.languages:
            Draft202012Validator.check_schema(channel.json_schema(language))
            assert all(f.name in channel.instructions(language) for f in channel.fields)


@pytest.mark.parametrize("channel, field, language, max_chars", [
    ("google-rsa", "headlines", "en", 30), ("google-rsa", "headlines", "zh", 15),
    ("taobao-title", "title", "zh", 30), ("x-post", "text", "zh", 140), ("sms", "text", "en", 160),
    ("sms", "text", "zh", 70),
])
def test_a_schema_ceiling_never_breaks_the_limit_in_its_language(channel, field, language, max_chars):
    f = next(f for f in catalogue()[channel].fields if f.name == field)
    assert f.max_chars(language) == max_chars
    worst = ("宽" if language == "zh" else "W") * max_chars  # the widest text the schema lets through
    assert measure(worst, f.unit) <= f.limit


HEADLINE = ChannelField(name="headline", limit=30, unit="width", source="test")


@pytest.mark.parametrize("text, language, expected", [
    ("The Ultimate Guide to a Steel-", "en", "The Ultimate Guide"),      # cut at the ceiling: back to a word
    ("Cold for 24 hours. Hot for 12h", "en", "Cold for 24 hours."),        # back to the last sentence
    ("  Stays   cold  ", "en", "Stays cold"),                            # short: only whitespace tidied
    ("保温杯全天保冷，轻巧便携随身带走", "zh", "保温杯全天保冷"),                # 15 of 15: back to the clause
    ("全新升级保温杯", "zh", "全新升级保温杯"),                               # short: as written
])
def test_a_field_at_its_ceiling_ends_on_a_boundary(text, language, expected):
    assert fit_text(text, HEADLINE, language) == expected
    assert measure(fit_text(text, HEADLINE, language), "width") <= 30


@pytest.mark.parametrize("text, expected", [
    ("Keeps coffee hot and it's called the", "Keeps coffee hot and it's called"),   # closed on "the"
    ("Saving lives around the world... and it is the", "Saving lives around the world..."),  # to the clause
    ("Built to last,", "Built to last"),                                             # closed on a separator
    ("Payz. Select a bottle for", "Payz. Select a bottle"),
    ("free resource for,", "free resource"),                                         # both at once
    (" , ", ""),                                                                     # bare punctuation: empty
    ("The", ""),                                                                     # no word to end on
    ("Stay cool all day.", "Stay cool all day."),                                    # fine as written
])
def test_a_field_the_model_closed_on_a_dangling_word_ends_before_it(text, expected):
    assert fit_text(text, ChannelField(name="bullet", limit=255, source="test"), "en") == expected


def test_a_cut_at_the_ceiling_does_not_stop_on_a_comma_after_a_dangling_word():
    text = "read tips for home and garden. tips on how to grow leaves make you start gardening and,"
    fitted = fit_text(text, ChannelField(name="primary_text", limit=len(text), source="test"), "en")
    assert fitted == "read tips for home and garden. tips on how to grow leaves make you start gardening"


def test_english_with_a_wide_character_is_cut_to_its_unit():
    fitted = fit_text("Summer sale on every bottle 夏日 now", HEADLINE, "en")
    assert measure(fitted, "width") <= 30 and not fitted.endswith(" ")


def test_a_broken_catalogue_fails_naming_the_entry(tmp_path):
    bad = tmp_path / "channels.yaml"
    bad.write_text("- {id: ok-one, label: {en: x}, languages: [en], fields: [{name: t, limit: 0, source: s}]}\n")
    with pytest.raises(ValueError, match="limit"):
        catalogue.__wrapped__(bad)


def test_an_unknown_channel_or_language_is_a_4xx_naming_it():
    with pytest.raises(NotFoundError, match="no channel 'fax'.*google-rsa"):
        with_channel(make_plan(), "fax")
    with pytest.raises(InvalidRequestError, match="taobao-title takes copy in zh"):
        with_channel(make_plan(language="en"), "taobao-title")


def test_long_fields_shrink_until_a_whole_answer_fits_the_models_context():
    note = catalogue()["xiaohongshu-note"]
    fitted = note.within("zh", 1400)
    assert fitted.max_tokens("zh") <= 1400 < note.max_tokens("zh")
    limits = {f.name: f.limit for f in fitted.fields}
    assert limits["title"] == 20 and limits["hashtags"] == 15 and SHORTEST < limits["body"] < 1000  # the longest
    assert note.within("en", 4096) is note  # room enough: unchanged
    assert note.within("zh", 100).max_tokens("zh") > 100  # hopeless: left to the 400 naming max_tokens
    taobao = catalogue()["taobao-title"].within("zh", 60)  # a unit counting 2 per character keeps its share
    assert taobao.fields[0].limit == 2 * taobao.fields[0].max_chars("zh") < 60


def test_a_channel_plan_on_a_small_context_asks_for_what_fits():
    plan = with_channel(make_plan(language="zh"), "xiaohongshu-note", context_tokens=2048)
    assert plan.max_tokens <= 2048 - sum(len(m["content"]) for m in plan.messages)
    body = plan.channel.fields[1]
    assert body.name == "body" and body.limit < 1000  # the prompt names the shortened target
    assert f"body（每条不超过 {int(body.max_chars('zh') * 0.8)} 个字）" in plan.messages[-1]["content"]


async def test_channel_copy_answers_fields_within_their_limits():
    plan = with_channel(make_plan(), "google-rsa")
    assert "headlines (3 items, each at most 24 characters)" in plan.messages[-1]["content"]
    answer = {"headlines": ["Stay Cold All Day", "The Ultimate Guide to a Steel-", "Leak-Proof"],
              "descriptions": ["Keeps drinks cold for 24 hours.", "Built for every trail you love."]}
    model = FakeModel([json.dumps(answer)])
    pipeline, _ = make_pipeline(model, FakeSentiment(), plan)
    out = await run(pipeline, copy_request(channel="google-rsa"), plan)
    request = model.requests[0]
    assert json.loads(request.sampling.json_schema)["properties"]["headlines"]["items"]["maxLength"] == 30
    assert out["channel"] == "google-rsa"
    assert out["fields"]["headlines"] == ["Stay Cold All Day", "The Ultimate Guide", "Leak-Proof"]
    assert out["text"].splitlines()[0] == "Stay Cold All Day"
    CopyResponse.model_validate(out)


async def test_a_field_left_empty_is_written_again_even_without_a_quality_gate():
    plan = with_channel(make_plan(), "email")  # no sentiment floor, no retries on the route
    first, second = {"subject": ",", "preheader": "Cold for a day."}, {"subject": "The", "preheader": "Cold."}
    third = {"subject": "Summer sale", "preheader": "Go."}
    model = FakeModel([json.dumps(first), json.dumps(second), json.dumps(third)])
    pipeline, _ = make_pipeline(model, FakeSentiment(scores={"Cold": 0.9}, default=0.1), plan)
    out = await run(pipeline, copy_request(channel="email"), plan)
    assert len(model.requests) == 3 and out["attempts"] == 3
    # The complete attempt is answered, though the empty one scored higher.
    assert out["fields"] == {"subject": "Summer sale", "preheader": "Go."}


async def test_slots_every_attempt_left_empty_are_filled_from_the_others():
    plan = with_channel(make_plan(), "google-rsa")
    attempts = [{"headlines": ["Cold all day", ",", "Leak-proof"], "descriptions": ["Keeps cold.", "{{"]},
                {"headlines": ["Cold all day", "The", "Steel strong"], "descriptions": [".", "Built to last."]},
                {"headlines": ["Light", "Cold all day", "."], "descriptions": ["Hot for 12 hours.", ","]}]
    model = FakeModel([json.dumps(a) for a in attempts])
    pipeline, _ = make_pipeline(model, FakeSentiment(scores={"Keeps": 0.9}, default=0.2), plan)
    out = await run(pipeline, copy_request(channel="google-rsa"), plan)
    assert out["attempts"] == 3  # every one left a slot empty: the best is answered, its gaps filled in order
    assert out["fields"] == {"headlines": ["Cold all day", "Steel strong", "Leak-proof"],
                             "descriptions": ["Keeps cold.", "Built to last."]}
    assert out["text"] == "Cold all day\nSteel strong\nLeak-proof\nKeeps cold.\nBuilt to last."


async def test_an_unfinished_answer_is_a_400_naming_max_tokens():
    plan = with_channel(make_plan(), "sms")
    pipeline, _ = make_pipeline(FakeModel(['{"text": "Sale on now, every bottle'], "length"), FakeSentiment(), plan)
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await run(pipeline, copy_request(channel="sms"), plan)
