"""The vLLM engine: AsyncLLM with vLLM's own chat-template rendering, tokenization limits and
sampling validation. With ``vllm_tools`` (its tool parsers), the only modules of the service that import vLLM."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from vllm import SamplingParams
from vllm.config import StructuredOutputsConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMValidationError
from vllm.lora.request import LoRARequest
from vllm.platforms import current_platform
from vllm.renderers.params import ChatParams, TokenizeParams
from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError
from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

from contracts.config import ModelConfig
from contracts.errors import EngineStoppedError, InvalidRequestError
from deployments.engines.base import EngineStep, LLMEngine
from deployments.engines.vllm_tools import ToolCallReader, check_tool_parser, parser_class
from deployments.generation import Delta, GenerationRequest, TokenLogprob
from deployments.releases.adapters import AdapterRef
from deployments.text.prompts import BUILTIN_DIR

logger = logging.getLogger("copyserve.engine")
GIB = 1 << 30


def engine_args(model: ModelConfig) -> AsyncEngineArgs:
    """Config → vLLM engine arguments; ``engine_kwargs`` override anything we set."""
    e = model.engine
    kwargs = dict(
        model=model.source,
        tokenizer=model.tokenizer,
        served_model_name=model.name,
        dtype=e.dtype,
        max_model_len=e.max_model_len,
        gpu_memory_utilization=e.gpu_memory_utilization,
        tensor_parallel_size=e.tensor_parallel_size,
        max_num_seqs=e.max_num_seqs,
        enforce_eager=e.enforce_eager,
        enable_lora=e.enable_lora,
        max_lora_rank=e.max_lora_rank,
        max_loras=e.max_loras,
        scheduling_policy=e.scheduling_policy,
        # Structured answers (response_format, channels) in compact JSON: with free whitespace allowed, a
        # model may pad with newlines until max_tokens and never close the object (seen with a small Qwen3).
        structured_outputs_config=StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
    )
    if e.kv_cache_space_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(e.kv_cache_space_gib * GIB)
    kwargs.update(e.engine_kwargs)
    return AsyncEngineArgs(**kwargs)


def cpu_threads(model: ModelConfig) -> int:
    """OpenMP threads of a CPU engine: the config's, or every core this process may run on but one. vLLM keeps
    that core for its engine core's scheduling when it binds threads itself; here it also keeps the replica,
    Ray and Redis answering (with the engine on both cores of a 2-core box, Redis calls timed out under load)."""
    return model.engine.cpu_threads or max(1, len(os.sched_getaffinity(0)) - 1)


def engine_core_env(model: ModelConfig) -> dict[str, str]:
    """What the engine-core process vLLM spawns must find in its environment (it reads these as it imports
    torch): the model replica sets them before it starts AsyncLLM. Off a CPU, nothing. On a CPU, the engine's
    OpenMP threads (Ray set ``OMP_NUM_THREADS`` to the actor's ``num_cpus``), and for an eager engine no
    torch.compile at all: vLLM still compiles a sampler helper (a sampled token's rank,
    ``batched_count_greater_than``) with Inductor on the first request that asks for logprobs, a C++ build
    that held every stream of the engine for ~4 s on a 2-core box; eager, it is one comparison and a sum."""
    if not current_platform.is_cpu():
        return {}
    env = {"OMP_NUM_THREADS": str(cpu_threads(model))}
    if model.engine.enforce_eager:
        env["TORCH_COMPILE_DISABLE"] = "1"
    return env


def read_chat_template(name_or_path: str | None) -> str | None:
    """A template file path, or the name of a built-in one (``plain_chat``); None keeps the tokenizer's."""
    if name_or_path is None:
        return None
    path = Path(name_or_path)
    if not path.is_file():
        path = BUILTIN_DIR / f"{name_or_path}.jinja"
    if not path.is_file():
        raise ValueError(f"chat_template {name_or_path!r}: no such file, and no built-in template of that name")
    return path.read_text(encoding="utf-8")


class VLLMEngine(LLMEngine):
    """One AsyncLLM per model server replica."""

    def __init__(self, model: ModelConfig):
        super().__init__(model)
        self._engine: AsyncLLM | None = None
        self._loaded_adapters: set[int] = set()
        self._chat_params = ChatParams(chat_template=read_chat_template(model.chat_template),
                                       chat_template_kwargs={"add_generation_prompt": True})
        check_tool_parser(model)
        self._tool_parser = None

    async def start(self) -> None:
        logger.info("starting vLLM engine for %s from %s", self.model.name, self.model.source)
        os.environ.update(engine_core_env(self.model))
        # vLLM's engine metrics (TTFT, queue, KV cache use, tokens) through Ray's metrics API, so they
        # are exported with Serve's, per replica, instead of into an in-process registry nobody scrapes.
        self._engine = AsyncLLM.from_engine_args(engine_args(self.model), stat_loggers=[RayPrometheusStatLogger])
        try:
            self._tool_parser = parser_class(self.model, self._engine.tokenizer)
        except ValueError:
            self._engine.shutdown()  # the replica fails: leave no engine process behind
            raise

    @property
    def max_model_len(self) -> int:
        return self._engine.model_config.max_model_len

    async def _engine_input(self, request: GenerationRequest):
        # Prompt length is checked by vLLM's tokenizer params; completion budget by us below, for a clearer message.
        tok_params = TokenizeParams(max_total_tokens=self.max_model_len, add_special_tokens=request.messages is None)
        renderer = self._engine.renderer
        if request.messages is not None:
            chat_params = self._chat_params
            if request.tools:  # templates that know tools describe them to the model
                chat_params = replace(chat_params, chat_template_kwargs={**chat_params.chat_template_kwargs,
                                                                         "tools": list(request.tools)})
            _, (engine_input,) = await renderer.render_chat_async([list(request.messages)], chat_params, tok_params)
        else:
            (engine_input,) = await renderer.render_cmpl_async([{"prompt": request.prompt}], tok_params)
        return engine_input

    def _max_tokens(self, requested: int, prompt_tokens: int, fit: bool = False) -> int:
        """The request's budget (its defaults resolved before it got here) against the room the prompt leaves,
        which only the engine knows: a ceiling (``fit``) is cut to it, any other budget must fit in it."""
        room = self.max_model_len - prompt_tokens
        if room <= 0:
            raise InvalidRequestError(
                f"the prompt is {prompt_tokens} tokens and fills this model's context of {self.max_model_len} "
                "tokens; shorten the input", "messages")
        if fit:
            return min(requested, room)
        if requested > room:
            raise InvalidRequestError(
                f"max_tokens={requested} is too large: the prompt takes {prompt_tokens} of this model's "
                f"{self.max_model_len} context tokens, so at most {room} can be generated", "max_tokens")
        return requested

    def _tool_reader(self, request: GenerationRequest, prompt_token_ids: list[int]) -> ToolCallReader | None:
        if not request.auto_tools:
            return None
        if self._tool_parser is None:  # the ingress refuses these first; this guards other callers
            raise InvalidRequestError(f"model {self.model.name} has no tool parser configured for tool_choice "
                                      '"auto"; send "required" or a named function', "tool_choice")
        return ToolCallReader(self._tool_parser, self._engine.tokenizer, request,
                              self._chat_params.chat_template_kwargs,
                              self._engine.model_config, prompt_token_ids)

    def _sampling_params(self, request: GenerationRequest, prompt_tokens: int,
                         tools: ToolCallReader | None = None) -> SamplingParams:
        s = request.sampling
        params = dict(
            n=s.n, temperature=s.temperature, top_p=s.top_p, seed=s.seed, stop=list(s.stop) or None,
            presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty,
            max_tokens=self._max_tokens(s.max_tokens, prompt_tokens, s.fit_max_tokens),
            output_kind=RequestOutputKind.DELTA,
            logprobs=s.logprobs,
            structured_outputs=(StructuredOutputsParams(json=s.json_schema) if s.json_schema else
                                StructuredOutputsParams(json_object=True) if s.json_object else None),
        )
        # "auto" tool calls: the parser's own settings (special tokens kept, strict functions' grammar) win;
        # such a request has no response_format of its own (the ingress refuses the pair).
        params.update(tools.sampling_overrides() if tools else {})
        return SamplingParams(**params)

    async def _lora(self, ref: AdapterRef | None) -> LoRARequest | None:
        """Load an adapter version before its first request, so a bad one fails only its own requests."""
        if ref is None:
            return None
        if not self.model.engine.enable_lora:
            raise InvalidRequestError(f"model {self.model.name} does not serve LoRA adapters", "adapter")
        # The name carries the digest: vLLM keys its prefix cache by LoRA name and path.
        lora = LoRARequest(lora_name=ref.engine_name, lora_int_id=ref.engine_id, lora_path=ref.path)
        if ref.engine_id not in self._loaded_adapters:
            try:
                await self._engine.add_lora(lora)
            except Exception as err:  # vLLM reports load failures with many types; the request gets a 400
                raise InvalidRequestError(f"adapter {ref.tag} could not be loaded: {err}; "
                                          "register a working version", "adapter") from None
            self._loaded_adapters.add(ref.engine_id)
        return lora

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineStep]:
        lora = await self._lora(request.adapter)
        try:
            engine_input = await self._engine_input(request)
            prompt_tokens = len(engine_input["prompt_token_ids"])
            tools = self._tool_reader(request, engine_input["prompt_token_ids"])
            params = self._sampling_params(request, prompt_tokens, tools)
        except VLLMValidationError as err:
            raise InvalidRequestError(str(err), getattr(err, "parameter", None)) from None
        except ValueError as err:  # vLLM raises plain ValueError for some bad inputs (template, lengths)
            raise InvalidRequestError(str(err)) from None
        completion_tokens, produced = 0, False
        try:
            async for out in self._engine.generate(engine_input, params, request.request_id, lora_request=lora,
                                                   priority=request.priority):
                produced = True
                deltas = []
                for seq in out.outputs:
                    completion_tokens += len(seq.token_ids)
                    delta = Delta(seq.index, seq.text, seq.finish_reason,
                                  token_logprobs(seq, request.sampling.logprobs))
                    deltas.append(tools.read(delta, seq.token_ids) if tools else delta)
                yield EngineStep(deltas, prompt_tokens, completion_tokens)
        except EngineDeadError:
            raise EngineStoppedError(f"the engine of model {self.model.name} stopped; "
                                     "its replica is being replaced, retry shortly") from None
        except (VLLMValidationError, ValueError) as err:
            if produced:
                raise
            # vLLM checks some parameters (a structured-output schema) only when the request is added.
            schema_from = "tools" if request.tools else "response_format"
            param = schema_from if params.structured_outputs else getattr(err, "parameter", None)
            raise InvalidRequestError(str(err), param) from None

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    async def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("engine not started")
        await self._engine.check_health()

    def num_unfinished_requests(self) -> int:
        return self._engine.get_num_unfinished_requests() if self._engine else 0

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()


def token_logprobs(seq, top_k: int | None) -> tuple[TokenLogprob, ...]:
    """vLLM's per-token ``{token id: Logprob}`` maps (the chosen token and the ``top_k`` most likely) as
    TokenLogprobs; -inf becomes -9999 (JSON has no infinity), as vLLM's own server does."""
    if not seq.logprobs or top_k is None:
        return ()
    out = []
    for token_id, ranked in zip(seq.token_ids, seq.logprobs, strict=False):
        chosen = ranked[token_id]
        top = sorted((lp for lp in ranked.values() if lp.rank is not None), key=lambda lp: lp.rank)[:top_k]
        out.append(TokenLogprob(chosen.decoded_token or "", max(chosen.logprob, -9999.0),
                                tuple((lp.decoded_token or "", max(lp.logprob, -9999.0)) for lp in top)))
    return tuple(out)
