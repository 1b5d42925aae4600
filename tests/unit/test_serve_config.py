"""The Serve config copyserve deploys: valid for Serve, same options as the code path, one
deployment's env changed without touching the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from contracts.config import ConfigError, load_config, parse_config
from serve_app.builder import deployment_specs, engine_env
from serve_app.serve_config import APP_IMPORT_PATH, build_serve_config
from serve_app.serve_control import DeployError, with_other_apps, with_replica_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", ["configs/local.yaml", "configs/production.yaml", "tests/configs/integration.yaml"])
def test_serve_config_is_valid_and_carries_every_deployment(path):
    config = load_config(ROOT / path)
    built = build_serve_config(config)
    schema = ServeDeploySchema.model_validate(built)
    (app,) = schema.applications
    assert app.import_path == APP_IMPORT_PATH and app.name == config.server.app_name
    names = [d.name for d in app.deployments]
    assert names == list(deployment_specs(config))
    assert {f"model-{m.name}" for m in config.models} | {"Ingress", "Polish", "Sentiment"} == set(names)
    # The copyserve config travels inline and parses back to the same config.
    assert parse_config(built["applications"][0]["args"]["config"]) == config


def test_model_options_reach_the_serve_config():
    config = load_config(ROOT / "tests/configs/integration.yaml")
    app = build_serve_config(config)["applications"][0]
    pair = next(d for d in app["deployments"] if d["name"] == "model-tiny-gptj-pair")
    assert pair["num_replicas"] == 2 and pair["ray_actor_options"]["num_cpus"] == 0.5
    assert pair["ray_actor_options"]["runtime_env"]["env_vars"] == {"VLLM_CPU_OMP_THREADS_BIND": "nobind",
                                                                      "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    small = next(d for d in app["deployments"] if d["name"] == "model-tiny-gptj")
    assert small["max_ongoing_requests"] == 2 and small["max_queued_requests"] == 2
    assert small["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    # The health-check period is a knob (short in the tests, so a dead engine is replaced quickly);
    # unset, a model keeps the longer default that leaves room for a busy engine.
    assert small["health_check_period_s"] == 2 and small["health_check_timeout_s"] == 60
    assert pair["health_check_period_s"] == 15
    # One access-log line per HTTP request (the ingress's), not one more per internal hop.
    ingress = next(d for d in app["deployments"] if d["name"] == "Ingress")
    assert ingress["logging_config"] == {"enable_access_log": True}
    assert small["logging_config"] == pair["logging_config"] == {"enable_access_log": False}


def test_a_lone_cpu_worker_runs_in_the_engine_core_unless_told_otherwise():
    model = load_config(ROOT / "tests/configs/integration.yaml").models[0]
    assert engine_env(model)["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"

    def with_engine(**update):
        return model.model_copy(update={"engine": model.engine.model_copy(update=update)})

    # vLLM's own CPU layout on request, and tensor parallelism needs a process per rank.
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine_env(with_engine(cpu_worker_in_engine_core=False))
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in engine_env(with_engine(tensor_parallel_size=2))


def test_a_router_deployment_in_an_old_config_is_refused_with_the_fix():
    data = yaml.safe_load((ROOT / "configs/local.yaml").read_text())
    data["server"]["router"] = {"num_cpus": 0.1}
    with pytest.raises(ConfigError, match="router runs inside the ingress"):
        parse_config(data)


def test_replica_env_changes_one_deployment_only():
    built = build_serve_config(load_config(ROOT / "tests/configs/integration.yaml"))
    changed = with_replica_env(built, "copyserve", "model-tiny-gptj-pair", {"COPYSERVE_MERGED_ADAPTER": "{}"})
    before = {d["name"]: d for d in built["applications"][0]["deployments"]}
    after = {d["name"]: d for d in changed["applications"][0]["deployments"]}
    assert after["model-tiny-gptj-pair"]["ray_actor_options"]["runtime_env"]["env_vars"] == {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "COPYSERVE_MERGED_ADAPTER": "{}"}
    assert {n: d for n, d in after.items() if n != "model-tiny-gptj-pair"} == {
        n: d for n, d in before.items() if n != "model-tiny-gptj-pair"}
    assert "COPYSERVE_MERGED_ADAPTER" not in str(built)  # the input is not modified
    back = with_replica_env(changed, "copyserve", "model-tiny-gptj-pair", {"COPYSERVE_MERGED_ADAPTER": None})
    assert back == built


def test_replica_env_names_what_is_missing():
    built = build_serve_config(load_config(ROOT / "tests/configs/integration.yaml"))
    with pytest.raises(DeployError, match="no application other"):
        with_replica_env(built, "other", "model-tiny-gptj", {})
    with pytest.raises(DeployError, match="deployment model-nope has no entry"):
        with_replica_env(built, "copyserve", "model-nope", {})


def test_deploy_keeps_the_clusters_other_config_apps_and_replaces_its_own():
    config = build_serve_config(load_config(ROOT / "configs/local.yaml"))
    name = config["applications"][0]["name"]
    other = {"name": "search", "import_path": "search.app:app", "route_prefix": "/search"}
    details = {"applications": {
        name: {"deployed_app_config": {"name": name, "import_path": "old.path:app"}},  # replaced
        "search": {"deployed_app_config": other},                                       # kept
        "notebook": {"deployed_app_config": None},  # started with serve.run: not ours to redeploy
    }}
    merged = with_other_apps(config, details)
    assert [app["name"] for app in merged["applications"]] == [name, "search"]
    assert merged["applications"][0] == config["applications"][0] and merged["applications"][1] == other
    ServeDeploySchema.model_validate(merged)
    assert with_other_apps(config, {}) == config
