"""The FastAPI ingress, the one HTTP deployment: HTTP only. It validates requests and hands them to the
copy pipeline or, for the OpenAI API, to the routed ModelServer; it shapes JSON and SSE answers and
maps errors. Each endpoint family is a mixin in its own module, its routes on an APIRouter that declares
who may call them (the dependencies in access.py):

    copy_api.py       /v1/copy, /v1/copy/revise
    openai_api.py     /v1/chat/completions, /v1/completions (wire format: openai_format.py)
    discovery_api.py  /v1/models, /v1/usage, /healthz, /openapi.json, /docs, the studio at /
    admin_api.py      /v1/routes, /v1/models/{model}/weights, /v1/keys
    releases_api.py   /v1/adapters: versions, aliases, promote, rollback, history, evaluation
    policy_api.py     /v1/adapters/{name}/policy: automatic promote and rollback
    batches_api.py    /v1/files, /v1/batches (the OpenAI Batch API; lines run in batch_runner.py)

The FastAPI app itself (error handlers, middleware) is ``api_app.py``."""

from __future__ import annotations

import asyncio

from ray import serve
from ray.serve.handle import DeploymentHandle

from contracts.config import AppConfig
from contracts.errors import ConflictError, InvalidRequestError
from contracts.process import freeze_startup_heap
from deployments.releases.adapters import AdapterRef, serves_merged
from deployments.releases.autopilot import Autopilot
from deployments.releases.merged_weights import ActiveWeights, PendingRolls, serves_named
from deployments.router import Router
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.state.adapter_policy import ReleasePolicies
from deployments.state.adapter_releases import AdapterRegistry
from deployments.state.batches import BatchStore
from deployments.state.cache import ResponseCache
from deployments.state.keys import KeyStore
from deployments.state.ratelimit import RateLimiter
from deployments.state.routes import LiveRoutes
from deployments.state.sessions import SessionStore
from deployments.state.store import RedisStore
from serve_app import (
    access,
    admin_api,
    batches_api,
    copy_api,
    discovery_api,
    openai_api,
    policy_api,
    releases_api,
    weights_roll,
)
from serve_app.access import AccessControl
from serve_app.admin_api import AdminAPI
from serve_app.api_app import app
from serve_app.batch_runner import BatchRunner
from serve_app.batches_api import BatchesAPI
from serve_app.copy_api import CopyAPI
from serve_app.copy_pipeline import CopyPipeline
from serve_app.discovery_api import DiscoveryAPI
from serve_app.http import configure_edge
from serve_app.openai_api import OpenAIAPI
from serve_app.openapi_doc import live_openapi
from serve_app.policy_api import PolicyAPI
from serve_app.releases_api import ReleasesAPI
from serve_app.shadow import ShadowRunner
from serve_app.weights_follow import AliasFollower

# Each family's router carries its access dependency (``access.caller``, ``admin``, ``docs_reader``). Included
# before serve.ingress below, which turns the app's routes into methods of the ingress.
for family in (admin_api.keyed, admin_api.admin_only, batches_api.router, copy_api.router, discovery_api.public,
               discovery_api.router, openai_api.router, releases_api.keyed, releases_api.admin_only, policy_api.keyed,
               policy_api.admin_only):
    app.include_router(family)


@serve.ingress(app)
class Ingress(CopyAPI, OpenAIAPI, DiscoveryAPI, AdminAPI, ReleasesAPI, PolicyAPI, BatchesAPI):
    """The one HTTP deployment: holds the handles and the Redis stores; each endpoint family is a mixin."""

    def __init__(self, models: dict[str, DeploymentHandle], polish: DeploymentHandle, sentiment: DeploymentHandle,
                 config: AppConfig):
        self.models = models
        # Handles made with .options() are cached: each call would otherwise build a new handle
        # (and a new connection to the controller) per request.
        self.streaming = {name: h.options(stream=True) for name, h in models.items()}
        self.config = config
        self.redis = RedisStore(config.redis)
        # The router runs here, not behind a handle: its state is the config and Redis, its work a template
        # render, and a hop would cost every request ~8-11 ms (bench/compare.py).
        self.router = Router(config, self.redis)
        self.cache = ResponseCache(self.redis, config.cache)
        self.sessions = SessionStore(self.redis, config.sessions)
        self.keys = KeyStore(self.redis, config.auth.outage_grace_s)
        self.adapters = AdapterRegistry(self.redis)
        self.evaluation = AdapterEvaluation(self.redis)
        self.policies = ReleasePolicies(self.redis)
        self.autopilot = Autopilot(self.adapters, self.evaluation, self.policies)
        self.evaluation.on_written = self.autopilot.poke  # each write of evidence may move an alias
        self.active_weights = ActiveWeights(self.redis)
        self.live_routes = LiveRoutes(self.redis)
        self.pending_rolls = PendingRolls(self.redis)
        # Every ingress replica finishes weights rolls (any of them may have started one, and may be gone),
        # and starts one when an alias a model follows moves (a promote, a rollback).
        if any(serves_merged(m) for m in config.models):
            follower = AliasFollower(config, self.adapters, self.active_weights, self.pending_rolls)
            self._weights = [asyncio.get_running_loop().create_task(task.run()) for task in
                             (weights_roll.Settler(config, self.pending_rolls), follower)]
        self.access = AccessControl(self.keys, RateLimiter(self.redis, config.auth.window_s), config.auth)
        self.pipeline = CopyPipeline(self.router, models, self.streaming, polish, sentiment, self.sessions)
        self.shadows = ShadowRunner(self.pipeline, self.adapters, self.evaluation, config.server.shadow_max_in_flight)
        self.batches = BatchStore(self.redis, config.batch)
        # Every ingress replica runs batches (a few lines at a time); a batch is held by one replica at once.
        if self.redis.client is not None:
            runner = BatchRunner(self.batches, self.keys, self._run_batch_line, config.batch)
            self._batch_runner = asyncio.get_running_loop().create_task(runner.run())
        self._openapi = live_openapi(app.openapi, config)  # names this config's industries and models
        self._public_docs = config.server.public_docs or not config.auth.enabled
        access.install(self.access, self._public_docs)  # for the routes' dependencies
        # Without API keys, the Host check stands between this service and any web page (DNS rebinding).
        configure_edge(config.server.max_body_bytes, None if config.auth.enabled else
                       frozenset(h.lower() for h in config.server.allowed_hosts), config.batch.max_file_bytes)
        freeze_startup_heap()

    # --- shared by the endpoint families ---------------------------------------------------------

    async def _adapter(self, spec: str, model: str) -> AdapterRef | None:
        """The adapter version to apply per request (``name``, ``name@alias``, ``name@vN``, ``name@<digest>``),
        read from the registry on every request: an alias moved on any replica applies from the next request.
        None for a merged adapter, which the model's weights already are."""
        adapter = await self.adapters.resolve(spec)
        if adapter.base_model != model:
            raise InvalidRequestError(f"adapter {spec!r} is for model {adapter.base_model}, but this request is "
                                      f"served by {model}", "adapter")
        if adapter.kind == "merged":
            active, follows = await self.active_weights.followed(model)
            if not serves_named(active, follows, adapter, spec):
                raise ConflictError(f"adapter {spec!r} ({adapter.ref.tag}) is merged weights and model {model} serves "
                                    f"{active.tag if active else 'its base weights'}: activate it first with "
                                    f"PUT /v1/models/{model}/weights", "adapter")
            return None
        return adapter.ref

    async def _merged_weights(self, model: str) -> AdapterRef | None:
        """The merged adapter a model serves (for cache keys); None for base weights or LoRA models."""
        if not serves_merged(self.config.model(model)):
            return None
        return await self.active_weights.get(model)
