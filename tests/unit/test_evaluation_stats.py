"""Adapter evaluation's statistics on known numbers, and an answer as metric values."""

from __future__ import annotations

import statistics

import pytest

from deployments.releases.evaluation import Moments, difference, mean_interval, observe, wilson
from deployments.state.adapter_eval import parse_tag
from deployments.text.channels import catalogue

# --- statistics on known numbers ------------------------------------------------------------------------

def test_wilson_intervals():
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)  # z²/(n + z²): not zero width at 0
    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert wilson(81, 263) == pytest.approx((0.255289, 0.366210), abs=1e-6)
    assert wilson(0, 0) is None


def test_moments_from_sums_match_the_samples():
    samples = [0.2, 0.9, 0.4, 0.75, 0.6]
    m = Moments(len(samples), sum(samples), sum(x * x for x in samples))
    assert m.mean == pytest.approx(statistics.mean(samples))
    assert m.variance == pytest.approx(statistics.variance(samples))
    half = 1.959964 * statistics.stdev(samples) / len(samples) ** 0.5
    assert mean_interval(m) == pytest.approx((m.mean - half, m.mean + half))
    assert mean_interval(Moments(1, 0.5, 0.25)) is None  # one sample: no spread to go by
    assert Moments(3, 3e6, 3e12).variance == 0.0  # rounding never makes a variance negative


def test_welch_difference_of_means():
    a, b = [2, 4, 6], [1, 2, 3, 4]  # means 4 and 2.5, variances 4 and 5/3
    d = difference("sentiment", Moments(3, 12, 56), Moments(4, 10, 30), ("canary", "stable"))
    # se = sqrt(4/3 + (5/3)/4) = sqrt(1.75)
    assert d["delta"] == pytest.approx(statistics.mean(a) - statistics.mean(b))
    assert d["ci95"] == pytest.approx([1.5 - 1.959964 * 1.75 ** 0.5, 1.5 + 1.959964 * 1.75 ** 0.5], abs=1e-5)
    assert d["better"] is None  # the interval holds 0
    far = difference("sentiment", Moments(100, 90, 81.5), Moments(100, 50, 25.5), ("canary", "stable"))
    assert far["better"] == "canary"
    slower = difference("total_ms", Moments(100, 90, 81.5), Moments(100, 50, 25.5), ("canary", "stable"))
    assert slower["better"] == "stable"  # higher latency is worse


def test_newcombe_difference_of_rates():
    # Newcombe (1998), 56/70 − 48/80: the hybrid score interval (his method 10) is 0.0524 to 0.3339
    d = difference("cut_by_length", Moments(70, 56, 56), Moments(80, 48, 48), ("canary", "stable"))
    assert d["delta"] == pytest.approx(0.2)
    assert d["ci95"] == pytest.approx([0.0524, 0.3339], abs=1e-4)
    assert d["better"] == "stable"
    none = difference("error", Moments(50, 0, 0), Moments(40, 0, 0))
    assert none["delta"] == 0 and none["ci95"][0] < 0 < none["ci95"][1]  # 0 of both: still an interval


def answer(**over) -> dict:
    return {"adapter": "mugs@v2", "attempts": 2, "text": "b", "texts": ["a", "b"], "finish_reasons": ["stop", "length"],
            "sentiment": {"score": 0.8}, "channel": None, "fields": None,
            "polish": {"edits": [{"rule": "punctuation"}, {"rule": "compliance", "flagged": False},
                                 {"rule": "compliance", "flagged": True}]},
            "timings": {"total_ms": 120.0, "first_token_ms": None}} | over


def test_an_answer_as_metric_values():
    assert observe(answer()) == {"error": 0.0, "attempts": 2.0, "sentiment": 0.8, "polish_edits": 3.0,
                                 "compliance_edits": 2.0, "compliance_flags": 1.0, "flagged": 1.0,
                                 "cut_by_length": 1.0, "total_ms": 120.0}
    bare = observe(answer(polish=None, sentiment=None, timings={"total_ms": 5, "first_token_ms": 2}))
    assert "polish_edits" not in bare and "sentiment" not in bare and bare["first_token_ms"] == 2
    channel = next(c for c in catalogue().values() if "en" in c.languages)
    fields = {f.name: ["x"] * f.count if f.count > 1 else "x" for f in channel.fields}
    assert observe(answer(channel=channel.id, fields=fields))["within_channel_limits"] == 1.0
    first = channel.fields[0]
    fields[first.name] = ["x" * (first.limit + 1)] * first.count if first.count > 1 else "x" * (first.limit + 1)
    assert observe(answer(channel=channel.id, fields=fields))["within_channel_limits"] == 0.0


def test_tags_name_a_version():
    assert parse_tag("mugs@v12") == ("mugs", 12)
    assert parse_tag(None) is None and parse_tag("mugs") is None and parse_tag("mugs@canary") is None
