"""Prompt templates per industry and language, read from YAML files (not code).

A template file holds a system and a user Jinja template per language, display labels, and
examples for the web studio. ``lengths.yaml`` maps ``short/medium/long`` to a hint and a budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, ValidationError

Language = Literal["en", "zh"]
Length = Literal["short", "medium", "long"]
BUILTIN_DIR = Path(__file__).parent / "templates"
LENGTHS_FILE = "lengths.yaml"


class LanguagePrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str
    user: str


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    labels: dict[str, str]
    en: LanguagePrompt
    zh: LanguagePrompt
    examples: list[dict] = []


class LengthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    en: str
    zh: str
    max_tokens: int


class TemplateLibrary:
    """All templates of one folder, parsed and compiled once."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else BUILTIN_DIR
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.templates: dict[str, PromptTemplate] = {}
        for path in sorted(self.directory.glob("*.yaml")):
            if path.name != LENGTHS_FILE:
                self.templates[path.stem] = _parse(path, PromptTemplate)
        lengths = yaml.safe_load((self.directory / LENGTHS_FILE).read_text(encoding="utf-8"))
        self.lengths = {k: LengthSpec.model_validate(v) for k, v in lengths.items()}
        # Compiled now and kept: a broken template fails the deploy, not a request, and a request only renders.
        self._compiled: dict[tuple[str, str, str], Template] = {}
        for name, tpl in self.templates.items():
            for lang in ("en", "zh"):
                for part in ("system", "user"):
                    try:
                        self._compiled[name, lang, part] = self._env.from_string(getattr(getattr(tpl, lang), part))
                    except TemplateError as err:
                        raise ValueError(f"{self.directory / name}.yaml: {lang}.{part}: {err}") from None

    def render(self, name: str, language: Language, *, product: str, keywords: list[str], tone: str | None,
               length: Length) -> list[dict]:
        """Chat messages (system + user) for one copy request."""
        variables = {"product": product, "keywords": keywords, "tone": tone,
                     "length_hint": getattr(self.lengths[length], language)}
        return [{"role": part, "content": self._compiled[name, language, part].render(variables).strip()}
                for part in ("system", "user")]

    def budget(self, length: Length) -> int:
        return self.lengths[length].max_tokens


def _parse(path: Path, schema: type[BaseModel]) -> BaseModel:
    try:
        return schema.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as err:
        raise ValueError(f"{path}: {err}") from None
