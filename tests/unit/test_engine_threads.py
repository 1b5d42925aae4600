"""A CPU engine core's environment: its OpenMP threads (the config's count, else every core the process may use
but one), and no torch.compile when the engine is eager."""

from __future__ import annotations

import pytest

from contracts.config import ModelConfig

pytest.importorskip("vllm")
from deployments.engines.vllm_engine import cpu_threads, engine_core_env  # noqa: E402 - after the skip: imports vLLM


def model(**engine) -> ModelConfig:
    return ModelConfig(name="m", family="llama", source="/models/m", engine=engine)


@pytest.mark.parametrize(("cores", "expected"), [({0, 1}, 1), ({0}, 1), (set(range(16)), 15)])
def test_unset_leaves_one_core_to_the_rest_of_the_service(monkeypatch, cores, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores)
    assert cpu_threads(model()) == expected


def test_the_configured_count_wins(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert cpu_threads(model(cpu_threads=2)) == 2


@pytest.mark.parametrize(("eager", "compile_off"), [(True, True), (False, False)])
def test_a_cpu_engine_core_gets_its_threads_and_an_eager_one_no_compiler(monkeypatch, eager, compile_off):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr("deployments.engines.vllm_engine.current_platform.is_cpu", lambda: True)
    env = engine_core_env(model(enforce_eager=eager))
    assert env["OMP_NUM_THREADS"] == "1"
    assert (env.get("TORCH_COMPILE_DISABLE") == "1") is compile_off  # a compiled engine keeps torch.compile


def test_off_a_cpu_the_engine_core_environment_is_left_alone(monkeypatch):
    monkeypatch.setattr("deployments.engines.vllm_engine.current_platform.is_cpu", lambda: False)
    assert engine_core_env(model(enforce_eager=True)) == {}
