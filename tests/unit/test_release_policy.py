"""Release policies: what a policy accepts, and the promote / rollback / hold decision on known numbers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deployments.releases.evaluation import pair_field
from deployments.releases.policy import Evidence, ReleasePolicy, decide

POLICY = ReleasePolicy(max_error_rate=0.1, max_flag_rate=0.2, min_win_rate=0.5, min_samples=100,
                       rollback_min_samples=20, auto_promote=True)


def evidence(samples=0, requests=None, errors=0, scored=None, flagged=0, wins=0, losses=0) -> Evidence:
    return Evidence(samples, samples + errors if requests is None else requests, errors,
                    samples if scored is None else scored, flagged, wins, losses)


@pytest.mark.parametrize(("data", "message"), [
    ({}, "auto_rollback needs a threshold to break"),
    ({"max_error_rate": 1.5}, "less than or equal to 1"),
    ({"max_flag_rate": -0.1}, "greater than or equal to 0"),
    ({"max_error_rate": 0.1, "min_samples": 0}, "greater than or equal to 1"),
    ({"max_error_rate": 0.1, "min_samples": 10, "rollback_min_samples": 50}, "must not exceed min_samples"),
    ({"max_error_rate": 0.1, "auto_promte": True}, "Extra inputs are not permitted"),
])
def test_a_policy_says_what_is_wrong(data, message):
    with pytest.raises(ValidationError, match=message):
        ReleasePolicy.model_validate(data)


def test_a_policy_without_automatic_rollback_needs_no_threshold():
    policy = ReleasePolicy(auto_rollback=False, auto_promote=True)
    assert (policy.min_samples, policy.rollback_min_samples, policy.max_error_rate) == (200, 20, None)


def test_rollback_once_a_rate_breaks_its_maximum_over_the_minimum():
    # 3 errors in 19 requests (15.8% > 10%) is below the 20 a rollback needs; in 20, it rolls back
    assert decide(POLICY, evidence(samples=16, errors=3)).action is None
    verdict = decide(POLICY, evidence(samples=17, errors=3))
    assert verdict.action == "rollback"
    assert verdict.reason == "auto rollback: error rate 15.0% (3 of 20) over max_error_rate 10.0%"
    # exactly at the maximum holds
    assert decide(POLICY, evidence(samples=18, errors=2)).action is None
    flags = decide(POLICY, evidence(samples=40, flagged=9))
    assert flags.action == "rollback"
    assert "compliance-flag rate 22.5% (9 of 40) over max_flag_rate 20.0%" in flags.reason
    both = decide(POLICY, evidence(samples=40, errors=10, flagged=9))
    assert "error rate 20.0% (10 of 50)" in both.reason and "; compliance-flag rate" in both.reason


def test_rollback_comes_before_any_promote_and_only_when_allowed():
    many = evidence(samples=500, errors=100, wins=400, losses=10)
    assert decide(POLICY, many).action == "rollback"
    off = decide(POLICY.model_copy(update={"auto_rollback": False}), many)
    assert off.action is None and off.reason.endswith("but auto_rollback is off")


def test_promote_after_min_samples_within_every_threshold():
    assert decide(POLICY, evidence(samples=99)).reason == "99 of the 100 answers a promote needs"
    verdict = decide(POLICY, evidence(samples=100, errors=5, flagged=10, wins=30, losses=20))
    assert verdict.action == "promote"
    assert verdict.reason == ("auto promote: 100 answers, error rate 4.8% (5 of 105) within 10.0%, compliance-flag "
                              "rate 10.0% (10 of 100) within 20.0%, win rate 60.0% (30 of 50) at least 50.0%")
    # no decided pairs (no shadow, or ties only): the win rate cannot hold it back
    assert decide(POLICY, evidence(samples=100)).action == "promote"


def test_a_low_win_rate_or_auto_promote_off_holds():
    low = decide(POLICY, evidence(samples=300, wins=40, losses=60))
    assert low.action is None and low.reason == "win rate 40.0% (40 of 100) under min_win_rate 50.0%"
    off = decide(POLICY.model_copy(update={"auto_promote": False}), evidence(samples=300))
    assert off.action is None and off.reason.endswith("but auto_promote is off")


def test_evidence_from_a_versions_hash():
    fields = {"samples": "30", "error:n": "33", "error:sum": "3.0000000001", "flagged:n": "28", "flagged:sum": "4",
              pair_field("mugs@v1", "win"): "7", pair_field("mugs@v1", "loss"): "2", pair_field("base", "win"): "9"}
    assert Evidence.of(fields, "mugs@v1") == Evidence(30, 33, 3, 28, 4, 7, 2)
    assert Evidence.of({}, "mugs@v1") == Evidence(0, 0, 0, 0, 0, 0, 0)
