"""One real copyserve app per test session: local Ray, Serve, three real vLLM engines, and a
redis-server of the session's own on a free port (tests stop and restart it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import ray
import redis
from ray import serve

from contracts.config import load_config, models_home
from deployments.model_server import deployment_name
from deployments.state.keys import KeyStore
from deployments.state.store import RedisStore
from finetune.config import TrainConfig
from finetune.embedded_models import prepare
from finetune.train import train
from serve_app import serve_control
from serve_app.builder import local_ray_env
from serve_app.serve_config import build_serve_config
from serve_app.worker_setup import serving_runtime_env
from tests.integration.helpers import free_port, write_dataset

CONFIG = Path(__file__).parent.parent / "configs" / "integration.yaml"
METRICS_REPORT_MS = 1000  # how often replicas hand their metrics to Ray's exporter in the tests


class RedisServer:
    """A real redis-server the tests own; it saves on shutdown so keys survive a restart."""

    def __init__(self, folder: Path):
        self.port, self.folder, self.process = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        try:
            redis.Redis(port=self.port).shutdown(save=True)
        except redis.ConnectionError:
            pass  # shutdown closes the connection it was sent on
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="session")
def app_config(redis_server, tmp_path_factory):
    prepare(models_home())  # idempotent: the set-up script has normally done this already
    config = load_config(CONFIG)
    redis_config = config.redis.model_copy(update={"url": redis_server.url,
                                                   "key_prefix": f"copyserve-test-{uuid.uuid4().hex[:8]}:"})
    # Adapters are trained into pytest's temporary folders: the one root registration may read.
    server = config.server.model_copy(update={"metrics_port": free_port(),
                                              "adapter_roots": [str(tmp_path_factory.getbasetemp())]})
    batch = config.batch.model_copy(update={"files_dir": str(tmp_path_factory.mktemp("batch-files"))})
    return config.model_copy(update={"redis": redis_config, "server": server, "batch": batch})


@pytest.fixture(scope="session")
def make_key(app_config):
    """Create an API key straight in Redis, as `copyserve keys create` does."""

    def make(role: str = "user", **limits) -> tuple[str, str]:
        async def create():
            store = RedisStore(app_config.redis)
            try:
                key, secret = await KeyStore(store).create(role, f"test-{role}", **limits)
            finally:
                await store.close()
            return key.id, secret

        # In a thread of its own: a browser test's page (Playwright's sync API) keeps an event loop running here.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, create()).result()

    return make


@pytest.fixture(scope="session")
def user_key(make_key) -> str:
    return make_key("user")[1]


@pytest.fixture(scope="session")
def admin_key(make_key) -> str:
    return make_key("admin")[1]


@pytest.fixture(scope="session")
def base_url(app_config):
    server = app_config.server
    os.environ["RAY_metrics_report_interval_ms"] = str(METRICS_REPORT_MS)  # Ray's default is 10 s
    os.environ.update(local_ray_env(app_config))  # as `copyserve serve` starts its Ray
    ray.init(address="local", num_cpus=6, include_dashboard=False, logging_level="WARNING",
             runtime_env=serving_runtime_env(), _metrics_export_port=server.metrics_port)
    serve.start(http_options={"host": server.host, "port": server.port})
    started = time.monotonic()
    # Deployed from a Serve config, as `copyserve serve` does: later changes roll single deployments.
    serve_control.deploy(build_serve_config(app_config))
    serve_control.wait_until_running(server.app_name, timeout_s=600)
    print(f"\n[integration] app with {len(app_config.models)} vLLM engines up in {time.monotonic() - started:.0f}s")
    yield f"http://{server.host}:{server.port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def client(base_url, user_key):
    """An HTTP client carrying a user key."""
    with httpx.Client(base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {user_key}"}) as c:
        yield c


@pytest.fixture(scope="session")
def admin(base_url, admin_key):
    """An HTTP client carrying an admin key."""
    with httpx.Client(base_url=base_url, timeout=120, headers={"Authorization": f"Bearer {admin_key}"}) as c:
        yield c


@pytest.fixture(scope="session")
def model_handle(base_url, app_config):
    """A handle straight to a model deployment, to ask its replica what the engine is doing."""

    def get(model: str):
        return serve.get_deployment_handle(deployment_name(model), app_name=app_config.server.app_name)

    return get


ADAPTER_ROWS = [(f"Travel mug {i}", "leak-proof|hot", f"Mug {i} keeps coffee hot for hours. Leak-proof lid. Buy now.")
                for i in range(12)]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two versions of a tiny-qwen3 adapter that differ (different seeds): trained once for the adapter tests."""
    folder = tmp_path_factory.mktemp("adapters")
    data = write_dataset(folder / "mugs.csv", ADAPTER_ROWS)
    base = prepare(models_home(), ("tiny-qwen3",))["tiny-qwen3"]
    out = {}
    for version, seed in (("v1", 0), ("v2", 1)):
        out[version] = folder / version
        train(TrainConfig(base_model=base, family="qwen3", data=data, output=out[version], industry="finance",
                          rank=4, epochs=2, batch_size=4, learning_rate=2e-2, max_length=160, seed=seed),
              progress=False)
    return out
