"""The OpenAPI document with what the live config decides: which industries, models and routes exist, and
how many tokens a model can write. Pydantic knows the shapes; only the config knows these values, and a
generated client (or a fuzzer) that reads them reaches the real logic instead of a 400 on every call."""

from __future__ import annotations

import copy
from collections.abc import Callable

from contracts.config import AppConfig
from deployments.text.channels import catalogue


def _with_enum(schema: dict, values: list[str]) -> None:
    """Restrict a string (or an optional string) schema to ``values``."""
    target = next((s for s in schema.get("anyOf", []) if s.get("type") == "string"), schema)
    target["enum"] = values


def _with_maximum(schema: dict, maximum: int) -> None:
    target = next((s for s in schema.get("anyOf", []) if s.get("type") == "integer"), schema)
    target["maximum"] = maximum


def live_openapi(base: Callable[[], dict], config: AppConfig) -> dict:
    """``base`` (FastAPI's generated document) with the config's values filled in."""
    doc = copy.deepcopy(base())
    industries = [r.industry for r in config.routes]
    names = industries + [alias for r in config.routes for alias in r.aliases]
    models = [m.name for m in config.models]
    context = max(m.engine.max_model_len for m in config.models)
    schemas = doc["components"]["schemas"]
    _with_enum(schemas["CopyRequest"]["properties"]["industry"], names)
    _with_enum(schemas["CopyRequest"]["properties"]["channel"], list(catalogue()))
    for request in ("ChatCompletionRequest", "CompletionRequest"):
        props = schemas[request]["properties"]
        props["model"]["description"] = ("A model, an industry route, or `<route or model>:<adapter>`, the adapter "
                                         "as name, name@alias, name@vN or name@<digest prefix> (registered "
                                         "adapters: GET /v1/adapters).")
        props["model"]["anyOf"] = [{"type": "string", "enum": models + names},
                                   {"type": "string",
                                    "pattern": r"^[^:\s]+:[A-Za-z0-9][A-Za-z0-9_.-]*(@[a-z0-9-]{1,64})?$"}]
        props["model"].pop("type", None)
        props["model"].pop("minLength", None)
    for request in ("CopyRequest", "RevisionRequest", "ChatCompletionRequest", "CompletionRequest"):
        for field in ("max_tokens", "max_completion_tokens"):
            if field in schemas[request]["properties"]:
                _with_maximum(schemas[request]["properties"][field], context)
    _with_enum(schemas["AdapterRegisterRequest"]["properties"]["base_model"], models)
    for item in doc["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["name"] == "industry":
                    param["schema"]["enum"] = industries
                elif param["in"] == "path" and param["name"] == "model":
                    param["schema"]["enum"] = models
    return doc
