"""A model deployment: its vLLM engine arguments and its Serve deployment options."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from contracts.config.base import SLUG, Strict


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
        "`nobind` lets several engines share a small machine. vLLM binds threads in its multiprocess executor only, "
        "so this applies with `cpu_worker_in_engine_core: false`; otherwise `cpu_threads` sets the count."
    )
    cpu_threads: int | None = Field(
        None, ge=1, le=1024, description="CPU engines: OpenMP threads of the model's math (OMP_NUM_THREADS). Unset: "
        "every core the replica's process may run on but one, the core vLLM keeps for its scheduling when it binds "
        "threads itself (Ray alone would give one per `num_cpus`). Set it where several engines share a machine, "
        "or to every core for throughput where nothing else needs the CPU.")
    cpu_worker_in_engine_core: bool = Field(
        True, description="CPU engines with one tensor-parallel rank: run the model worker inside vLLM's engine-core "
        "process (its UniProc executor, as on GPUs; VLLM_ENABLE_V1_MULTIPROCESSING=0) instead of a process of its "
        "own. Measured on 2 cores (bench/engine_layout.py): starts in 9.2 s instead of 15.5, 0.54 GiB less memory, "
        "no busy-waiting between two processes for the same cores. `false`: vLLM's CPU default.")
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "priority", description="`priority`: the engine runs waiting requests by priority, then arrival, so batch "
        "lines (priority 1) wait behind live requests (0); `fcfs`: arrival order only.")
    enforce_eager: bool = Field(True, description="Skip CUDA graph / compile warm-up (faster start, slower decode). "
                                "On a CPU the engine core then runs with no torch.compile at all.")
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
    tool_parser: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="vLLM tool parser for the model's tool-call format "
        "(`hermes` for Qwen2.5/Qwen3, `llama3_json`, `mistral`, ...): serves tool_choice `auto`, the model choosing "
        "between text and calls. Checked against vLLM's parsers when the replica starts (this package does not "
        "import vLLM). Unset: `auto` is a 400; `required` and named functions work on every model.")
    default_max_tokens: int = Field(
        256, ge=1, description="Completion budget of an OpenAI request that gives no max_tokens (cut to what the "
        "prompt leaves of the context); /v1/copy budgets by `length` instead.")
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
