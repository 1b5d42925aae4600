"""Shared by the benchmark scripts (run as `python bench/<name>.py`, so this imports as `stats`)."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]
