"""Adapter versions scored on what the copy graph already measures: pure functions from an answer to its
metric values, from running sums to means with 95% intervals, and from two versions to their differences.

Each version keeps, per metric, only ``n``, the sum and the sum of squares (``state/adapter_eval.py``): enough
for a mean and a variance, and additions commute, so every ingress replica adds to the same Redis hash. Means
get normal-approximation intervals, rates (0/1 metrics) Wilson intervals; a difference between two versions is
Welch's (unpooled variances) for means and Newcombe's (from the two Wilson intervals) for rates, both of
which stay honest with unequal traffic shares and, for rates, at 0% or 100%.

Shadowed requests (a route's ``shadow``) add pairs: the shadow version's answer against the served one to the
same request, judged win / loss / tie by ``judge``; a version's win rate is wins / (wins + losses), Wilson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deployments.text.channels import catalogue, measure

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Metric:
    rate: bool  # each answer scores 0 or 1
    better: str  # "higher" or "lower"


METRICS = {
    "sentiment": Metric(False, "higher"),
    "polish_edits": Metric(False, "lower"),
    "compliance_edits": Metric(False, "lower"),  # compliance rules that replaced or flagged a term
    "compliance_flags": Metric(False, "lower"),  # terms left in and flagged for a human
    "flagged": Metric(True, "lower"),  # answers with at least one compliance flag (release policies bound it)
    "attempts": Metric(False, "lower"),  # the quality gate's
    "cut_by_length": Metric(True, "lower"),
    "within_channel_limits": Metric(True, "higher"),
    "total_ms": Metric(False, "lower"),
    "first_token_ms": Metric(False, "lower"),
    "error": Metric(True, "lower"),  # answers score 0, failed requests naming the version 1
}


def observe(payload: dict) -> dict[str, float]:
    """One answered copy (a CopyResponse as a dict) as metric values; metrics it has no value for (no
    postprocess, no channel, no first token) are left out rather than counted as 0."""
    values = {"error": 0.0, "attempts": float(payload["attempts"])}
    if payload.get("sentiment"):
        values["sentiment"] = float(payload["sentiment"]["score"])
    if payload.get("polish") is not None:
        edits = payload["polish"].get("edits", [])
        compliance = [e for e in edits if e.get("rule") == "compliance"]
        values |= {"polish_edits": float(len(edits)), "compliance_edits": float(len(compliance)),
                   "compliance_flags": float(sum(1 for e in compliance if e.get("flagged")))}
        values["flagged"] = float(values["compliance_flags"] > 0)
    reasons, texts = payload.get("finish_reasons") or [], payload.get("texts") or []
    if reasons:
        # the answered draft's reason: with n > 1 the others were not what the caller got
        best = texts.index(payload["text"]) if payload.get("text") in texts else 0
        values["cut_by_length"] = float(reasons[min(best, len(reasons) - 1)] == "length")
    channel = catalogue().get(payload.get("channel") or "")
    if channel is not None and payload.get("fields") is not None:
        values["within_channel_limits"] = float(within_limits(channel, payload["fields"]))
    timings = payload.get("timings") or {}
    for name in ("total_ms", "first_token_ms"):
        if timings.get(name) is not None:
            values[name] = float(timings[name])
    return values


def within_limits(channel, fields: dict) -> bool:
    """Every field within its platform limit, counted in the platform's unit."""
    for f in channel.fields:
        value = fields.get(f.name, "")
        if any(measure(str(v), f.unit) > f.limit for v in (value if isinstance(value, list) else [value])):
            return False
    return True


# --- shadowed pairs -------------------------------------------------------------------------------------------

OUTCOMES = ("win", "loss", "tie")
SENTIMENT_MARGIN = 0.05  # closer sentiment scores are the scorer's noise on two similar texts, not a difference
LIVE_ONLY = ("total_ms", "first_token_ms")  # a shadow waits behind live traffic: its latency measures the queue


def judge(shadow: dict[str, float], served: dict[str, float]) -> str:
    """The shadow's answer against the served one to the same request (both as ``observe`` gives them): "win",
    "loss" or "tie". The first criterion that differs decides, in this order:

    1. compliance flags: fewer wins (terms left for a human to clear: legal risk comes first);
    2. limits: within the channel's limits and not cut at max_tokens beats outside them or cut;
    3. polish edits: fewer wins (less the rules had to fix);
    4. sentiment: higher wins, by more than ``SENTIMENT_MARGIN``.

    A criterion one side has no value for is skipped (postprocess off: no edits, no sentiment); equal on all:
    "tie". A shadow that failed is a loss (the caller records it; nothing to judge here)."""
    for mine, theirs, lower_wins, margin in (
            (shadow.get("compliance_flags"), served.get("compliance_flags"), True, 0.0),
            (_within(shadow), _within(served), False, 0.0),
            (shadow.get("polish_edits"), served.get("polish_edits"), True, 0.0),
            (shadow.get("sentiment"), served.get("sentiment"), False, SENTIMENT_MARGIN)):
        if mine is None or theirs is None or abs(mine - theirs) <= margin:
            continue
        return "win" if (mine < theirs) == lower_wins else "loss"
    return "tie"


def _within(values: dict[str, float]) -> float | None:
    """1 within limits and not cut, 0 otherwise; None when the answer has neither measure."""
    within, cut = values.get("within_channel_limits"), values.get("cut_by_length")
    if within is None and cut is None:
        return None
    return float(within != 0.0 and cut != 1.0)


def pair_field(served: str, outcome: str) -> str:
    """The eval hash field counting ``outcome`` against answers ``served`` (a tag, ``name@vN``, or "base")."""
    return f"vs:{served}:{outcome}"


def pairs(fields: dict[str, str]) -> dict[str, dict[str, int]]:
    """A version's shadowed pairs from its hash: {served tag: {win, loss, tie}}."""
    found: dict[str, dict[str, int]] = {}
    for field, value in fields.items():
        served, _, outcome = field.removeprefix("vs:").rpartition(":")
        if field.startswith("vs:") and served and outcome in OUTCOMES:
            found.setdefault(served, dict.fromkeys(OUTCOMES, 0))[outcome] = int(float(value))
    return found


def win_rate(counts: dict[str, int]) -> dict:
    """wins / (wins + losses) with a Wilson 95% interval; ties are counted, not in the rate (None: no decided
    pair yet)."""
    wins, losses, ties = counts.get("win", 0), counts.get("loss", 0), counts.get("tie", 0)
    decided = wins + losses
    return {"wins": wins, "losses": losses, "ties": ties, "rate": _round(wins / decided) if decided else None,
            "ci95": _rounded(wilson(wins, decided))}


@dataclass(frozen=True)
class Moments:
    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (n - 1); clamped at 0 against rounding in ``squares - total²/n``."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def moments(fields: dict[str, str]) -> dict[str, Moments]:
    """A version's hash (``<metric>:n``, ``:sum``, ``:sq``) as moments of the metrics it has samples of."""
    found = {}
    for name in METRICS:
        n = int(float(fields.get(f"{name}:n", 0)))
        if n > 0:
            found[name] = Moments(n, float(fields.get(f"{name}:sum", 0)), float(fields.get(f"{name}:sq", 0)))
    return found


def mean_interval(m: Moments) -> tuple[float, float] | None:
    """The mean ± 1.96 standard errors; None below two samples (no spread to go by)."""
    if m.n < 2:
        return None
    half = Z95 * math.sqrt(m.variance / m.n)
    return (m.mean - half, m.mean + half)


def wilson(successes: float, n: int) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion: inside [0, 1], and not of zero width at 0 or n."""
    if n <= 0:
        return None
    p, z2 = successes / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summary(name: str, m: Moments) -> dict:
    interval = wilson(m.total, m.n) if METRICS[name].rate else mean_interval(m)
    return {"mean": _round(m.mean), "ci95": _rounded(interval), "n": m.n}


def difference(name: str, candidate: Moments, baseline: Moments, sides: tuple[str, str] = ("candidate", "baseline")
               ) -> dict:
    """``candidate − baseline`` with a 95% interval, and which of ``sides`` is better when the interval
    excludes 0 (None: no difference shown at 95%)."""
    delta = candidate.mean - baseline.mean
    if METRICS[name].rate:
        a, b = wilson(candidate.total, candidate.n), wilson(baseline.total, baseline.n)
        pa, pb = candidate.mean, baseline.mean
        interval = (delta - math.sqrt((pa - a[0]) ** 2 + (b[1] - pb) ** 2),
                    delta + math.sqrt((a[1] - pa) ** 2 + (pb - b[0]) ** 2))
    elif candidate.n < 2 or baseline.n < 2:
        interval = None
    else:
        half = Z95 * math.sqrt(candidate.variance / candidate.n + baseline.variance / baseline.n)
        interval = (delta - half, delta + half)
    better = None
    if interval is not None and (interval[0] > 0 or interval[1] < 0):
        higher = interval[0] > 0
        better = sides[0] if higher == (METRICS[name].better == "higher") else sides[1]
    return {"delta": _round(delta), "ci95": _rounded(interval), "better": better}


def report(name: str, aliases: dict[str, int], digests: dict[int, str], sums: dict[int, dict[str, str]]) -> dict:
    """The evaluation of every version of ``name``, and each alias's version against stable's."""
    found = {version: moments(sums.get(version, {})) for version in digests}
    versions = []
    for version in sorted(digests):
        fields, m = sums.get(version, {}), found[version]
        versions.append({
            "version": version, "digest": digests[version],
            "aliases": sorted(a for a, v in aliases.items() if v == version),
            "samples": int(float(fields.get("samples", 0))),
            "metrics": {k: summary(k, v) for k, v in m.items() if k != "error"},
            "error_rate": summary("error", m["error"]) | {"errors": int(round(m["error"].total))}
            if "error" in m else None,
            "shadow_samples": int(float(fields.get("shadow_samples", 0))),
            "pairs": {served: win_rate(counts) for served, counts in sorted(pairs(fields).items())},
        })
    compare = {}
    stable = aliases.get("stable")
    for alias, version in sorted(aliases.items()):
        if alias == "stable" or stable is None or version == stable or version not in found or stable not in found:
            continue
        mine, theirs = found[version], found[stable]
        compare[f"{alias}_vs_stable"] = {k: difference(k, mine[k], theirs[k], (alias, "stable")) for k in METRICS
                                         if k in mine and k in theirs}
        shadowed = pairs(sums.get(version, {})).get(f"{name}@v{stable}")
        if shadowed:  # only where this version shadowed answers stable's version wrote
            compare[f"{alias}_vs_stable"]["win_rate"] = win_rate(shadowed)
    return {"name": name, "aliases": dict(sorted(aliases.items())), "versions": versions, "compare": compare}


def _round(x: float) -> float:
    return round(x, 6)


def _rounded(interval: tuple[float, float] | None) -> list[float] | None:
    return [_round(interval[0]), _round(interval[1])] if interval else None
