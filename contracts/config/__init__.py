"""The app's configuration: a pydantic schema, loaded from YAML and validated once at start.

The YAML file is the starting state of the service; everything the deployments need is read from
here (no ``os.environ`` in business logic). A bad file fails with the field path and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from contracts.config.base import DEFAULT_HOME, EMBEDDED_PREFIX, SLUG, ConfigError, Strict
from contracts.config.models import AutoscalingOptions, DeploymentOptions, EngineConfig, ModelConfig
from contracts.config.services import (
    AuthConfig,
    BatchConfig,
    CacheConfig,
    PolishConfig,
    RateLimit,
    RedisConfig,
    SentimentConfig,
    ServerConfig,
    SessionConfig,
)

__all__ = [
    "SLUG",
    "EMBEDDED_PREFIX",
    "DEFAULT_HOME",
    "ConfigError",
    "Strict",
    "EngineConfig",
    "AutoscalingOptions",
    "DeploymentOptions",
    "ModelConfig",
    "ServerConfig",
    "PolishConfig",
    "SentimentConfig",
    "RedisConfig",
    "CacheConfig",
    "RateLimit",
    "AuthConfig",
    "SessionConfig",
    "BatchConfig",
    "QualityConfig",
    "RouteConfig",
    "AppConfig",
    "models_home",
    "resolve_source",
    "parse_config",
    "load_config",
    "check_local_sources",
]


class QualityConfig(Strict):
    """The quality gate of one route: regenerate copy whose sentiment is below the floor."""

    sentiment_floor: float | None = Field(
        None, ge=0, le=1, description="Lowest acceptable sentiment score (0 negative .. 1 positive); None: no gate."
    )
    max_retries: int = Field(0, ge=0, le=5, description="Regenerations (with new seeds) allowed below the floor.")


class RouteConfig(Strict):
    """An industry: the model that writes its copy and the prompt template it uses."""

    industry: str = Field(..., pattern=SLUG, description="Industry id, e.g. `ecommerce`.")
    aliases: list[str] = Field(default_factory=list, description="Other names clients may use: `电商`, `e-commerce`.")
    model: str = Field(..., description="Name of a model in `models`.")
    template: str | None = Field(None, description="Prompt template file (without .yaml); defaults to the industry.")
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("aliases")
    @classmethod
    def _aliases_not_blank(cls, aliases: list[str]) -> list[str]:
        if any(not a.strip() for a in aliases):
            raise ValueError("aliases must not be blank")
        return [a.strip() for a in aliases]

    @property
    def template_name(self) -> str:
        return self.template or self.industry


class AppConfig(Strict):
    """The whole service: server options, model deployments and industry routes."""

    redis: RedisConfig = Field(default_factory=RedisConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    sessions: SessionConfig = Field(default_factory=SessionConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)

    server: ServerConfig = Field(default_factory=ServerConfig)
    polish: PolishConfig = Field(default_factory=PolishConfig)
    sentiment: SentimentConfig = Field(default_factory=SentimentConfig)
    models: list[ModelConfig] = Field(..., min_length=1)
    routes: list[RouteConfig] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> AppConfig:
        names = [m.name for m in self.models]
        _no_duplicates("models", names)
        _no_duplicates("routes", [r.industry for r in self.routes])
        if self.polish.mode == "llm" and self.polish.llm_model not in names:
            raise ValueError(f"polish.llm_model: `llm` mode needs one of the models ({', '.join(names)}), "
                             f"got {self.polish.llm_model!r}")
        for i, route in enumerate(self.routes):
            if route.model not in names:
                raise ValueError(f"routes.{i}.model: unknown model {route.model!r}; known models: {', '.join(names)}")
        seen: dict[str, str] = {}
        for route in self.routes:
            for key in [route.industry, *route.aliases]:
                folded = key.casefold()
                if seen.setdefault(folded, route.industry) != route.industry:
                    raise ValueError(f"routes.{route.industry}.aliases: {key!r} is used by both "
                                     f"{seen[folded]!r} and {route.industry!r}")
                if folded in {n.casefold() for n in names} and key != route.industry:
                    raise ValueError(f"alias {key!r} of route {route.industry!r} is also a model name")
        return self

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)


def _no_duplicates(what: str, keys: list[str]) -> None:
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"{what}: duplicate names {dupes}")


def models_home() -> Path:
    """Where `copyserve models prepare` writes embedded models (``COPYSERVE_HOME`` overrides)."""
    return Path(os.environ.get("COPYSERVE_HOME", DEFAULT_HOME)) / "models"


def resolve_source(source: str, base_dir: Path) -> str:
    """Turn ``embedded:<name>`` and relative paths into absolute folders; hub ids pass through."""
    if source.startswith(EMBEDDED_PREFIX):
        return str(models_home() / source[len(EMBEDDED_PREFIX):])
    if source.startswith((".", "/", "~")):
        return str((base_dir / Path(source).expanduser()).resolve())
    return source


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], base_dir: Path | None = None) -> AppConfig:
    """Validate a config mapping; relative model paths are resolved against ``base_dir``."""
    base_dir = base_dir or Path.cwd()
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config:\n{_format_validation_error(err)}") from None
    models = []
    for m in config.models:
        updates: dict[str, Any] = {"source": resolve_source(m.source, base_dir)}
        if m.tokenizer:
            updates["tokenizer"] = resolve_source(m.tokenizer, base_dir)
        if m.chat_template:
            updates["chat_template"] = resolve_source(m.chat_template, base_dir)
        models.append(m.model_copy(update=updates))
    server = config.server
    if server.templates_dir:  # always a folder: relative to the config file, whatever its spelling
        templates_dir = (base_dir / Path(server.templates_dir).expanduser()).resolve()
        server = server.model_copy(update={"templates_dir": str(templates_dir)})
    sentiment = config.sentiment.model_copy(
        update={"models": {k: resolve_source(v, base_dir) for k, v in config.sentiment.models.items()}})
    polish = config.polish
    if polish.rules_file:
        polish = polish.model_copy(update={"rules_file": str((base_dir / Path(polish.rules_file)).resolve())})
    return config.model_copy(update={"models": models, "server": server, "sentiment": sentiment, "polish": polish})


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a YAML config file; raises ConfigError with the field path on any problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with `models` and `routes`")
    try:
        return parse_config(data, base_dir=path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def check_local_sources(config: AppConfig) -> None:
    """Fail early when a local model folder is missing, with the command that creates it."""
    for i, m in enumerate(config.models):
        if Path(m.source).is_absolute() and not Path(m.source).is_dir():
            hint = " (run `copyserve models prepare`)" if str(models_home()) in m.source else ""
            raise ConfigError(f"models.{i}.source: model folder {m.source} does not exist{hint}")
