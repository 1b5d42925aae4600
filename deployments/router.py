"""The router: turns an industry (or alias, or model name) into a route and a prompt.

It runs inside each ingress replica (its state is the config and the live route table in Redis), so
deciding costs no handle hop; the ingress then calls the chosen model server itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.config import AppConfig, QualityConfig
from contracts.errors import InvalidRequestError, NotFoundError
from deployments.releases.adapters import AdapterRef
from deployments.state.routes import LiveRoute, LiveRoutes, Shadow, pick
from deployments.state.store import RedisStore
from deployments.text.channels import Channel
from deployments.text.draft import CJK
from deployments.text.prompts import Language, Length, TemplateLibrary


@dataclass(frozen=True)
class RoutePlan:
    """Where one request goes. ``industry`` is None when a client named a model directly;
    ``adapter``, ``variant`` and ``shadow`` come from the live route table (an admin's change, A/B split or
    shadow share)."""

    model: str
    industry: str | None = None
    adapter: str | None = None
    variant: str | None = None
    shadow: Shadow | None = None


@dataclass(frozen=True)
class CopyPlan:
    route: RoutePlan
    language: Language
    messages: list[dict]
    max_tokens: int
    quality: QualityConfig
    adapter: AdapterRef | None = None  # set by the ingress from the registry, per request
    channel: Channel | None = None  # where the copy runs: its fields and limits shape the answer


class Router:
    """Route table from the config; pure Python so unit tests can build it without Serve."""

    def __init__(self, config: AppConfig, store: RedisStore | None = None):
        self._config = config
        self._live = LiveRoutes(store or RedisStore(config.redis))
        self._models = {m.name for m in config.models}
        self._templates = TemplateLibrary(config.server.templates_dir)
        self._routes = {r.industry: r for r in config.routes}
        self._names: dict[str, str] = {}
        for route in config.routes:
            missing = route.template_name not in self._templates.templates
            if missing:
                raise ValueError(f"route {route.industry!r}: no prompt template {route.template_name!r} in "
                                 f"{self._templates.directory}")
            for key in (route.industry, *route.aliases):
                self._names[key.casefold()] = route.industry

    def _known(self) -> str:
        return "; ".join(
            f"{r.industry} ({', '.join(r.aliases)})" if r.aliases else r.industry for r in self._routes.values()
        )

    def industry_of(self, name: str) -> str:
        """The industry id for an id or alias; 400 listing the known ones otherwise."""
        industry = self._names.get(name.strip().casefold())
        if industry is None:
            raise InvalidRequestError(f"unknown industry {name!r}; known industries: {self._known()}", "industry")
        return industry

    def context_tokens(self, model: str) -> int:
        """The model's context: prompt plus answer, in tokens."""
        return self._config.model(model).engine.max_model_len

    async def resolve(self, name: str) -> RoutePlan:
        """An OpenAI ``model`` field: a route (industry or alias) or a model name."""
        if name in self._models:
            return RoutePlan(model=name)
        industry = self._names.get(name.strip().casefold())
        if industry is None:
            raise NotFoundError(
                f"model {name!r} does not exist; use a model ({', '.join(sorted(self._models))}) "
                f"or an industry route ({self._known()})", "model")
        return await self._route(industry)

    async def _route(self, industry: str) -> RoutePlan:
        """The live table's choice for an industry when it has one, else the config's route."""
        live = await self._live.get(industry)
        if live and live.variants:
            v = pick(live.variants)
            if v["model"] in self._models:
                return RoutePlan(model=v["model"], industry=industry, adapter=v.get("adapter"), variant=v["name"],
                                 shadow=live.shadow)
        return RoutePlan(model=self._routes[industry].model, industry=industry)

    async def live_routes(self) -> dict[str, LiveRoute]:
        return await self._live.all()

    async def plan_copy(self, industry: str, product: str, keywords: list[str], tone: str | None,
                        length: Length, language: Language | None) -> CopyPlan:
        """Pick the route for a copy request and render its prompt from the industry template."""
        route = self._routes[self.industry_of(industry)]
        if language is None:
            cjk_request = CJK.search(" ".join([industry, product, *keywords]))
            language = "zh" if cjk_request else self._config.server.default_language
        messages = self._templates.render(route.template_name, language, product=product, keywords=keywords,
                                          tone=tone, length=length)
        return CopyPlan(await self._route(route.industry), language, messages, self._templates.budget(length),
                        route.quality)

    async def routes(self) -> list[dict]:
        """The route table as clients see it (for /v1/models and the web page's template library)."""
        return [
            {"industry": r.industry, "aliases": list(r.aliases), "model": r.model,
             "labels": self._templates.templates[r.template_name].labels,
             "examples": self._templates.templates[r.template_name].examples}
            for r in self._routes.values()
        ]
