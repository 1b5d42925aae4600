"""Request schemas of the OpenAI-compatible endpoints: chat and text completions, the fields OpenAI
clients send, what copyserve serves of them and what it refuses by name."""

from __future__ import annotations

from typing import Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.protocol import ApiRequest, NonBlank, SessionId


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    """OpenAI's ``response_format.json_schema``: the answer is constrained to this schema while it is written."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict = Field(default_factory=dict, alias="schema", description="A JSON Schema for the answer.")
    strict: bool | None = Field(None, description="Accepted; the answer always follows the schema here.")

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict) -> dict:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as err:
            where = "/".join(str(p) for p in err.path) or "the top level"
            raise ValueError(f"the schema is not a valid JSON Schema at {where}: {err.message}") from None
        return schema


class ResponseFormat(BaseModel):
    """``text`` (default), ``json_object`` (any JSON object) or ``json_schema`` (JSON under a schema)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError('give json_schema exactly when type is "json_schema"')
        return self


class OpenAISampling(ApiRequest):
    """Fields both OpenAI endpoints share. Unknown fields are ignored, as OpenAI clients send extras."""

    model_config = ConfigDict(extra="ignore")

    model: NonBlank
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=8)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # the range torch's generator takes
    stop: list[str] = Field(default_factory=list, description="Up to 4 stop strings (a single string is fine).")
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # OpenAI fields copyserve does not serve yet: refused when they ask for something, never silently dropped.
    logit_bias: dict | None = Field(None, description="Not served yet: 400 unless empty/null.")
    response_format: ResponseFormat | None = Field(
        None, description="Structured output, enforced while the answer is written (vLLM structured outputs).")
    tools: list | None = Field(None, description="Not served yet: 400 unless empty/null.")
    tool_choice: str | dict | None = Field(None, description='Not served yet: 400 unless "none"/null.')

    @field_validator("logit_bias", "tools", "tool_choice")
    @classmethod
    def _unserved(cls, value: object, info) -> object:
        if value in (None, False, 0, {}, [], "none"):
            return value
        raise ValueError(f"{info.field_name} is not served by copyserve yet; leave it out")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, stop: object) -> list[str]:
        stops = [stop] if isinstance(stop, str) else stop
        if stops is None:
            return []
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ValueError("stop takes a string or a list of up to 4 non-empty strings")
        return stops


class ChatCompletionRequest(OpenAISampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    session_id: SessionId | None = Field(None, description="copyserve extension: earlier turns come from Redis.")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(False, description="Each answer token's log-probability.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="And the most likely tokens at each position.")

    @model_validator(mode="after")
    def _one_budget(self) -> ChatCompletionRequest:
        self.max_tokens = self.max_completion_tokens or self.max_tokens
        return self

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, top: int | None, info) -> int | None:
        if top and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return top

    def logprobs_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(OpenAISampling):
    prompt: str | list[str] = Field(..., description="One prompt (a list of exactly one is accepted).")
    temperature: float = Field(1.0, ge=0, le=2)
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=5, description="Log-probabilities of each token and of this "
                                                                 "many most likely ones at each position.")
    echo: bool = Field(False, description="Not served yet: 400 unless false.")
    best_of: int | None = Field(None, description="Not served yet: 400 unless 1/null.")
    suffix: str | None = Field(None, description="Not served yet: 400 unless empty/null.")

    @field_validator("echo", "best_of", "suffix")
    @classmethod
    def _unserved_here(cls, value: object, info) -> object:
        if not value or (info.field_name == "best_of" and value == 1):
            return value
        raise ValueError(f"{info.field_name} is not served by copyserve yet; leave it out")

    def logprobs_k(self) -> int | None:
        return self.logprobs

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str:
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError("send one prompt per request (a list of exactly one string)")
            prompt = prompt[0]
        if not prompt:
            raise ValueError("prompt must not be empty")
        return prompt
