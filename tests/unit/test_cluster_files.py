"""cluster.yaml, the RayService manifest and the production config agree: same deployments, room for
every replica, the committed manifest is what `copyserve build-config` generates."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml

from contracts.config import ConfigError, load_config, parse_config
from serve_app.builder import deployment_specs
from serve_app.cluster import build_network_policy, build_rayservice, capacity_problems, load_cluster, replica_demand
from serve_app.serve_config import build_serve_config

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = load_config(ROOT / "configs/production.yaml")
CLUSTER = load_cluster(ROOT / "cluster.yaml")


def committed_documents() -> list[dict]:
    return list(yaml.safe_load_all((ROOT / "configs/rayservice.yaml").read_text()))


def committed_rayservice() -> dict:
    return committed_documents()[0]


def test_committed_rayservice_is_regenerated_from_cluster_and_config():
    built = [build_rayservice(PRODUCTION, CLUSTER), build_network_policy(PRODUCTION, CLUSTER)]
    assert committed_documents() == list(yaml.safe_load_all(yaml.safe_dump_all(built))), \
        "run: copyserve build-config --config configs/production.yaml --format rayservice -o configs/rayservice.yaml"


def test_the_head_dashboard_is_reachable_only_from_the_cluster_and_the_operator():
    policy = committed_documents()[1]
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    open_rule, internal_rule = policy["spec"]["ingress"]
    assert "from" not in open_rule and {p["port"] for p in open_rule["ports"]} == {PRODUCTION.server.port,
                                                                                   PRODUCTION.server.metrics_port}
    assert 8265 in {p["port"] for p in internal_rule["ports"]}
    sources = [s["podSelector"]["matchLabels"] for s in internal_rule["from"]]
    assert sources == [{"ray.io/cluster": CLUSTER["cluster_name"]}, {"app.kubernetes.io/name": "kuberay-operator"}]


def test_rayservice_serves_the_same_deployments_as_the_config():
    serve_config = yaml.safe_load(committed_rayservice()["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    assert [d["name"] for d in app["deployments"]] == list(deployment_specs(PRODUCTION))
    assert parse_config(app["args"]["config"]) == PRODUCTION
    assert serve_config == build_serve_config(PRODUCTION)


def test_rayservice_node_groups_match_cluster_yaml():
    spec = committed_rayservice()["spec"]["rayClusterConfig"]
    assert spec["rayVersion"] == ray.__version__
    assert ray.__version__ in CLUSTER["docker"]["image"]  # launcher and KubeRay run the same Ray
    worker = CLUSTER["available_node_types"]["gpu_worker"]
    (group,) = spec["workerGroupSpecs"]
    assert (group["minReplicas"], group["maxReplicas"]) == (worker["min_workers"], worker["max_workers"])
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) == worker["resources"]["GPU"]
    assert int(limits["cpu"]) == worker["resources"]["CPU"]
    head = CLUSTER["available_node_types"]["head"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == str(head["resources"]["CPU"])


def test_cluster_has_room_for_every_replica():
    assert capacity_problems(PRODUCTION, CLUSTER) == []
    demand = replica_demand(PRODUCTION)
    gpu_worker = CLUSTER["available_node_types"]["gpu_worker"]
    # One GPU per model replica, at max replicas every GPU worker is used at most once.
    assert demand["max"]["GPU"] == sum(m.deployment.max_replicas for m in PRODUCTION.models)
    assert demand["max"]["GPU"] <= gpu_worker["max_workers"] * gpu_worker["resources"]["GPU"]
    assert "copyserve[gpu]" in " ".join(CLUSTER["setup_commands"])


def test_capacity_problems_name_what_does_not_fit():
    small = yaml.safe_load(yaml.safe_dump(CLUSTER))
    small["available_node_types"]["gpu_worker"]["max_workers"] = 2
    problems = capacity_problems(PRODUCTION, small)
    assert any("at max replicas the deployments need 10 GPU" in p and "has 2" in p for p in problems)
    no_gpu = yaml.safe_load(yaml.safe_dump(CLUSTER))
    no_gpu["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0
    assert any("no node type has room for one replica of model qwen3-4b-instruct" in p
               for p in capacity_problems(PRODUCTION, no_gpu))


def test_a_file_that_is_not_a_cluster_config_is_refused(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("models: []\n")
    with pytest.raises(ConfigError, match="not a Ray cluster launcher config"):
        load_cluster(bad)
