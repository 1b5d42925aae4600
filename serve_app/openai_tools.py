"""OpenAI function calling on any model, held by construction: the engine writes the call under a JSON
schema made from the tools (vLLM structured outputs), so the arguments always parse and fit the
function's parameters, whatever the model's chat template knows of tools.

``tool_choice`` ``{"type": "function", "function": {"name": ...}}`` writes that function's arguments;
``"required"`` writes a list of ``{"name", "parameters"}`` (one item when ``parallel_tool_calls`` is
false), the schema vLLM's own server uses for it. ``"auto"`` (the model decides between text and a
call; the default when tools are given) is served on models whose config names a vLLM ``tool_parser``
for their output format: the engine reads the calls (``deployments/engines/vllm_tools.py``); other
models refuse it with what to send instead.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, Field, field_validator

FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
NO_PARAMETERS = {"type": "object", "properties": {}}


class FunctionDefinition(BaseModel):
    name: str = Field(..., pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict | None = Field(None, description="A JSON Schema for the arguments.")
    strict: bool | None = Field(None, description='Accepted; "required" and named calls always follow the schema; '
                                              'with "auto", vLLM constrains strict functions\' calls.')

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, schema: dict | None) -> dict | None:
        return schema if schema is None else checked_schema(schema, "parameters")


def checked_schema(schema: dict, what: str) -> dict:
    """The schema, when it is valid JSON Schema; else a ValueError saying where it is not."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.path) or "the top level"
        raise ValueError(f"{what} is not a valid JSON Schema at {where}: {err.message}") from None
    return schema


class FunctionCall(BaseModel):
    name: str = Field(..., pattern=FUNCTION_NAME)
    arguments: str = Field(..., description="The arguments as a JSON text, as this API answered them.")


class ToolCall(BaseModel):
    """A call of an earlier assistant turn, sent back with the conversation."""

    id: str = Field(..., min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str = Field(..., pattern=FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


def auto_refused(model: str) -> str:
    """Why tool_choice "auto" is a 400 on a model whose config names no tool parser."""
    return (f'tool_choice "auto" (the default when tools are given): model {model} has no tool parser configured '
            "for its tool-call format, so the model cannot choose between text and a call here. Send tool_choice "
            '"required" or {"type": "function", "function": {"name": ...}} (the call is then written under the '
            'functions\' JSON schemas, on every model), or "none" for text.')


@dataclass(frozen=True)
class ToolMode:
    """How this request's answer becomes tool calls: one named function, a list (``required``) written
    under a schema, or the model's choice (``auto``: no schema, the engine's tool parser reads them)."""

    function: str | None  # the named function; None for "required" and "auto"
    schema: dict | None  # None: "auto"

    @property
    def auto(self) -> bool:
        return self.schema is None

    @classmethod
    def of(cls, tools: list[ChatTool] | None, choice, parallel: bool | None) -> ToolMode | None:
        """None when the answer is text (no tools, or tool_choice "none"). The request is validated already."""
        if not tools or choice == "none":
            return None
        if choice in (None, "auto"):
            return cls(None, None)
        by_name = {t.function.name: t.function.parameters or NO_PARAMETERS for t in tools}
        if isinstance(choice, NamedToolChoice):
            return cls(choice.function.name, by_name[choice.function.name])
        call = [{"type": "object", "additionalProperties": False, "required": ["name", "parameters"],
                 "properties": {"name": {"type": "string", "enum": [name]}, "parameters": params}}
                for name, params in by_name.items()]
        schema = {"type": "array", "minItems": 1, "items": {"anyOf": call}}
        if parallel is False:
            schema["maxItems"] = 1
        return cls(None, schema)

    def calls(self, text: str) -> list[dict] | None:
        """The tool calls in a finished answer; None when it is not the JSON the schema asked for (the
        token budget ran out mid-call), so the text is returned as content instead."""
        if self.function is not None:
            return [call(self.function, text)] if _parses(text) else None
        try:
            items = json.loads(text)
            return [call(item["name"], json.dumps(item["parameters"], ensure_ascii=False)) for item in items] or None
        except (ValueError, TypeError, KeyError):  # not the list of calls the schema describes
            return None


def call(name: str, arguments: str, call_id: str | None = None) -> dict:
    return {"id": call_id or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
