"""A real multi-node Ray cluster on this machine: `ray start --head` plus worker nodes, each its own
`ray start --block` process with its own ports, so it lives beside the suite's local Ray and stops
cleanly (SIGTERM drains the node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.helpers import free_port

BIN = Path(sys.executable).parent
# Replicas and handles report load every 0.5 s instead of 10 s, so autoscaling reacts within a test.
FAST_METRICS = {"RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
                "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}


class LocalCluster:
    def __init__(self, folder: Path):
        self.folder, self.nodes = folder, []
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        # Token auth is Ray's default for `ray start`; a throwaway cluster on localhost goes without it.
        self.env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **FAST_METRICS,
                    "RAY_AUTH_MODE": "disabled"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], worker_ports: int) -> None:
        ports = ["--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
                 "--metrics-export-port", free_port(), "--runtime-env-agent-port", free_port(),
                 "--min-worker-port", worker_ports, "--max-worker-port", worker_ports + 999]
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the node's process writes it until stopped
        self.nodes.append(subprocess.Popen(
            [BIN / "ray", "start", "--block", "--disable-usage-stats", *args, *map(str, ports)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def start_head(self, num_cpus: float) -> None:
        self._start("head", ["--head", "--port", str(self.gcs_port), "--dashboard-port", str(self.dashboard_port),
                             "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
                             "--ray-client-server-port", str(free_port()), "--num-cpus", str(num_cpus)], 20000)

    def add_worker(self, num_cpus: float, resources: dict[str, float]) -> None:
        self._start(f"worker{len(self.nodes)}", ["--address", self.address, "--num-cpus", str(num_cpus),
                                                 "--resources", json.dumps(resources)], 20000 + 1000 * len(self.nodes))

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A command against this cluster (never the suite's own Ray)."""
        return subprocess.run([str(c) for c in command], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def alive_nodes(self) -> list[dict]:
        """The live nodes, from the head's state API (an HTTP call; a Ray driver per poll would cost seconds
        of CPU that the starting nodes need). Empty until the head's dashboard answers."""
        try:
            r = httpx.get(f"{self.dashboard}/api/v0/nodes", params={"detail": "true"}, timeout=10)
            nodes = r.json()["data"]["result"]["result"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []
        return [{"id": n["node_id"], "resources": n["resources_total"]} for n in nodes if n["state"] == "ALIVE"]

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            nodes = self.alive_nodes()
            if len(nodes) >= count:
                return nodes
            time.sleep(1)
        raise RuntimeError(f"{count} Ray nodes did not come up; see logs in {self.folder}")

    def stop(self) -> None:
        # Serve first, or the head waits out its drain timeout for the Serve actors. Through the head's REST
        # API, as `serve shutdown` does once it has started (seconds of imports here).
        try:
            httpx.delete(f"{self.dashboard}/api/serve/applications/", timeout=120)
        except httpx.HTTPError:
            pass  # the head is already gone: nothing of Serve is left to drain
        for process in reversed(self.nodes):  # workers first, then the head
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        # `ray start --head` records its address for later `ray.init()` calls; do not leave a dead one behind.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{self.gcs_port}"):
            current.unlink()
