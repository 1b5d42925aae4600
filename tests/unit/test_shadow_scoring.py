"""Shadowed pairs: the pairwise scoring rule, pair counts read from a version's hash, win rates, and the
evaluation report's ``win_rate`` against stable."""

from __future__ import annotations

import pytest

from deployments.releases.evaluation import SENTIMENT_MARGIN, judge, pair_field, pairs, report, wilson, win_rate


def scores(**values) -> dict[str, float]:
    """An answer as ``observe`` gives it: postprocessed, no channel, not cut."""
    base = {"error": 0.0, "compliance_flags": 0.0, "polish_edits": 1.0, "sentiment": 0.7, "cut_by_length": 0.0}
    return base | values


@pytest.mark.parametrize(("shadow", "served", "outcome"), [
    (scores(), scores(), "tie"),
    # 1. compliance flags decide before anything else
    (scores(compliance_flags=0, polish_edits=9, sentiment=0.1), scores(compliance_flags=1), "win"),
    (scores(compliance_flags=2), scores(compliance_flags=1, polish_edits=9, sentiment=0.1), "loss"),
    # 2. within limits (channel limits held, not cut at max_tokens) before edits and sentiment
    (scores(cut_by_length=1.0, polish_edits=0, sentiment=1.0), scores(), "loss"),
    (scores(within_channel_limits=1.0, polish_edits=5), scores(within_channel_limits=0.0), "win"),
    (scores(within_channel_limits=1.0, cut_by_length=1.0), scores(within_channel_limits=1.0), "loss"),
    # 3. fewer polish edits
    (scores(polish_edits=0, sentiment=0.2), scores(polish_edits=2), "win"),
    # 4. sentiment, beyond the scorer's noise
    (scores(sentiment=0.7 + SENTIMENT_MARGIN + 0.01), scores(), "win"),
    (scores(sentiment=0.7 - SENTIMENT_MARGIN - 0.01), scores(), "loss"),
    (scores(sentiment=0.7 + SENTIMENT_MARGIN / 2), scores(), "tie"),
])
def test_the_first_criterion_that_differs_decides(shadow, served, outcome):
    assert judge(shadow, served) == outcome


def test_a_criterion_one_side_lacks_is_skipped():
    raw = {"error": 0.0, "attempts": 1.0, "cut_by_length": 0.0}  # postprocess off: no flags, edits or sentiment
    assert judge(raw, raw) == "tie"
    assert judge(raw, scores(compliance_flags=3)) == "tie"  # nothing to weigh the flags against
    assert judge({"error": 0.0}, {"error": 0.0}) == "tie"  # no limits measured either
    # latency is no criterion: the shadow waits behind live traffic
    assert judge(scores(total_ms=9000.0), scores(total_ms=10.0)) == "tie"


def test_pairs_and_win_rates_from_a_hash():
    fields = {pair_field("mugs@v1", "win"): "30", pair_field("mugs@v1", "loss"): "10.0",
              pair_field("mugs@v1", "tie"): "5", pair_field("base", "win"): "1", "vs:odd": "4", "samples": "9",
              "sentiment:n": "9"}
    assert pairs(fields) == {"mugs@v1": {"win": 30, "loss": 10, "tie": 5}, "base": {"win": 1, "loss": 0, "tie": 0}}
    rate = win_rate(pairs(fields)["mugs@v1"])
    assert (rate["wins"], rate["losses"], rate["ties"], rate["rate"]) == (30, 10, 5, 0.75)
    assert rate["ci95"] == pytest.approx(wilson(30, 40), abs=1e-6)
    assert rate["ci95"] == pytest.approx([0.59806, 0.858129], abs=1e-6)
    assert win_rate({"win": 0, "loss": 0, "tie": 4}) == {"wins": 0, "losses": 0, "ties": 4, "rate": None,
                                                         "ci95": None}  # ties alone decide nothing


def test_the_report_gives_the_canary_a_win_rate_against_stable_only():
    sums = {1: {"samples": "40"},
            2: {"samples": "12", "shadow_samples": "12", pair_field("mugs@v1", "win"): "8",
                pair_field("mugs@v1", "loss"): "2", pair_field("mugs@v1", "tie"): "2"},
            3: {pair_field("base", "win"): "3"}}
    got = report("mugs", {"stable": 1, "canary": 2, "next": 3}, {1: "a", 2: "b", 3: "c"}, sums)
    two = got["versions"][1]
    assert two["shadow_samples"] == 12 and two["pairs"]["mugs@v1"]["rate"] == 0.8
    assert got["compare"]["canary_vs_stable"]["win_rate"] == win_rate({"win": 8, "loss": 2, "tie": 2})
    assert got["versions"][2]["pairs"] == {"base": win_rate({"win": 3})}
    assert "win_rate" not in got["compare"]["next_vs_stable"]  # its pairs were against base weights
