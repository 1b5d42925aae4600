"""copyserve config → Serve config (the file `serve deploy` takes, and what `copyserve serve` deploys).

The copyserve config travels inline as the application's ``args``; the deployments section repeats
every deployment's options so platform teams can read and tune them in one file. Deploying from a
config (rather than ``serve.run``) gives each deployment a stable code version, so a later change
to one deployment's options rolls only that deployment's replicas.
"""

from __future__ import annotations

from typing import Any

from ray.serve.schema import ServeDeploySchema

from contracts.config import AppConfig
from serve_app.builder import deployment_specs

APP_IMPORT_PATH = "serve_app.builder:app_builder"


def build_serve_config(config: AppConfig, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated Serve deploy config (plain dict, ready for YAML) for this copyserve config."""
    server = config.server
    app: dict[str, Any] = {
        "name": server.app_name,
        "route_prefix": server.route_prefix,
        "import_path": APP_IMPORT_PATH,
        # Only what the file set: defaults stay defaults, and autoscaling is not met by a default num_replicas.
        "args": {"config": config.model_dump(mode="json", exclude_unset=True)},
        "deployments": [{"name": name, **options} for name, options in deployment_specs(config).items()],
    }
    if runtime_env:
        app["runtime_env"] = runtime_env
    serve_config = {
        "proxy_location": server.proxy_location,
        "http_options": {"host": server.host, "port": server.port, "request_timeout_s": server.request_timeout_s},
        "applications": [app],
    }
    ServeDeploySchema.model_validate(serve_config)  # a bug here should fail now, not in the controller
    return serve_config
