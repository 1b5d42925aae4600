"""The OpenAPI document states what the config decides, so clients and fuzzers reach the real logic."""

from __future__ import annotations

import jsonschema
import pytest

import serve_app.ingress  # noqa: F401 - registers the routes on the app
from contracts.config import load_config
from serve_app.api_app import app
from serve_app.openapi_doc import live_openapi
from tests.unit.test_config import ROOT

CONFIG = load_config(ROOT / "configs" / "local.yaml")


@pytest.fixture(scope="module")
def doc() -> dict:
    return live_openapi(app.openapi, CONFIG)


def body_schema(doc: dict, name: str) -> dict:
    return {**doc["components"]["schemas"][name], "components": doc["components"]}


def test_industries_models_and_budgets_come_from_the_config(doc):
    industry = doc["components"]["schemas"]["CopyRequest"]["properties"]["industry"]
    assert set(industry["enum"]) >= {"ecommerce", "finance", "education", "电商"}
    model = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]
    assert "smollm2-135m-instruct" in model["anyOf"][0]["enum"]
    max_tokens = doc["components"]["schemas"]["CopyRequest"]["properties"]["max_tokens"]["anyOf"][0]
    assert max_tokens["maximum"] == CONFIG.models[0].engine.max_model_len
    params = doc["paths"]["/v1/routes/{industry}"]["put"]["parameters"]
    assert params[0]["schema"]["enum"] == [r.industry for r in CONFIG.routes]


@pytest.mark.parametrize("model,valid", [("ecommerce", True), ("smollm2-135m-instruct", True),
                                         ("ecommerce:my-adapter", True), ("ecommerce:my-adapter@canary", True),
                                         ("ecommerce:my-adapter@v3", True), ("gpt-4", False), ("", False)])
def test_the_model_field_accepts_what_the_service_serves(doc, model, valid):
    schema = body_schema(doc, "ChatCompletionRequest")
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(body))
    assert (not errors) is valid, errors


def test_the_generated_document_is_left_alone(doc):
    """FastAPI's own document (shared by every ingress) is copied, not changed in place."""
    assert "enum" not in app.openapi()["components"]["schemas"]["CopyRequest"]["properties"]["industry"]
