"""Talking to the Serve controller: deploy a Serve config, wait for it, read status, and roll one
deployment to new actor options. Used by the CLI and by the ingress's admin API.

Serve has no public Python call that applies a declarative config (``serve deploy`` goes through the
dashboard's REST API), so this module is the one place that uses the controller client.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Any

from ray import serve
from ray.serve.schema import ApplicationStatus, ServeDeploySchema


class DeployError(RuntimeError):
    """The controller refused a config, or an application failed to start."""


def _client():
    from ray.serve.context import _get_global_client

    return _get_global_client()


def deploy(serve_config: dict[str, Any]) -> None:
    """Apply a Serve config: its applications are created or updated in place; the cluster's other
    applications (deployed from a config by someone else) keep running."""
    client = _client()
    config = with_other_apps(serve_config, client.get_serve_details())
    client.deploy_apps(ServeDeploySchema.model_validate(config))


def with_other_apps(serve_config: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """The config plus the running applications it does not name. Serve's declarative deploy replaces
    the whole set of applications, so leaving them out would delete them."""
    ours = {app["name"] for app in serve_config["applications"]}
    others = [app["deployed_app_config"] for name, app in details.get("applications", {}).items()
              if name not in ours and app.get("deployed_app_config")]
    return {**serve_config, "applications": [*serve_config["applications"], *others]}


def wait_until_running(app_name: str, timeout_s: float, progress=None) -> float:
    """Block until ``app_name`` is RUNNING; returns the seconds it took. Raises DeployError on failure."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout_s:
        app = serve.status().applications.get(app_name)
        status = app.status if app else None
        if status == ApplicationStatus.RUNNING:
            return time.monotonic() - started
        if status in (ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY):
            raise DeployError(f"application {app_name} is {status}: {app.message}")
        if progress and status != last:
            state = status.value if status else "SUBMITTED"
            progress(f"{app_name}: {state.lower()} ({time.monotonic() - started:.0f}s)")
        last = status
        time.sleep(0.5)
    raise DeployError(f"application {app_name} was not running after {timeout_s:.0f}s")


def deployed_config() -> dict[str, Any]:
    """The Serve config the controller runs now (as ``serve deploy`` gave it)."""
    details = _client().get_serve_details()
    apps = []
    for name, app in details.get("applications", {}).items():
        if not app.get("deployed_app_config"):
            raise DeployError(f"application {name} was deployed with serve.run, not from a config: "
                              "redeploy it with `copyserve serve` or `copyserve deploy`")
        apps.append(app["deployed_app_config"])
    return {"proxy_location": details.get("proxy_location") or "EveryNode",
            "http_options": details.get("http_options") or {}, "applications": apps}


def _deployment_spec(serve_config: dict[str, Any], app_name: str, deployment: str) -> dict[str, Any]:
    app = next((a for a in serve_config["applications"] if a["name"] == app_name), None)
    if app is None:
        raise DeployError(f"no application {app_name} in the deployed config")
    spec = next((d for d in app.get("deployments", []) if d["name"] == deployment), None)
    if spec is None:
        raise DeployError(f"deployment {deployment} has no entry in the deployed config of {app_name}")
    return spec


def with_replica_env(serve_config: dict[str, Any], app_name: str, deployment: str,
                     env: dict[str, str | None]) -> dict[str, Any]:
    """A copy of the config with env vars set (None: removed) on one deployment's replicas.

    Actor options are part of a deployment's version, so Serve replaces that deployment's replicas
    in a rolling update (a bounded share at a time, each drained first) and leaves the others alone.
    """
    new = copy.deepcopy(serve_config)
    actor = _deployment_spec(new, app_name, deployment).setdefault("ray_actor_options", {})
    env_vars = actor.setdefault("runtime_env", {}).setdefault("env_vars", {})
    for key, value in env.items():
        if value is None:
            env_vars.pop(key, None)
        else:
            env_vars[key] = value
    return new


def with_num_replicas(serve_config: dict[str, Any], app_name: str, deployment: str, count: int) -> dict[str, Any]:
    """A copy of the config with a fixed replica count for one deployment (a lightweight update:
    Serve adds or drains replicas without restarting the others)."""
    new = copy.deepcopy(serve_config)
    _deployment_spec(new, app_name, deployment)["num_replicas"] = count
    return new


def deployment_status(app_name: str) -> dict[str, dict[str, Any]]:
    """Per deployment: status, message and replica counts by state."""
    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    return {name: {"status": _plain(d.status), "message": d.message,
                   "replicas": {_plain(state): n for state, n in d.replica_states.items()}}
            for name, d in app.deployments.items()}


def running_since(app_name: str, deployment: str, since_s: float) -> int:
    """How many of a deployment's replicas run and were started at or after ``since_s`` (epoch seconds):
    after a deploy that changed the deployment's version, the replicas that run the new one. (A controller
    that restarted reports its recovery time as every replica's start: then old ones count too.)"""
    app = _client().get_serve_details().get("applications", {}).get(app_name) or {}
    replicas = (app.get("deployments", {}).get(deployment) or {}).get("replicas", [])
    return sum(_plain(r["state"]) == "RUNNING" and r.get("start_time_s", 0) >= since_s for r in replicas)


def _plain(value: Any) -> Any:
    """Serve's status enums as their plain string values."""
    return getattr(value, "value", value)


def status_report() -> dict[str, Any]:
    """Every application's deployments with replica counts, scaling bounds and replica nodes."""
    details = _client().get_serve_details()
    apps, healthy = [], True
    for name, app in details.get("applications", {}).items():
        deployments = []
        for dname, d in app.get("deployments", {}).items():
            config = d.get("deployment_config") or {}
            scaling = config.get("autoscaling_config") or {}
            states = dict(Counter(_plain(r["state"]) for r in d.get("replicas", [])))
            deployments.append({
                "name": dname, "status": _plain(d["status"]), "message": d.get("message", ""),
                "target_replicas": d.get("target_num_replicas"), "running": states.get("RUNNING", 0),
                "replica_states": states,
                "min_replicas": scaling.get("min_replicas") if scaling else None,
                "max_replicas": scaling.get("max_replicas") if scaling else None,
                "replicas": [{"replica_id": r["replica_id"], "state": _plain(r["state"]), "node_id": r.get("node_id"),
                              "node_ip": r.get("node_ip"), "pid": r.get("pid"), "actor_name": r.get("actor_name")}
                             for r in d.get("replicas", [])],
            })
            healthy &= deployments[-1]["status"] in ("HEALTHY", "UPSCALING", "DOWNSCALING")
        healthy &= _plain(app["status"]) == "RUNNING"
        apps.append({"name": name, "status": _plain(app["status"]), "message": app.get("message", ""),
                     "deployments": deployments})
    return {"healthy": healthy and bool(apps), "applications": apps}
