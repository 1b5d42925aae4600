"""The HTTP front door, post-processing, Redis, cache, API keys and sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from contracts.config.base import SLUG, Strict
from contracts.config.models import DeploymentOptions


class ServerConfig(Strict):
    """HTTP front door and the Serve deployments that are not model servers."""

    host: str = Field("127.0.0.1", description="Address the Serve HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port the Serve HTTP proxy binds.")
    app_name: str = Field("copyserve", pattern=SLUG, description="Serve application name.")
    route_prefix: str = Field("/", description="HTTP prefix of the app.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    request_timeout_s: float = Field(300, gt=0, description="Serve proxy timeout for one request.")
    metrics_port: int = Field(8080, ge=1, le=65535, description="Port where the local Ray started by `copyserve "
                              "serve` exports Prometheus metrics (on a cluster: `ray start --metrics-export-port`).")
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode", description="Where Serve runs HTTP proxies: every node (behind a load balancer) or the head.")
    default_language: Literal["en", "zh"] = Field("en", description="Copy language when a request gives none.")
    templates_dir: str | None = Field(None, description="Folder of prompt templates; defaults to the built-in set.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="With auth off, the Host names answered besides IP addresses and localhost: a page on another "
                    "site cannot reach a keyless instance by pointing a name at it (DNS rebinding).")
    worker_niceness: int = Field(
        0, ge=0, le=19,
        description="Niceness of Ray's worker processes (every replica, and the vLLM engine processes a model "
                    "replica starts) on a Ray that copyserve starts itself. Ray's default, 15, puts a CPU engine "
                    "behind every other process on the host: on 2 cores it cost 15% of tokens/s and +45 ms to the "
                    "first token (bench/compare.py). 0 is plain vLLM's priority. A cluster's `ray start` keeps "
                    "Ray's own setting (RAY_worker_niceness in its environment).")
    public_docs: bool = Field(
        False, description="With auth on, serve /docs and /openapi.json without a key (they name every route, "
                           "industry and model); otherwise /openapi.json takes a key and /docs is not served.")
    adapter_roots: list[str] = Field(
        default_factory=lambda: ["adapters"], min_length=1,
        description="Folders adapter registration may read from (relative ones: from where the service starts); "
                    "a path outside them is refused without saying whether it exists.")
    shadow_max_in_flight: int = Field(
        4, ge=0, le=256,
        description="Shadow copies (a live route's `shadow` share) one ingress replica writes at once; past it a "
                    "shadow is skipped and counted (copyserve_shadow_copies, outcome busy). 0: no shadows.")
    ingress: DeploymentOptions = Field(default_factory=DeploymentOptions)

    @model_validator(mode="before")
    @classmethod
    def _no_router_deployment(cls, data: Any) -> Any:
        if isinstance(data, dict) and "router" in data:
            raise ValueError("server.router: the router runs inside the ingress now (no deployment of its own); "
                             "remove this key and size server.ingress instead")
        return data

    @field_validator("route_prefix")
    @classmethod
    def _prefix_starts_with_slash(cls, prefix: str) -> str:
        if not prefix.startswith("/"):
            raise ValueError('route_prefix must start with "/"')
        return prefix

    @field_validator("adapter_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[str]) -> list[str]:
        # Made absolute where the config is loaded (where the service starts), before replicas get it.
        return [str(Path(root).expanduser().resolve()) for root in roots]


class PolishConfig(Strict):
    """The grammar-polish deployment: rule-based, or a model rewrite followed by the rules."""

    mode: Literal["rules", "llm"] = Field("rules", description="`llm` first rewrites through `llm_model`.")
    llm_model: str | None = Field(None, description="Model (from `models`) that rewrites in `llm` mode.")
    llm_max_tokens: int = Field(256, ge=1, description="Budget of the rewrite.")
    rules_file: str | None = Field(None, description="Compliance rules YAML; defaults to the built-in file.")
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)


class SentimentConfig(Strict):
    """The sentiment deployment: an offline lexicon default, or transformers classifiers."""

    backend: Literal["lexicon", "transformers"] = Field(
        "lexicon", description="`lexicon`: TextBlob (en) and SnowNLP (zh), offline; `transformers`: `models`."
    )
    models: dict[Literal["en", "zh"], str] = Field(
        default_factory=dict, description="Text-classification model (folder or hub id) per language."
    )
    max_batch_size: int = Field(16, ge=1, le=1024, description="Texts scored in one batch.")
    batch_wait_timeout_s: float = Field(
        0, ge=0, le=5, description="How long a batch waits to fill. 0: a lone request is scored at once, and "
        "requests that arrive while a batch is scored make up the next one (waiting would add this to every "
        "copy at low load).")
    deployment: DeploymentOptions = Field(default_factory=DeploymentOptions)

    @model_validator(mode="after")
    def _models_for_transformers(self) -> SentimentConfig:
        if self.backend == "transformers" and set(self.models) != {"en", "zh"}:
            raise ValueError("the transformers backend needs `models` for both `en` and `zh`")
        return self


class RedisConfig(Strict):
    """Redis holds the running state every replica shares; without it the service still answers."""

    enabled: bool = Field(True, description="False: no cache, keys or shared limits (local experiments only).")
    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL.")
    timeout_s: float = Field(0.25, gt=0, le=10, description="Per-call timeout; past it the call fails open.")
    retry_after_s: float = Field(2.0, gt=0, le=600, description="While down, how often to try Redis again.")
    key_prefix: str = Field("copyserve:", min_length=1, description="Prefix of every key this service writes.")

    @property
    def safe_url(self) -> str:
        """The URL for logs and banners: a password in it is masked."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


class CacheConfig(Strict):
    enabled: bool = Field(True, description="Cache reproducible /v1/copy answers in Redis.")
    ttl_s: int = Field(3600, ge=1, le=30 * 86400, description="How long a cached answer lives.")


class RateLimit(Strict):
    requests_per_window: int | None = Field(None, ge=1, description="Requests per key per window; None: unlimited.")
    tokens_per_window: int | None = Field(None, ge=1, description="Prompt + completion tokens per key per window.")


class AuthConfig(Strict):
    """API keys (``copyserve keys create``): Bearer tokens with a role, stored hashed in Redis."""

    enabled: bool = Field(True, description="False lets anyone call every endpoint; shown in /healthz and at start.")
    rate_limits: dict[Literal["user", "admin"], RateLimit] = Field(
        default_factory=lambda: {"user": RateLimit(requests_per_window=120, tokens_per_window=60_000)},
        description="Limits per key, by role (a key may carry its own).")
    window_s: int = Field(60, ge=1, le=86400, description="The sliding window the rate limits count over.")
    outage_grace_s: int = Field(
        600, ge=0, le=86400,
        description="While Redis is down, a key this replica verified within this many seconds still works (a "
                    "key revoked just before the outage too, for that long); 0 refuses every key (503) instead.")


class SessionConfig(Strict):
    ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="A chat session expires this long after its last turn.")
    max_turns: int = Field(10, ge=1, le=100, description="Turns kept per session (older ones are dropped).")


class BatchConfig(Strict):
    """The OpenAI Batch API: uploaded JSONL files run line by line beside live traffic."""

    files_dir: str = Field(
        "batch-files",
        description="Where uploaded and result files are kept: a local folder (relative: from where the service "
                    "starts) or an fsspec URL for object storage (s3://bucket/prefix, gs://..., az://...; install "
                    "the object-storage extra). Credentials come from the environment or fsspec's own config, "
                    "never from this file.")
    max_file_bytes: int = Field(50_000_000, ge=1024, description="Larger uploads get 413.")
    max_lines: int = Field(50_000, ge=1, description="Requests one batch may hold.")
    concurrency: int = Field(2, ge=1, le=256, description="Lines of one batch in flight at once, per ingress replica: "
                                                         "the cap that keeps live traffic fast.")
    lease_s: int = Field(30, ge=5, le=3600, description="A runner holds a batch this long between renewals; a runner "
                                                      "that died gives it up to another after this.")
    ttl_s: int = Field(30 * 86400, ge=3600, description="Files and batches are kept this long.")
    unavailable_retry_s: int = Field(
        600, ge=0, le=86400, description="How long a line that meets a 503 (a model replica being replaced, its "
        "queue full, Redis away for the token reservation) is run again, after each answer's Retry-After, before "
        "its 503 is recorded as the line's answer: the platform's trouble, not the line's. 0: recorded at once.")
