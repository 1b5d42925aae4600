"""The GPU cluster side of a config: does `cluster.yaml` have room for every deployment, and the
KubeRay RayService manifest of the same cluster (node shapes from `cluster.yaml`, Serve config from
the copyserve config), so the two ways to run a cluster cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
import yaml

from contracts.config import AppConfig, ConfigError
from serve_app.builder import deployment_specs
from serve_app.serve_config import build_serve_config

GIB = 1 << 30
IMAGE = "copyserve:0.1.0-gpu"  # built from the Dockerfile at the top of the repository


class LiteralText(str):
    """A multi-line string written as a YAML block (``|``), as KubeRay examples show serveConfigV2."""


yaml.SafeDumper.add_representer(
    LiteralText, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|"))


def load_cluster(path: str | Path) -> dict[str, Any]:
    try:
        cluster = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read cluster config {path}: {err}") from None
    if not isinstance(cluster, dict) or "available_node_types" not in cluster or "head_node_type" not in cluster:
        raise ConfigError(f"{path}: not a Ray cluster launcher config (no available_node_types / head_node_type)")
    return cluster


def node_types(cluster: dict[str, Any]) -> tuple[dict, dict[str, dict]]:
    """(head node type, worker node types by name)."""
    types = cluster["available_node_types"]
    head = cluster["head_node_type"]
    return types[head], {name: t for name, t in types.items() if name != head}


def replica_demand(config: AppConfig) -> dict[str, dict[str, float]]:
    """Resources every deployment needs at its min and max replica count."""
    demand = {}
    for spec in deployment_specs(config).values():
        actor = spec["ray_actor_options"]
        scaling = spec.get("autoscaling_config")
        low = scaling.get("min_replicas", 1) if scaling else spec["num_replicas"]
        high = scaling["max_replicas"] if scaling else spec["num_replicas"]
        for bound, count in (("min", low), ("max", high)):
            row = demand.setdefault(bound, {})
            for resource, per in {"CPU": actor["num_cpus"], "GPU": actor["num_gpus"],
                                  **actor.get("resources", {})}.items():
                row[resource] = row.get(resource, 0) + per * count
    return demand


def capacity_problems(config: AppConfig, cluster: dict[str, Any]) -> list[str]:
    """What the cluster cannot hold: every model's max replicas, and its min replicas without scaling up."""
    head, workers = node_types(cluster)
    problems = []
    demand = replica_demand(config)
    for bound, count_key in (("max", "max_workers"), ("min", "min_workers")):
        supply: dict[str, float] = dict(head.get("resources", {}))
        for worker in workers.values():
            for resource, amount in worker.get("resources", {}).items():
                supply[resource] = supply.get(resource, 0) + amount * worker.get(count_key, 0)
        for resource, needed in demand[bound].items():
            if needed > supply.get(resource, 0) + 1e-9:
                problems.append(f"at {bound} replicas the deployments need {needed:g} {resource}, but the cluster "
                                f"has {supply.get(resource, 0):g} with every worker type at {count_key}")
    for model in config.models:
        opts = model.deployment
        fits = any(all(w.get("resources", {}).get(r, 0) >= need for r, need in
                       {"CPU": opts.num_cpus, "GPU": opts.num_gpus, **opts.resources}.items() if need)
                   for w in [head, *workers.values()])
        if not fits:
            problems.append(f"no node type has room for one replica of model {model.name} "
                            f"({opts.num_cpus:g} CPU, {opts.num_gpus:g} GPU, {opts.resources or 'no custom'})")
    return problems


def _container(name: str, resources: dict[str, Any], ports: list[dict] | None = None) -> dict[str, Any]:
    limits = {"cpu": str(int(resources.get("CPU", 1))), "memory": f"{int(resources.get('memory', 8 * GIB) // GIB)}Gi"}
    if resources.get("GPU"):
        limits["nvidia.com/gpu"] = str(int(resources["GPU"]))
    container = {"name": name, "image": IMAGE, "resources": {"limits": limits, "requests": dict(limits)}}
    if ports:
        container["ports"] = ports
    return container


def _start_params(resources: dict[str, Any]) -> dict[str, str]:
    """Ray resources a node offers beyond what Kubernetes limits already tell Ray."""
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    return {"resources": f"'{yaml.safe_dump(custom, default_flow_style=True).strip()}'"} if custom else {}


def build_rayservice(config: AppConfig, cluster: dict[str, Any]) -> dict[str, Any]:
    """The KubeRay RayService for this config on this cluster's node types."""
    head, workers = node_types(cluster)
    head_params = {"dashboard-host": "0.0.0.0", "num-cpus": str(int(head["resources"].get("CPU", 1))),
                   **_start_params(head["resources"])}
    ports = [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": config.server.port, "name": "serve"}]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": cluster.get("cluster_name", "copyserve")},
        "spec": {
            "serveConfigV2": LiteralText(yaml.safe_dump(build_serve_config(config), sort_keys=False,
                                                        allow_unicode=True, width=120)),
            "rayClusterConfig": {
                "rayVersion": ray.__version__,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": int(cluster.get("idle_timeout_minutes", 10) * 60)},
                "headGroupSpec": {"rayStartParams": head_params,
                                  "template": {"spec": {"containers": [_container("ray-head", head["resources"],
                                                                                  ports)]}}},
                "workerGroupSpecs": [
                    {"groupName": name.replace("_", "-"), "replicas": worker.get("min_workers", 0),
                     "minReplicas": worker.get("min_workers", 0), "maxReplicas": worker["max_workers"],
                     "rayStartParams": _start_params(worker["resources"]),
                     "template": {"spec": {"containers": [_container("ray-worker", worker["resources"])]}}}
                    for name, worker in workers.items()
                ],
            },
        },
    }


def build_network_policy(config: AppConfig, cluster: dict[str, Any]) -> dict[str, Any]:
    """Who may reach the head pod. KubeRay's operator submits the Serve config through the dashboard, so
    the dashboard listens on 0.0.0.0 in the pod; its job API runs code, so only the cluster's own pods
    and the operator reach it (and GCS and the client port). The API and the metrics stay open."""
    name = cluster.get("cluster_name", "copyserve")
    internal = [{"port": port, "protocol": "TCP"} for port in (6379, 8265, 10001)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-head"},
        "spec": {
            "podSelector": {"matchLabels": {"ray.io/cluster": name, "ray.io/node-type": "head"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": config.server.port, "protocol": "TCP"},
                           {"port": config.server.metrics_port, "protocol": "TCP"}]},
                {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": name}}},
                          {"namespaceSelector": {},
                           "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}}],
                 "ports": internal},
            ],
        },
    }
