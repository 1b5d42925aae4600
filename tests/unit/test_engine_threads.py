"""A CPU engine's OpenMP threads: the config's count, else every core the process may use but one."""

from __future__ import annotations

import pytest

from contracts.config import ModelConfig

pytest.importorskip("vllm")
from deployments.engines.vllm_engine import cpu_threads  # noqa: E402 - after the skip: imports vLLM


def model(**engine) -> ModelConfig:
    return ModelConfig(name="m", family="llama", source="/models/m", engine=engine)


@pytest.mark.parametrize(("cores", "expected"), [({0, 1}, 1), ({0}, 1), (set(range(16)), 15)])
def test_unset_leaves_one_core_to_the_rest_of_the_service(monkeypatch, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores)
    assert cpu_threads(model()) == expected


def test_the_configured_count_wins(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert cpu_threads(model(cpu_threads=2)) == 2
