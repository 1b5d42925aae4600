"""Sampling and its defaults have one owner: each request model's ``to_sampling``. Each endpoint's
defaults, and the one resolved budget that the cache key, the token reservation and the engine share."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import replace
from types import SimpleNamespace

import pytest

from contracts.config import parse_config
from deployments.generation import Completion, GenerationRequest, SamplingOptions
from deployments.router import Router
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.text.channels import catalogue
from deployments.text.prompts import TemplateLibrary
from serve_app.channel_copy import with_channel
from serve_app.copy_api import CopyAPI
from serve_app.copy_pipeline import RETRY_MIN_TEMPERATURE, CopyPipeline
from serve_app.openai_api import OpenAIAPI
from serve_app.openai_protocol import ChatCompletionRequest, CompletionRequest
from serve_app.protocol import CopyRequest, RevisionRequest
from serve_app.shadow import ShadowRunner
from tests.fakes import FakeMethod, MemoryStore

MODEL_DEFAULT = 77  # the model's default_max_tokens: unlike any `length` budget, so each is told apart
CONFIG = parse_config({
    "redis": {"enabled": False},
    "models": [{"name": "qwen-small", "family": "qwen3", "source": "Qwen/Qwen3-0.6B",
                "default_max_tokens": MODEL_DEFAULT}],
    "routes": [{"industry": "ecommerce", "model": "qwen-small"}],
})
CHAT = {"model": "qwen-small", "messages": [{"role": "user", "content": "hi"}]}


# --- each endpoint's defaults -------------------------------------------------------------------

def test_copy_defaults_come_from_the_copy_request_and_the_plans_budget():
    s = CopyRequest(industry="ecommerce", product="mug").to_sampling(192)
    assert (s.n, s.temperature, s.top_p, s.max_tokens, s.seed) == (1, 0.7, 0.95, 192, None)
    assert not s.fit_max_tokens  # a copy budget too big for the context is refused, as it always was
    mine = CopyRequest(industry="ecommerce", product="mug", n=2, temperature=0, top_p=0.5, max_tokens=9, seed=3)
    s = mine.to_sampling(192)
    assert (s.n, s.temperature, s.top_p, s.max_tokens, s.seed) == (2, 0, 0.5, 9, 3)
    revision = RevisionRequest(session_id="s1", instruction="shorter").to_sampling(96)
    assert (revision.temperature, revision.top_p, revision.max_tokens) == (0.7, 0.95, 96)


def test_openai_defaults_are_openais_with_the_models_budget():
    s = ChatCompletionRequest.model_validate(CHAT).to_sampling(MODEL_DEFAULT)
    assert (s.n, s.temperature, s.top_p, s.max_tokens, s.seed) == (1, 1.0, 1.0, MODEL_DEFAULT, None)
    assert s.fit_max_tokens  # the model's default is a ceiling: cut to what the prompt leaves, never refused
    asked = ChatCompletionRequest.model_validate({**CHAT, "max_completion_tokens": 30}).to_sampling(MODEL_DEFAULT)
    assert (asked.max_tokens, asked.fit_max_tokens) == (30, False)  # the client's own: refused if it cannot fit

    text = CompletionRequest.model_validate({"model": "qwen-small", "prompt": "Once"}).to_sampling(MODEL_DEFAULT)
    assert (text.temperature, text.top_p, text.max_tokens, text.fit_max_tokens) == (1.0, 1.0, 16, False)
    unset = CompletionRequest.model_validate({"model": "qwen-small", "prompt": "Once", "max_tokens": None})
    assert (unset.to_sampling(MODEL_DEFAULT).max_tokens, unset.to_sampling(MODEL_DEFAULT).fit_max_tokens) == (
        MODEL_DEFAULT, True)


def test_sampling_options_leave_the_policy_to_their_caller():
    with pytest.raises(TypeError, match="temperature"):
        SamplingOptions(max_tokens=8, top_p=1.0)
    with pytest.raises(TypeError, match="max_tokens"):
        SamplingOptions(temperature=0.7, top_p=1.0)


def test_a_channel_budget_is_a_ceiling_to_fit():
    channel = next(iter(catalogue().values()))
    plan = SimpleNamespace(max_tokens=192, channel=channel, language=channel.languages[0])
    s = CopyPipeline.sampling(CopyRequest(industry="ecommerce", product="mug"), plan)
    assert (s.max_tokens, s.fit_max_tokens, s.temperature) == (192, True, 0.7)
    assert json.loads(s.json_schema) == channel.json_schema(plan.language)


def test_retries_change_only_seed_and_temperature_of_the_resolved_sampling():
    sampling = CopyRequest(industry="ecommerce", product="mug", temperature=0, seed=5, n=2).to_sampling(64)
    plan = SimpleNamespace(messages=[{"role": "user", "content": "x"}], adapter=None)
    first = CopyPipeline.generation(sampling, plan, "rid", 1).sampling
    retry = CopyPipeline.generation(sampling, plan, "rid", 2).sampling
    assert first == sampling
    assert retry == replace(sampling, seed=7, temperature=RETRY_MIN_TEMPERATURE)


# --- one resolved budget: cache key, reservation, engine ------------------------------------------

class FakeAccess:
    def __init__(self):
        self.reserved: list[int] = []

    async def check(self, request):
        return None

    @asynccontextmanager
    async def metered(self, key, tokens: int):
        self.reserved.append(tokens)
        yield None

    async def settle(self, *args) -> None:
        pass


class FakeCache:
    def __init__(self):
        self.materials: list[str] = []

    def key(self, material: str) -> str:
        self.materials.append(material)
        return "cache-key"

    async def get(self, key: str):
        return None

    async def put(self, key: str, payload: dict) -> None:
        pass


def fake_model() -> SimpleNamespace:
    def complete(request: GenerationRequest) -> Completion:
        n = request.sampling.n
        return Completion(model="qwen-small", texts=["Warm mug."] * n, finish_reasons=["stop"] * n,
                          prompt_tokens=5, completion_tokens=3 * n)

    return SimpleNamespace(generate=FakeMethod(complete))


class CopyEndpoint(CopyAPI):
    def __init__(self):
        self.model = fake_model()
        self.access, self.cache = FakeAccess(), FakeCache()
        self.pipeline = CopyPipeline(Router(CONFIG), {"qwen-small": self.model}, {}, None, None, None)
        self.evaluation = AdapterEvaluation(MemoryStore())
        self.shadows = ShadowRunner(self.pipeline, None, self.evaluation, max_in_flight=0)

    async def _merged_weights(self, model: str) -> None:
        return None


def http_request() -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(request_id="rid"), headers={})


@pytest.mark.parametrize(("fields", "n", "budget"), [
    ({}, 1, TemplateLibrary().budget("medium")),  # no max_tokens: the plan's, by `length`
    ({"length": "long", "n": 2}, 2, TemplateLibrary().budget("long")),
    ({"max_tokens": 12, "n": 3}, 3, 12),
])
async def test_copy_cache_key_reservation_and_engine_share_one_budget(fields, n, budget):
    assert budget != MODEL_DEFAULT  # /v1/copy budgets by length, not by the model's default
    api = CopyEndpoint()
    body = CopyRequest(industry="ecommerce", product="mug", temperature=0, postprocess=False, **fields)
    await api.copy(body, http_request())
    ((generation,),) = api.model.generate.calls
    engine = generation.sampling
    (material,) = api.cache.materials
    assert engine.max_tokens == budget and engine.n == n
    assert api.access.reserved == [n * budget]
    assert json.loads(material)["sampling"] == {"n": n, "temperature": 0, "top_p": 0.95, "seed": None,
                                                "max_tokens": budget}


async def test_copy_cache_key_keeps_its_shape():
    """The cache key is made of the same fields as before the sampling had one owner: no cached copy is lost."""
    plan = await Router(CONFIG).plan_copy("ecommerce", "mug", [], None, "medium", None)
    body = CopyRequest(industry="ecommerce", product="mug", seed=4)
    material = json.loads(CopyPipeline.cache_material(body, plan, CopyPipeline.sampling(body, plan)))
    assert material["sampling"] == {"n": 1, "temperature": 0.7, "top_p": 0.95, "seed": 4,
                                    "max_tokens": plan.max_tokens}
    channel_plan = with_channel(plan, next(c.id for c in catalogue().values() if "en" in c.languages))
    channel = json.loads(CopyPipeline.cache_material(body, channel_plan, CopyPipeline.sampling(body, channel_plan)))
    assert channel["sampling"]["max_tokens"] == channel_plan.max_tokens != plan.max_tokens


class OpenAIEndpoint(OpenAIAPI):
    def __init__(self):
        self.model = fake_model()
        self.config, self.router, self.access = CONFIG, Router(CONFIG), FakeAccess()
        self.models, self.streaming, self.sessions = {"qwen-small": self.model}, {}, None


@pytest.mark.parametrize(("endpoint", "body", "n", "budget", "fit"), [
    ("chat", CHAT, 1, MODEL_DEFAULT, True),
    ("chat", {**CHAT, "n": 2, "max_tokens": 20}, 2, 20, False),
    ("chat", {**CHAT, "n": 3, "max_completion_tokens": 25}, 3, 25, False),
    ("text", {"model": "qwen-small", "prompt": "Once"}, 1, 16, False),  # OpenAI's legacy default
    ("text", {"model": "qwen-small", "prompt": "Once", "max_tokens": None, "n": 2}, 2, MODEL_DEFAULT, True),
])
async def test_openai_reservation_and_engine_share_one_budget(endpoint, body, n, budget, fit):
    api = OpenAIEndpoint()
    if endpoint == "chat":
        answer = await api.chat_completions(ChatCompletionRequest.model_validate(body), http_request(), None)
    else:
        answer = await api.completions(CompletionRequest.model_validate(body), http_request(), None)
    ((generation,),) = api.model.generate.calls
    s = generation.sampling
    assert (s.n, s.max_tokens, s.fit_max_tokens, s.temperature, s.top_p) == (n, budget, fit, 1.0, 1.0)
    assert api.access.reserved == [n * budget]
    assert len(answer["choices"]) == n
