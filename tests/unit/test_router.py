"""Router: industries and aliases to routes, model names to plans, copy prompts and budgets."""

from __future__ import annotations

import pytest

from contracts.config import parse_config
from contracts.errors import InvalidRequestError, NotFoundError
from deployments.router import RoutePlan, Router
from deployments.text.prompts import TemplateLibrary

CONFIG = {
    "server": {"default_language": "en"},
    "redis": {"enabled": False},  # the config's route table; the live table is tested against real Redis
    "models": [
        {"name": "qwen-small", "family": "qwen3", "source": "Qwen/Qwen3-0.6B"},
        {"name": "gptj-base", "family": "gptj", "source": "EleutherAI/gpt-j-6b"},
    ],
    "routes": [
        {"industry": "ecommerce", "aliases": ["电商", "E-Commerce", "retail"], "model": "qwen-small"},
        {"industry": "finance", "aliases": ["金融"], "model": "qwen-small"},
        {"industry": "education", "model": "gptj-base"},
    ],
}


def make_router(**server) -> Router:
    data = {**CONFIG, "server": {**CONFIG["server"], **server}}
    return Router(parse_config(data))


@pytest.fixture(scope="module")
def router() -> Router:
    return make_router()


@pytest.mark.parametrize(
    ("name", "industry"),
    [("ecommerce", "ecommerce"), ("ECOMMERCE", "ecommerce"), ("  Finance ", "finance"), ("电商", "ecommerce"),
     ("e-commerce", "ecommerce"), ("RETAIL", "ecommerce"), ("金融", "finance"), ("education", "education")],
)
def test_industry_of(router, name, industry):
    assert router.industry_of(name) == industry


def test_unknown_industry_lists_every_industry_and_alias(router):
    with pytest.raises(InvalidRequestError) as info:
        router.industry_of("agriculture")
    err = info.value
    assert err.status_code == 400 and err.param == "industry"
    assert "'agriculture'" in err.message
    for name in ("ecommerce", "finance", "education", "电商", "E-Commerce", "retail", "金融"):
        assert name in err.message


async def test_resolve_model_name(router):
    assert await router.resolve("gptj-base") == RoutePlan(model="gptj-base", industry=None)


@pytest.mark.parametrize(("name", "plan"), [
    ("finance", RoutePlan(model="qwen-small", industry="finance")),
    ("电商", RoutePlan(model="qwen-small", industry="ecommerce")),
    ("Education", RoutePlan(model="gptj-base", industry="education")),
])
async def test_resolve_route(router, name, plan):
    assert await router.resolve(name) == plan


async def test_resolve_unknown_is_404(router):
    with pytest.raises(NotFoundError) as info:
        await router.resolve("gpt-4o")
    err = info.value
    assert err.status_code == 404 and err.param == "model"
    assert "'gpt-4o'" in err.message and "gptj-base" in err.message and "qwen-small" in err.message


async def test_plan_copy_english(router):
    plan = await router.plan_copy("retail", "Trail Shoes", ["light", "grippy"], None, "short", None)
    assert plan.route == RoutePlan(model="qwen-small", industry="ecommerce")
    assert plan.language == "en"
    assert [m["role"] for m in plan.messages] == ["system", "user"]
    assert "Trail Shoes" in plan.messages[1]["content"] and "light, grippy" in plan.messages[1]["content"]
    assert plan.max_tokens == TemplateLibrary().budget("short")


async def test_plan_copy_detects_chinese_product(router):
    plan = await router.plan_copy("finance", "稳健型理财账户", [], None, "long", None)
    assert plan.language == "zh"
    assert "稳健型理财账户" in plan.messages[1]["content"]
    assert plan.max_tokens == TemplateLibrary().budget("long")


async def test_plan_copy_detects_chinese_keyword(router):
    plan = await router.plan_copy("ecommerce", "Coffee maker", ["便携"], None, "medium", None)
    assert plan.language == "zh"


async def test_explicit_language_wins(router):
    plan = await router.plan_copy("ecommerce", "便携式咖啡机", [], None, "medium", "en")
    assert plan.language == "en"
    assert plan.messages[1]["content"].startswith("Write product copy")


async def test_default_language_from_server_config():
    router = make_router(default_language="zh")
    plan = await router.plan_copy("education", "Python course", [], None, "medium", None)
    assert plan.language == "zh"
    assert plan.route == RoutePlan(model="gptj-base", industry="education")


async def test_plan_copy_unknown_industry(router):
    with pytest.raises(InvalidRequestError):
        await router.plan_copy("farming", "Tractor", [], None, "medium", None)


async def test_routes_listing(router):
    routes = {r["industry"]: r for r in await router.routes()}
    assert routes["ecommerce"]["aliases"] == ["电商", "E-Commerce", "retail"]
    assert routes["ecommerce"]["labels"]["zh"] == "电商"
    assert routes["education"]["model"] == "gptj-base"


def test_route_with_missing_template_fails():
    data = {**CONFIG, "routes": [{"industry": "legal", "model": "qwen-small"}]}
    with pytest.raises(ValueError, match="no prompt template 'legal'"):
        Router(parse_config(data))


def test_route_template_override():
    data = {**CONFIG, "routes": [{"industry": "retail", "model": "qwen-small", "template": "ecommerce"}]}
    router = Router(parse_config(data))
    assert router.industry_of("Retail") == "retail"
