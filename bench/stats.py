"""Shared by the benchmark scripts (run as `python bench/<name>.py`, so this imports as `stats`).

A percentile is only printed when there are enough samples for it to mean something: the p95 of
ten samples is their maximum, and the p99 of 64 is too.
"""

from __future__ import annotations

import math


def min_samples(q: float) -> int:
    """Fewest samples for a nearest-rank q-percentile that is not simply the largest value."""
    return 1 if q <= 0.5 else math.ceil(round(1 / (1 - q), 9))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, q in [0, 1]; None when there are fewer than `min_samples(q)` values."""
    if len(values) < min_samples(q):
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def show(value: float | None, spec: str = ".1f", unit: str = " ms") -> str:
    """A figure for a table; "n/a" where too few samples gave none."""
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def distribution(values: list[float], scale: float = 1.0) -> dict:
    """p50, p90 and the sample count (for JSON output and the compare tables)."""
    return {"p50": scaled(percentile(values, 0.5), scale), "p90": scaled(percentile(values, 0.9), scale),
            "n": len(values)}
