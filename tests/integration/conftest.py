"""One real copyserve app per test session: local Ray, Serve, three real vLLM engines."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve

from finetune.embedded_models import prepare
from serve_app.builder import build_app, model_deployment_name
from serve_app.config import load_config, models_home

CONFIG = Path(__file__).parent.parent / "configs" / "integration.yaml"


@pytest.fixture(scope="session")
def app_config():
    prepare(models_home())  # idempotent: the set-up script has normally done this already
    return load_config(CONFIG)


@pytest.fixture(scope="session")
def base_url(app_config):
    server = app_config.server
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    serve.start(http_options={"host": server.host, "port": server.port})
    started = time.monotonic()
    serve.run(build_app(app_config), name=server.app_name, route_prefix="/")
    print(f"\n[integration] app with {len(app_config.models)} vLLM engines up in {time.monotonic() - started:.0f}s")
    yield f"http://{server.host}:{server.port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def model_handle(base_url, app_config):
    """A handle straight to a model deployment, to ask its replica what the engine is doing."""

    def get(model: str):
        return serve.get_deployment_handle(model_deployment_name(model), app_name=app_config.server.app_name)

    return get
