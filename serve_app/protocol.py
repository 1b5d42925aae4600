"""HTTP request and response schemas of the native copy API and the admin API (the OpenAI-compatible
ones are in ``openai_protocol.py``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from deployments.generation import SamplingOptions
from deployments.releases.adapters import SPEC_PATTERN
from deployments.releases.policy import ReleasePolicy

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


# --- native copy API -------------------------------------------------------------------------

# An adapter version as requests name it: name, name@alias, name@vN or name@<8+ hex digits of its digest>.
AdapterSpec = Annotated[str, StringConstraints(pattern=SPEC_PATTERN)]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


def _check_unicode(value: object, where: str = "") -> None:
    """Text must encode as UTF-8: JSON can carry an unpaired surrogate ("\\ud800"), which would fail
    later, in a cache key or a Redis write, as a 500."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{where or 'a field'}: text must be valid Unicode (an unpaired surrogate "
                             f"\\u{ord(value[err.start]):04x} was sent)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, where)
            _check_unicode(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, f"{where}[{i}]")


class ApiRequest(BaseModel):
    """Base of every request body: all its text must be valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: object) -> object:
        _check_unicode(data)
        return data


class CopySampling(ApiRequest):
    """How to write: shared by a new copy request and a revision of one."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, le=8, description="How many alternative texts.")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, description="Completion budget; defaults from `length`.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stream: bool = False
    postprocess: bool = Field(True, description="Polish, sentiment and the quality gate; false returns raw copy.")

    def to_sampling(self, default_max_tokens: int) -> SamplingOptions:
        """This request's sampling, its defaults resolved here and only here (as vLLM's request models'
        ``to_sampling_params``): the cache key, the token reservation and every attempt are read from it.
        ``default_max_tokens`` is the plan's budget (the `length` asked for, a channel's, a session's)."""
        return SamplingOptions(n=self.n, temperature=self.temperature, top_p=self.top_p,
                               max_tokens=self.max_tokens or default_max_tokens, seed=self.seed)


class CopyRequest(CopySampling):
    """``POST /v1/copy``: write copy for a product in an industry."""

    industry: NonBlank = Field(..., max_length=64, description="Industry id or alias: ecommerce, 电商, finance...")
    product: NonBlank = Field(..., max_length=500, description="The product or service to write about.")
    keywords: list[Keyword] = Field(default_factory=list, max_length=20, description="Words the copy should use.")
    tone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    length: Literal["short", "medium", "long"] = "medium"
    language: Literal["en", "zh"] | None = Field(None, description="Defaults to zh for Chinese input, else en.")
    session_id: SessionId | None = Field(None, description="Keep this conversation for /v1/copy/revise.")
    adapter: AdapterSpec | None = Field(
        None, description="A registered LoRA adapter of the route's model, instead of the base model: `name` (its "
                          "stable alias), `name@<alias>`, `name@vN` or `name@<digest prefix>`.")
    cache: bool | None = Field(
        None, description="None: cache when reproducible (temperature 0 or a seed); true: always; false: never.")
    channel: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,40}$")] | None = Field(
        None, description="Where the copy runs (GET /v1/channels): the answer has its fields, each within the "
                          "platform's limit.")


class RevisionRequest(CopySampling):
    """``POST /v1/copy/revise``: rewrite the last copy of a session ("make it shorter")."""

    session_id: SessionId
    instruction: NonBlank = Field(..., max_length=500, description="What to change, e.g. `more formal`.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    first_token_ms: float | None = Field(None, description="Model server receipt to first token.")
    generation_ms: float = Field(..., description="Model server receipt to last token.")
    total_ms: float = Field(..., description="Ingress receipt to response.")
    tokens_per_s: float = Field(..., description="Decode speed after the first token.")
    postprocess_ms: float | None = Field(None, description="Post-processing as the ingress waited for it, the "
                                         "hops to Polish and Sentiment included (chosen attempt).")
    polish_ms: float | None = Field(None, description="Time spent in the Polish deployment (chosen answer; a "
                                    "channel's fields summed).")
    sentiment_ms: float | None = Field(None, description="Time spent in the Sentiment deployment (chosen answer).")


class CopyResponse(BaseModel):
    id: str
    object: Literal["copy"] = "copy"
    created: int
    industry: str
    model: str
    language: Literal["en", "zh"]
    adapter: str | None = Field(None, description="The adapter version that wrote it (`name@vN`), if any.")
    variant: str | None = Field(None, description="The live route's variant that served it (A/B splits).")
    channel: str | None = Field(None, description="The channel the copy is shaped for, if any.")
    fields: dict[str, str | list[str]] | None = Field(
        None, description="With a channel: each field of the best text, within its limit (`text` joins them).")
    text: str = Field(..., description="The best (or only) text, post-processed; `texts` has all n.")
    texts: list[str]
    raw_text: str = Field(..., description="`text` as the model wrote it, before polish.")
    finish_reasons: list[str | None]
    polish: dict | None = Field(None, description="`edits` polish made to `text`: rule, before, after, start.")
    sentiment: dict | None = Field(None, description="label, score in [0, 1] (1 = most positive), language.")
    attempts: int = Field(1, description="Generations made; more than 1 when the quality gate asked again.")
    attempt_scores: list[float] = Field(default_factory=list, description="Best sentiment score of each attempt.")
    usage: Usage = Field(..., description="Tokens over all attempts.")
    timings: Timings


AliasName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class KeyCreateRequest(ApiRequest):
    """``POST /v1/keys`` (admin): a new API key; the secret is in the answer, once."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "admin"] = "user"
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=80)] = ""
    requests_per_window: int | None = Field(None, ge=1, description="Overrides the role's request limit.")
    tokens_per_window: int | None = Field(None, ge=1, description="Overrides the role's token limit.")


class AdapterRegisterRequest(ApiRequest):
    """``POST /v1/adapters`` (admin): register a new version of an adapter (its content's first registration)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    base_model: NonBlank = Field(..., description="The model (from /v1/models) the adapter was trained on.")
    path: NonBlank = Field(..., description="Adapter folder, readable by the model servers.")
    alias: AliasName | None = Field("stable", description="The alias to move onto the new version: `stable` (what "
                                    "a bare name serves), `canary` to stage it, or null to move none.")
    reason: Reason | None = None


class AliasMoveRequest(ApiRequest):
    """``PUT /v1/adapters/{name}/aliases/{alias}`` (admin): point an alias at a version."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Field(ge=1)] | Annotated[str, StringConstraints(
        pattern=r"^(v?[1-9][0-9]{0,8}|[0-9a-f]{8,64})$")] = Field(
        ..., description="The version: 3, \"v3\" or at least 8 hex digits of its digest.")
    reason: Reason | None = None


class PromoteRequest(ApiRequest):
    """``POST /v1/adapters/{name}/promote`` (admin): move alias ``to`` onto the version alias ``from`` points at."""

    model_config = ConfigDict(extra="forbid")

    from_: AliasName = Field("canary", alias="from")
    to: AliasName = "stable"
    reason: Reason | None = None


class RollbackRequest(ApiRequest):
    """``POST /v1/adapters/{name}/rollback`` (admin): move an alias back to where it pointed before its last move."""

    model_config = ConfigDict(extra="forbid")

    alias: AliasName = "stable"
    reason: Reason | None = None


class PolicyRequest(ApiRequest, ReleasePolicy):
    """``PUT /v1/adapters/{name}/policy`` (admin): when the canary is promoted or rolled back automatically."""


class WeightsRequest(ApiRequest):
    """``PUT /v1/models/{model}/weights`` (admin): serve a merged adapter on a model, or base weights (null)."""

    model_config = ConfigDict(extra="forbid")

    adapter: AdapterSpec | None = Field(
        ..., description="A registered merged adapter of this model, or null for the base weights. Named by alias "
                         "(or a bare name: its stable alias), the model follows the alias: moving it (promote, "
                         "rollback, PUT .../aliases/...) rolls the model onto the new version. name@vN pins it.")


class RouteVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    model: NonBlank
    adapter: str | None = None
    weight: float = Field(1.0, gt=0, le=1000)


class RouteShadow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter: AdapterSpec = Field(..., description="The LoRA version that writes the shadow copy: `name@canary`, "
                                 "`name@vN`...; it runs on the model it was trained for.")
    share: float = Field(..., gt=0, le=1, description="Share of generated answers (cache hits are none) written "
                         "again in the background, scored and compared with the answer served.")


class RouteUpdateRequest(ApiRequest):
    """``PUT /v1/routes/{industry}`` (admin): one model (+ adapter), or weighted variants for an A/B split; and
    optionally a shadow."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    adapter: str | None = None
    variants: list[RouteVariant] | None = Field(None, min_length=1, max_length=10)
    shadow: RouteShadow | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RouteUpdateRequest:
        if (self.model is None) == (self.variants is None):
            raise ValueError("give either `model` (and optionally `adapter`) or `variants`")
        if self.variants and len({v.name for v in self.variants}) != len(self.variants):
            raise ValueError("variant names must be unique")
        return self

    def variant_list(self) -> list[dict]:
        if self.variants is None:
            return [{"name": "default", "model": self.model, "adapter": self.adapter, "weight": 1.0}]
        return [v.model_dump() for v in self.variants]
