"""configs/grafana/copyserve.json only charts series that exist: copyserve's own (with their labels)
from serve_app/metrics.py, vLLM's from its stat logger, Serve's from Ray's source."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from ray.util.metrics import Metric

from contracts import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "configs/grafana/copyserve.json"
SERIES = re.compile(r"\bray_[A-Za-z0-9_]+")
SUFFIX = re.compile(r"_(total|bucket|count|sum)$")
COPYSERVE = {m._name: set(m._tag_keys) for m in vars(metrics).values() if isinstance(m, Metric)}


def exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])  # without importing it (torch)


def labels_of(expr: str, series: str) -> set[str]:
    """Labels an expression groups by or selects on for ``series``."""
    grouped = {label.strip() for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")}
    selected = {label for selector in re.findall(rf"{series}\{{([^}}]*)\}}", expr)
                for label in re.findall(r"(\w+)\s*!?=", selector)}
    return (grouped | selected) - {"le"}


def source_names(folder: Path, pattern: str) -> set[str]:
    text = "".join(f.read_text() for f in folder.rglob("*.py"))
    return {name.replace("{protocol_name}", "http") for name in re.findall(pattern, text)}


def series_in_dashboard() -> set[str]:
    return {SUFFIX.sub("", s).removeprefix("ray_") for e in exprs() for s in SERIES.findall(e)}


def test_every_panel_has_a_query_and_panels_do_not_overlap():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(cells) == len(set(cells))


def test_copyserve_series_and_their_labels_are_defined_in_metrics():
    for expr in exprs():
        for series in SERIES.findall(expr):
            name = SUFFIX.sub("", series).removeprefix("ray_")
            if not name.startswith("copyserve_"):
                continue
            assert name in COPYSERVE, f"{series} is not defined in serve_app/metrics.py"
            assert labels_of(expr, series) <= COPYSERVE[name], f"{expr}: a label is not one of {COPYSERVE[name]}"
    assert {n for n in series_in_dashboard() if n.startswith("copyserve_")} == set(COPYSERVE)  # all charted


@pytest.mark.parametrize("prefix, folder, pattern", [
    ("vllm_", package_dir("vllm") / "v1/metrics", r'"vllm:([a-z_]+)"'),
    ("serve_", package_dir("ray") / "serve/_private", r'"(serve_[a-z_{}]+)"'),
])
def test_engine_and_serve_series_exist_in_their_sources(prefix, folder, pattern):
    known = {prefix + n if prefix == "vllm_" else n for n in source_names(folder, pattern)}
    charted = {n for n in series_in_dashboard() if n.startswith(prefix)}
    assert charted and charted <= known, charted - known
