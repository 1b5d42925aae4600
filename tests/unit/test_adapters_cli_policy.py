"""`copyserve adapters evaluation` and `copyserve adapters policy`: their HTTP calls and what they print."""

from __future__ import annotations

import pytest

from deployments.releases.evaluation import report, win_rate
from serve_app import adapters_cli
from serve_app.cli import parser


@pytest.mark.parametrize("argv, call", [
    (["evaluation", "mugs"], ("GET", "/v1/adapters/mugs/evaluation", None)),
    (["policy", "mugs"], ("GET", "/v1/adapters/mugs/policy", None)),
    (["policy", "mugs", "--delete"], ("DELETE", "/v1/adapters/mugs/policy", None)),
    (["policy", "mugs", "--min-samples", "300", "--max-error-rate", "0.05", "--max-flag-rate", "0.1",
      "--min-win-rate", "0.55", "--auto-promote", "--no-auto-rollback"],
     ("PUT", "/v1/adapters/mugs/policy", {"min_samples": 300, "max_error_rate": 0.05, "max_flag_rate": 0.1,
                                          "min_win_rate": 0.55, "auto_promote": True, "auto_rollback": False})),
])
def test_each_command_makes_one_call(argv, call):
    assert adapters_cli.request(parser().parse_args(["adapters", *argv])) == call


def test_the_evaluation_table_shows_the_win_rate_against_stable():
    sums = {1: {"samples": "40", "error:n": "40", "sentiment:n": "40", "sentiment:sum": "30"},
            2: {"samples": "12", "shadow_samples": "12", "error:n": "13", "error:sum": "1", "flagged:n": "12",
                "flagged:sum": "3", "vs:mugs@v1:win": "8", "vs:mugs@v1:loss": "2", "vs:mugs@v1:tie": "2"}}
    out = adapters_cli.show_evaluation(report("mugs", {"stable": 1, "canary": 2}, {1: "a", 2: "b"}, sums))
    header, one, two = out.splitlines()
    assert header.split()[:3] == ["VERSION", "ALIASES", "SAMPLES"] and "WIN RATE VS STABLE" in header
    assert one.split() == ["v1", "stable", "40", "0", "0.0%", "-", "0.750", "-"]
    low, high = win_rate({"win": 8, "loss": 2})["ci95"]
    assert two.split()[:6] == ["v2", "canary", "12", "12", "7.7%", "25.0%"]
    assert two.endswith(f"80.0% [{low:.1%}, {high:.1%}] 8-2 (2 ties)")


def test_the_policy_and_its_verdict_print_as_lines():
    answer = {"name": "mugs", "policy": {"auto_rollback": True, "max_error_rate": 0.05, "min_win_rate": None},
              "verdict": {"canary": 2, "stable": 1, "action": None, "reason": "3 of the 200 answers a promote needs"}}
    assert adapters_cli.show_policy(answer).splitlines() == [
        "auto_rollback: True", "max_error_rate: 0.05", "min_win_rate: -",
        "now (canary v2, stable v1): hold: 3 of the 200 answers a promote needs"]
    assert adapters_cli.show_policy({"name": "mugs", "policy": None, "verdict": None}) == "mugs: no release policy"
    assert adapters_cli.show_policy({"name": "mugs", "policy": None, "deleted": True}) == (
        "mugs: release policy deleted")
