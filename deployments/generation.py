"""What the ingress asks of a model server, and what comes back. Plain dataclasses: they cross
Ray handles by pickle and keep the engine library out of the ingress."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from deployments.releases.adapters import AdapterRef


def engine_request_id(request_id: str, attempt: int = 1) -> str:
    """The id a generation has in the engine: the HTTP request id (the client may choose it with
    X-Request-Id) plus a random suffix. vLLM aborts by id, so a client-chosen id used as is would let
    one tenant cut another's answer short by sending a failing request under the same id."""
    return f"{request_id}-{attempt}-{secrets.token_hex(6)}"


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """Engine-neutral sampling knobs; the engine turns them into its own (validated) type.

    temperature, top_p and max_tokens have no default here: they are policy, and each caller owns its own
    (an HTTP request model's ``to_sampling``, with the model's or the plan's budget; Polish's rewrite), so
    nothing below the request layer, the engine included, can quietly pick a second one. The defaults left
    are the "off" values of optional features."""

    n: int = 1
    temperature: float
    top_p: float
    max_tokens: int
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Structured output (at most one): the answer is JSON valid under this schema (its JSON text), or any object.
    json_schema: str | None = None
    json_object: bool = False
    logprobs: int | None = None  # None: none; k: each chosen token's log-probability and the k most likely
    # max_tokens is a ceiling to fit in the context (the engine cuts it to the room the prompt leaves): set for
    # a default budget and for a channel's answer; otherwise a max_tokens that does not fit is refused.
    fit_max_tokens: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """Either chat ``messages`` (the model's chat template applies) or a raw ``prompt``."""

    request_id: str
    sampling: SamplingOptions
    messages: tuple[dict, ...] | None = None
    prompt: str | None = None
    adapter: AdapterRef | None = None
    priority: int = 0  # lower runs first on an engine with priority scheduling; batch lines are BATCH_PRIORITY
    tools: tuple[dict, ...] | None = None  # OpenAI function definitions, for the chat template
    # tool_choice "auto": the model answers text or calls in its own format, which the engine's tool parser reads.
    auto_tools: bool = False
    parallel_tool_calls: bool | None = None

    def __post_init__(self):
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's text and log-probability, with the most likely alternatives when asked."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ToolCall:
    """A function call the model wrote, as the model's tool parser read it (``arguments``: JSON text).
    While streaming, a piece of call ``index`` (OpenAI's chunk shape): its first piece has the id and
    name, later pieces add to the arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ToolAnswer:
    """A finished sequence of an ``auto_tools`` request, parsed whole: its text content and its calls."""

    content: str
    calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Delta:
    """New text for one of the ``n`` sequences; ``finish_reason`` is set on its last delta. With
    ``auto_tools`` the text is content only, calls come as ``tool_calls`` pieces, and the last delta
    carries the whole ``answer``."""

    index: int
    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per new token, when the request asked for them
    tool_calls: tuple[ToolCall, ...] = ()
    answer: ToolAnswer | None = None


@dataclass
class Completion:
    """The finished answer with usage and timings (seconds from the server's receipt)."""

    model: str
    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None = None
    total_s: float = 0.0
    weights: str | None = None  # the merged adapter (name@vN) the replica serves; None: base weights
    logprobs: list[list[TokenLogprob]] | None = None  # per sequence, when the request asked for them
    tool_calls: list[tuple[ToolCall, ...]] | None = None  # per sequence, for auto_tools requests (texts: content)

    @property
    def tokens_per_s(self) -> float:
        decode_s = self.total_s - (self.first_token_s or 0.0)
        if self.completion_tokens <= len(self.texts) or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - len(self.texts)) / decode_s
