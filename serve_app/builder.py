"""The one place that turns a validated config into a Serve application (nothing else binds).

Deployment options come from ``deployment_specs`` as plain JSON-able dicts, so the same options
go into the code path (``build_app``) and into the Serve config file (``serve_config``)."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from contracts.config import (
    AppConfig,
    ConfigError,
    DeploymentOptions,
    ModelConfig,
    check_local_sources,
    parse_config,
)
from deployments.model_server import DEFAULT_ENGINE, ModelServer, deployment_name
from deployments.polish import Polish
from deployments.router import Router
from deployments.sentiment import Sentiment
from deployments.text.channels import catalogue
from serve_app.ingress import Ingress

# Defaults every deployment starts from; a deployment's own options are merged over these.
DEFAULT_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "health_check_period_s": 10,
    "health_check_timeout_s": 30,
}
# Engines take a while to load; Serve must not give up on a replica that is still starting.
MODEL_DEPLOYMENT_OPTIONS: dict[str, Any] = {"health_check_period_s": 15, "health_check_timeout_s": 60}


def deployment_options(opts: DeploymentOptions, env: dict[str, str] | None = None, access_log: bool = False,
                       **overrides: Any) -> dict[str, Any]:
    actor: dict[str, Any] = {"num_cpus": opts.num_cpus, "num_gpus": opts.num_gpus}
    if opts.resources:
        actor["resources"] = dict(opts.resources)
    if env:
        actor["runtime_env"] = {"env_vars": env}
    health = {k: v for k in ("health_check_period_s", "health_check_timeout_s") if (v := getattr(opts, k)) is not None}
    replicas: dict[str, Any] = {"num_replicas": opts.num_replicas}
    if opts.autoscaling:
        replicas = {"autoscaling_config": opts.autoscaling.model_dump(exclude_none=True)}
    return {**DEFAULT_DEPLOYMENT_OPTIONS, **replicas,
            "max_ongoing_requests": opts.max_ongoing_requests, "max_queued_requests": opts.max_queued_requests,
            # The handle raises BackPressureError carrying these; model_calls turns it into our JSON 503.
            "backpressure_config": {"status_code": 503, "retry_after_s": opts.retry_after_s},
            # Scale-down and redeploy stop routing to a replica, then wait this long for its requests.
            "graceful_shutdown_timeout_s": opts.graceful_shutdown_timeout_s,
            "logging_config": {"enable_access_log": access_log if opts.access_log is None else opts.access_log},
            "ray_actor_options": actor, **overrides, **health}


def local_ray_env(config: AppConfig) -> dict[str, str]:
    """Settings a Ray that copyserve starts itself (``copyserve serve``, tests, benchmarks) reads from the
    environment of the process that starts it: set them before ``ray.init``."""
    return {"RAY_worker_niceness": str(config.server.worker_niceness)}


def engine_env(model: ModelConfig) -> dict[str, str]:
    """Settings vLLM reads only from the environment of the replica's process."""
    env = {"VLLM_CPU_OMP_THREADS_BIND": model.engine.cpu_omp_threads_bind}
    if model.engine.cpu_worker_in_engine_core and model.engine.tensor_parallel_size == 1:
        # vLLM's CPU platform moves a lone worker to a process of its own unless multiprocessing is off; the
        # engine core itself stays a process of its own either way (AsyncLLM always spawns it).
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return env


def deployment_specs(config: AppConfig) -> dict[str, dict[str, Any]]:
    """Serve options of every deployment of the app, by deployment name."""
    specs = {"Ingress": deployment_options(config.server.ingress, access_log=True)}
    for m in config.models:
        specs[deployment_name(m.name)] = deployment_options(m.deployment, engine_env(m),
                                                                  **MODEL_DEPLOYMENT_OPTIONS)
    specs["Polish"] = deployment_options(config.polish.deployment)
    specs["Sentiment"] = deployment_options(config.sentiment.deployment)
    return specs


def validate_for_serving(config: AppConfig) -> None:
    """Checks that need the file system: model folders exist, every route has its prompt template, the
    channel catalogue is valid."""
    check_local_sources(config)
    try:
        Router(config)
        catalogue()  # the channel file: a broken entry fails here, named, not on the first request
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_app(config: AppConfig, engine_cls: str = DEFAULT_ENGINE) -> Application:
    """Ingress (with the router inside) → one ModelServer per model, Ingress → Polish → Sentiment."""
    validate_for_serving(config)
    specs = deployment_specs(config)
    models = {
        m.name: serve.deployment(ModelServer, name=deployment_name(m.name))
        .options(**specs[deployment_name(m.name)]).bind(m, engine_cls)
        for m in config.models
    }
    polish = serve.deployment(Polish, name="Polish").options(**specs["Polish"])
    polish = polish.bind(config.polish, {config.polish.llm_model: models[config.polish.llm_model]}
                         if config.polish.mode == "llm" else None)
    sentiment = serve.deployment(Sentiment, name="Sentiment").options(**specs["Sentiment"]).bind(config.sentiment)
    ingress = serve.deployment(Ingress, name="Ingress").options(**specs["Ingress"])
    return ingress.bind(models, polish, sentiment, config)


def app_builder(args: dict[str, Any]) -> Application:
    """The Serve config's ``import_path``: ``args.config`` is the whole copyserve config, inline."""
    if not isinstance(args, dict) or not isinstance(args.get("config"), dict):
        raise ConfigError("the Serve config's args must be {config: <copyserve config>}")
    return build_app(parse_config(args["config"]))
