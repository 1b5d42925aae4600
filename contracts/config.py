"""The app's configuration: a pydantic schema, loaded from YAML and validated once at start.

The YAML file is the starting state of the service; everything the deployments need is read from
here (no ``os.environ`` in business logic). A bad file fails with the field path and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SLUG = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
EMBEDDED_PREFIX = "embedded:"
DEFAULT_HOME = Path.home() / ".cache" / "copyserve"


class ConfigError(ValueError):
    """A config file that cannot be served; the message names the field and the fix."""


class Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(Strict):
    """vLLM engine arguments we know and check; anything else goes through ``engine_kwargs``."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight and activation dtype. fp32 decodes ~4x faster than bf16 on AVX2-only CPUs."
    )
    max_model_len: int = Field(2048, ge=64, le=1_048_576, description="Context length: prompt plus completion.")
    kv_cache_space_gib: float | None = Field(
        None, gt=0, le=1024, description="KV cache size in GiB on CPU engines (VLLM_CPU_KVCACHE_SPACE)."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Fraction of GPU memory vLLM may use.")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs per replica for tensor parallelism.")
    max_num_seqs: int = Field(64, ge=1, le=4096, description="Most sequences decoded in one batch.")
    enable_lora: bool = Field(False, description="Serve LoRA adapters per request (Qwen3/Llama only).")
    max_lora_rank: int = Field(16, ge=1, le=512, description="Largest adapter rank the engine accepts.")
    max_loras: int = Field(4, ge=1, le=256, description="Adapters resident in one batch.")
    cpu_omp_threads_bind: str = Field(
        "auto", description="CPU engines: VLLM_CPU_OMP_THREADS_BIND (`auto`, `nobind`, or core ids like `0-1`). "
        "`nobind` lets several engines share a small machine."
    )
    enforce_eager: bool = Field(True, description="Skip CUDA graph / compile warm-up (faster start, slower decode).")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Raw extra vLLM AsyncEngineArgs.")


class AutoscalingOptions(Strict):
    """Serve replica autoscaling: replicas follow the requests in flight per replica."""

    min_replicas: int = Field(1, ge=0, le=1024, description="Fewest replicas; 0 scales to zero (cold starts).")
    max_replicas: int = Field(..., ge=1, le=1024, description="Most replicas.")
    initial_replicas: int | None = Field(None, ge=0, le=1024, description="Replicas at first deploy (min if unset).")
    target_ongoing_requests: float = Field(
        2, gt=0, le=100_000, description="Requests in flight (running + queued) per replica that Serve aims for.")
    upscale_delay_s: float = Field(30, ge=0, le=86_400, description="Load must stay high this long to add replicas.")
    downscale_delay_s: float = Field(600, ge=0, le=86_400, description="Load must stay low this long to remove one.")
    look_back_period_s: float = Field(30, gt=0, le=3600, description="Window the load is averaged over.")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must lie in min_replicas..max_replicas "
                             f"({self.min_replicas}..{self.max_replicas})")
        return self


class DeploymentOptions(Strict):
    """Ray Serve options for one deployment; merged over the defaults of ``DEFAULT_DEPLOYMENT_OPTIONS``."""

    num_replicas: int = Field(1, ge=1, le=1024, description="Fixed replica count (leave out with `autoscaling`).")
    autoscaling: AutoscalingOptions | None = Field(None, description="Scale replicas with load instead.")
    max_ongoing_requests: int = Field(64, ge=1, le=100_000, description="Requests one replica works on at once.")
    max_queued_requests: int = Field(
        -1, ge=-1, le=1_000_000, description="Requests callers may queue for this deployment; beyond it they get "
        "503 with Retry-After. -1: unbounded."
    )
    retry_after_s: float = Field(1.0, ge=0, le=3600, description="Retry-After sent with those 503s.")
    graceful_shutdown_timeout_s: float = Field(
        30, ge=0, le=3600, description="On scale-down or redeploy, how long a replica may finish its requests.")
    access_log: bool | None = Field(
        None, description="Serve's per-request access log line. Unset: on for the ingress (one line per HTTP "
        "request), off for the internal deployments, which would log every request again per hop.")
    health_check_period_s: float | None = Field(
        None, gt=0, le=3600, description="How often Serve checks a replica (a model replica checks its engine); "
        "a dead one is replaced after a failed check. Unset: 10 s, 15 s for models.")
    health_check_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="How long one health check may take. Unset: 30 s, 60 s for models.")
    num_cpus: float = Field(0.1, ge=0, le=256, description="Ray CPUs reserved per replica (fractional is fine).")
    num_gpus: float = Field(0, ge=0, le=64, description="GPUs per replica; 0 on the CPU profile.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per replica "
                                        "(pin a deployment to nodes that offer them).")

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentOptions:
        if self.autoscaling is not None and "num_replicas" in self.model_fields_set:
            raise ValueError("give num_replicas (fixed) or autoscaling, not both")
        if self.autoscaling is not None and self.autoscaling.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(f"autoscaling.target_ongoing_requests ({self.autoscaling.target_ongoing_requests}) is "
                             f"above max_ongoing_requests ({self.max_ongoing_requests}): replicas could never reach it")
        return self

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.num_replicas


class ModelConfig(Strict):
    """One model deployment: a vLLM engine over one set of weights."""

    name: str = Field(..., pattern=SLUG, description="Model id used in routes and as the OpenAI `model` name.")
    family: Literal["gptj", "qwen3", "llama"] = Field(..., description="Architecture family; decides LoRA support.")
    source: str = Field(
        ..., min_length=1, description="Local folder, `embedded:<name>` (prepared by `copyserve models prepare`), "
        "or a hub id such as `Qwen/Qwen3-4B-Instruct-2507`."
    )
    tokenizer: str | None = Field(None, description="Tokenizer folder or hub id when not beside the weights.")
    chat_template: str | None = Field(
        None, description="Jinja chat template file for models whose tokenizer has none (base models like GPT-J)."
    )
    default_max_tokens: int = Field(256, ge=1, description="Completion budget when a request gives none.")
    stream_interval_ms: float = Field(
        50, ge=0, le=1000, description="Token deltas of one request are sent from the model replica at most this "
        "often (the first at once): a GPU engine's per-step deltas would cost the ingress more than the engine. "
        "0 sends every engine step.")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    deployment: DeploymentOptions = Field(default_factory=lambda: DeploymentOptions(num_cpus=1))

    @model_validator(mode="after")
    def _check_lora_family(self) -> ModelConfig:
        if self.engine.enable_lora and self.family == "gptj":
            raise ValueError(
                "engine.enable_lora: vLLM has no LoRA kernels for GPT-J; serve GPT-J adapters merged "
                "(finetune --merge) and set enable_lora: false"
            )
        if self.default_max_tokens >= self.engine.max_model_len:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) must be below engine.max_model_len "
                f"({self.engine.max_model_len}) to leave room for the prompt"
            )
        return self


class QualityConfig(Strict):
    """The quality gate of one route: regenerate copy whose sentiment is below the floor."""

    sentiment_floor: float | None = Field(
        None, ge=0, le=1, description="Lowest acceptable sentiment score (0 negative .. 1 positive); None: no gate."
    )
    max_retries: int = Field(0, ge=0, le=5, description="Regenerations (with new seeds) allowed below the floor.")


class RouteConfig(Strict):
    """An industry: the model that writes its copy and the prompt template it uses."""

    industry: str = Field(..., pattern=SLUG, description="Industry id, e.g. `ecommerce`.")
    aliases: list[str] = Field(default_factory=list, description="Other names clients may use: `电商`, `e-commerce`.")
    model: str = Field(..., description="Name of a model in `models`.")
    template: str | None = Field(None, description="Prompt template file (without .yaml); defaults to the industry.")
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("aliases")
    @classmethod
    def _aliases_not_blank(cls, aliases: list[str]) -> list[str]:
        if any(not a.strip() for a in aliases):
            raise ValueError("aliases must not be blank")
        return [a.strip() for a in aliases]

    @property
    def template_name(self) -> str:
        return self.template or self.industry


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
    adapter_roots: list[str] = Field(
        default_factory=lambda: ["adapters"], min_length=1,
        description="Folders adapter registration may read from (relative ones: from where the service starts); "
                    "a path outside them is refused without saying whether it exists.")
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


class SessionConfig(Strict):
    ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="A chat session expires this long after its last turn.")
    max_turns: int = Field(10, ge=1, le=100, description="Turns kept per session (older ones are dropped).")


class AppConfig(Strict):
    """The whole service: server options, model deployments and industry routes."""

    redis: RedisConfig = Field(default_factory=RedisConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    sessions: SessionConfig = Field(default_factory=SessionConfig)

    server: ServerConfig = Field(default_factory=ServerConfig)
    polish: PolishConfig = Field(default_factory=PolishConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    models: list[ModelConfig] = Field(..., min_length=1)
    routes: list[RouteConfig] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> AppConfig:
        names = [m.name for m in self.models]
        _no_duplicates("models", names)
        _no_duplicates("routes", [r.industry for r in self.routes])
        if self.polish.mode == "llm" and self.polish.llm_model not in names:
            raise ValueError(f"polish.llm_model: `llm` mode needs one of the models ({', '.join(names)}), "
                             f"got {self.polish.llm_model!r}")
        for i, route in enumerate(self.routes):
            if route.model not in names:
                raise ValueError(f"routes.{i}.model: unknown model {route.model!r}; known models: {', '.join(names)}")
        seen: dict[str, str] = {}
        for route in self.routes:
            for key in [route.industry, *route.aliases]:
                folded = key.casefold()
                if seen.setdefault(folded, route.industry) != route.industry:
                    raise ValueError(f"routes.{route.industry}.aliases: {key!r} is used by both "
                                     f"{seen[folded]!r} and {route.industry!r}")
                if folded in {n.casefold() for n in names} and key != route.industry:
                    raise ValueError(f"alias {key!r} of route {route.industry!r} is also a model name")
        return self

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)


def _no_duplicates(what: str, keys: list[str]) -> None:
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"{what}: duplicate names {dupes}")


def models_home() -> Path:
    """Where `copyserve models prepare` writes embedded models (``COPYSERVE_HOME`` overrides)."""
    return Path(os.environ.get("COPYSERVE_HOME", DEFAULT_HOME)) / "models"


def resolve_source(source: str, base_dir: Path) -> str:
    """Turn ``embedded:<name>`` and relative paths into absolute folders; hub ids pass through."""
    if source.startswith(EMBEDDED_PREFIX):
        return str(models_home() / source[len(EMBEDDED_PREFIX):])
    if source.startswith((".", "/", "~")):
        return str((base_dir / Path(source).expanduser()).resolve())
    return source


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> AppConfig:
    """Validate a config mapping; relative model paths are resolved against ``base_dir``."""
    base_dir = base_dir or Path.cwd()
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config:\n{_format_validation_error(err)}") from None
    models = []
    for m in config.models:
        updates: dict[str, Any] = {"source": resolve_source(m.source, base_dir)}
        if m.tokenizer:
            updates["tokenizer"] = resolve_source(m.tokenizer, base_dir)
        if m.chat_template:
            updates["chat_template"] = resolve_source(m.chat_template, base_dir)
        models.append(m.model_copy(update=updates))
    server = config.server
    if server.templates_dir:  # always a folder: relative to the config file, whatever its spelling
        templates_dir = (base_dir / Path(server.templates_dir).expanduser()).resolve()
        server = server.model_copy(update={"templates_dir": str(templates_dir)})
    sentiment = config.sentiment.model_copy(
        update={"models": {k: resolve_source(v, base_dir) for k, v in config.sentiment.models.items()}})
    polish = config.polish
    if polish.rules_file:
        polish = polish.model_copy(update={"rules_file": str((base_dir / Path(polish.rules_file)).resolve())})
    return config.model_copy(update={"models": models, "server": server, "sentiment": sentiment, "polish": polish})


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a YAML config file; raises ConfigError with the field path on any problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with `models` and `routes`")
    try:
        return parse_config(data, base_dir=path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def check_local_sources(config: AppConfig) -> None:
    """Fail early when a local model folder is missing, with the command that creates it."""
    for i, m in enumerate(config.models):
        if Path(m.source).is_absolute() and not Path(m.source).is_dir():
            hint = " (run `copyserve models prepare`)" if str(models_home()) in m.source else ""
            raise ConfigError(f"models.{i}.source: model folder {m.source} does not exist{hint}")
