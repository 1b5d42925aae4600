"""What every config section shares: strict models, the slug pattern, the config error."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

SLUG = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
EMBEDDED_PREFIX = "embedded:"
DEFAULT_HOME = Path.home() / ".cache" / "copyserve"


class ConfigError(ValueError):
    """A config file that cannot be served; the message names the field and the fix."""


class Strict(BaseModel):
    """Unknown keys are errors: a typo in YAML must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
