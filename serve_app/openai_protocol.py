"""Request schemas of the OpenAI-compatible endpoints: chat and text completions, the fields OpenAI
clients send, what copyserve serves of them and what it refuses by name."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.generation import SamplingOptions
from serve_app.openai_tools import ChatTool, NamedToolChoice, ToolCall, ToolMode, checked_schema
from serve_app.protocol import ApiRequest, NonBlank, SessionId


class ContentPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=128, description="An assistant turn's calls.")
    tool_call_id: str | None = Field(None, description="Which call a tool message answers.")

    @model_validator(mode="after")
    def _has_content(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content (only an assistant turn with tool_calls may "
                             "leave it out)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id: the id of the call it answers")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def for_template(self) -> dict:
        """The message as chat templates read it; "developer" is OpenAI's newer name for "system"."""
        message = {"role": "system" if self.role == "developer" else self.role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


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
        return checked_schema(schema, "the schema")


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

    @field_validator("logit_bias")
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

    def to_sampling(self, default_max_tokens: int) -> SamplingOptions:
        """This request's sampling, its defaults resolved here and only here (as vLLM's ``to_sampling_params``):
        the token reservation and the engine read this one result. Without max_tokens the answer may have the
        model's ``default_max_tokens``, cut to what the context leaves (as the engine always did); a
        max_tokens the client sent is a request, refused when it does not fit."""
        fmt, schema = self.response_format, self.answer_schema()
        return SamplingOptions(
            n=self.n, temperature=self.temperature, top_p=self.top_p,
            max_tokens=self.max_tokens or default_max_tokens, fit_max_tokens=self.max_tokens is None,
            seed=self.seed, stop=tuple(self.stop), presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty, json_schema=json.dumps(schema) if schema is not None else None,
            json_object=bool(fmt and fmt.type == "json_object"), logprobs=self.logprobs_k())

    def answer_schema(self) -> dict | None:
        """The JSON schema the answer is written under, if any."""
        fmt = self.response_format
        return fmt.json_schema.json_schema if fmt and fmt.type == "json_schema" else None

    def logprobs_k(self) -> int | None:
        """None: no log-probabilities; k: each token's and the k most likely (each endpoint has its own fields)."""
        return None


class ChatCompletionRequest(OpenAISampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    session_id: SessionId | None = Field(None, description="copyserve extension: earlier turns come from Redis.")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = Field(False, description="Each answer token's log-probability.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="And the most likely tokens at each position.")

    tools: list[ChatTool] | None = Field(None, max_length=128, description="Functions the answer may call.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description='"required" or a named function: the answer is tool calls, written under a JSON schema '
                          'made from the tools. "auto" (the default with tools): the model chooses text or calls, '
                          'on models whose config names a tool_parser (a 400 on others).')
    parallel_tool_calls: bool | None = Field(None, description='false: at most one call with "required".')

    @model_validator(mode="after")
    def _one_budget(self) -> ChatCompletionRequest:
        self.max_tokens = self.max_completion_tokens or self.max_tokens
        return self

    @model_validator(mode="after")
    def _tools_fit(self) -> ChatCompletionRequest:
        choice = self.tool_choice  # None with tools is OpenAI's default, "auto"
        if choice == "none" or (choice is None and not self.tools):
            return self
        if not self.tools:
            raise ValueError("tool_choice needs tools: give the functions in tools, or leave tool_choice out")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in {t.function.name for t in self.tools}:
            raise ValueError(f"tool_choice names function {choice.function.name!r}, which is not in tools")
        if self.response_format is not None and self.response_format.type != "text":
            raise ValueError("tool calls (tool_choice, \"auto\" by default with tools) and response_format both "
                             "shape the answer: send one of them")
        if len({t.function.name for t in self.tools}) != len(self.tools):
            raise ValueError("tools: each function needs its own name")
        return self

    def tool_mode(self) -> ToolMode | None:
        return ToolMode.of(self.tools, self.tool_choice, self.parallel_tool_calls)

    def answer_schema(self) -> dict | None:
        mode = self.tool_mode()  # forced tool calls are written under the tools' schema
        return mode.schema if mode else super().answer_schema()

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
    # OpenAI's documented default for this endpoint; an explicit null gets the model's (``to_sampling``).
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
