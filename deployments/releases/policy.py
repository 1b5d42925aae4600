"""An adapter's release policy and the decision it makes on its canary's evidence: roll back at once when the
canary breaks a threshold, promote once it has held them over enough answers. Pure: no Redis, no clock.

Rates are plain proportions over what the canary's version has recorded (live and shadowed answers alike),
judged once a minimum of samples is in: a rollback needs few (a broken version must not serve long), a promote
many. The win rate counts only decided pairs against stable's version (``evaluation.win_rate``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployments.releases.evaluation import pairs

CANARY, STABLE = "canary", "stable"


class ReleasePolicy(BaseModel):
    """What the canary of one adapter name must hold; stored with the name's releases."""

    model_config = ConfigDict(extra="forbid")

    auto_rollback: bool = Field(True, description="Move canary back onto stable's version as soon as it breaks "
                                "max_error_rate or max_flag_rate (after rollback_min_samples).")
    auto_promote: bool = Field(False, description="Move stable onto canary's version once canary has min_samples "
                               "answers within every threshold (and min_win_rate, where shadowed pairs exist).")
    max_error_rate: float | None = Field(None, ge=0, le=1, description="Failed requests / requests, at most.")
    max_flag_rate: float | None = Field(None, ge=0, le=1, description="Answers with a compliance flag / answers, "
                                        "at most.")
    min_win_rate: float | None = Field(None, ge=0, le=1, description="Shadowed wins / (wins + losses) against "
                                       "stable's version, at least, to promote.")
    min_samples: int = Field(200, ge=1, le=10_000_000, description="Answers canary needs before a promote.")
    rollback_min_samples: int = Field(20, ge=1, le=10_000_000, description="Requests (or scored answers, for the "
                                      "flag rate) canary needs before a rate can roll it back.")

    @model_validator(mode="after")
    def _coherent(self) -> ReleasePolicy:
        if self.auto_rollback and self.max_error_rate is None and self.max_flag_rate is None:
            raise ValueError("auto_rollback needs a threshold to break: set max_error_rate and/or max_flag_rate, "
                             "or auto_rollback: false")
        if self.rollback_min_samples > self.min_samples:
            raise ValueError(f"rollback_min_samples ({self.rollback_min_samples}) must not exceed min_samples "
                             f"({self.min_samples}): a rollback must be able to come before a promote")
        return self


@dataclass(frozen=True)
class Evidence:
    """The canary version's counts, read from its evaluation hash."""

    samples: int  # answers it wrote
    requests: int  # answers and failed requests: the error rate's denominator
    errors: int
    scored: int  # answers that went through polish: the flag rate's denominator
    flagged: int
    wins: int = 0  # shadowed pairs against stable's version
    losses: int = 0

    @classmethod
    def of(cls, fields: dict[str, str], stable_tag: str) -> Evidence:
        def count(field: str) -> int:
            return int(float(fields.get(field, 0)))

        shadowed = pairs(fields).get(stable_tag, {})
        return cls(count("samples"), count("error:n"), round(float(fields.get("error:sum", 0))), count("flagged:n"),
                   round(float(fields.get("flagged:sum", 0))), shadowed.get("win", 0), shadowed.get("loss", 0))


@dataclass(frozen=True)
class Verdict:
    action: str | None  # "rollback", "promote", or None: hold
    reason: str

    def public(self) -> dict:
        return {"action": self.action, "reason": self.reason}


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.1%} ({part} of {whole})"


def decide(policy: ReleasePolicy, e: Evidence) -> Verdict:
    """Roll back when a rate breaks its maximum over at least ``rollback_min_samples``; else promote when the
    canary has ``min_samples`` answers within every maximum and, if it has decided shadowed pairs, a win rate
    of at least ``min_win_rate``; else hold. Each verdict says why, in words the history keeps."""
    broken = []
    if policy.max_error_rate is not None and e.requests >= policy.rollback_min_samples \
            and e.errors / e.requests > policy.max_error_rate:
        broken.append(f"error rate {_rate(e.errors, e.requests)} over max_error_rate {policy.max_error_rate:.1%}")
    if policy.max_flag_rate is not None and e.scored >= policy.rollback_min_samples \
            and e.flagged / e.scored > policy.max_flag_rate:
        broken.append(f"compliance-flag rate {_rate(e.flagged, e.scored)} over max_flag_rate "
                      f"{policy.max_flag_rate:.1%}")
    if broken:
        if policy.auto_rollback:
            return Verdict("rollback", "auto rollback: " + "; ".join(broken))
        return Verdict(None, "breaks its thresholds (" + "; ".join(broken) + "), but auto_rollback is off")
    if e.samples < policy.min_samples:
        return Verdict(None, f"{e.samples} of the {policy.min_samples} answers a promote needs")
    held = [f"{e.samples} answers"]
    if policy.max_error_rate is not None and e.requests:
        held.append(f"error rate {_rate(e.errors, e.requests)} within {policy.max_error_rate:.1%}")
    if policy.max_flag_rate is not None and e.scored:
        held.append(f"compliance-flag rate {_rate(e.flagged, e.scored)} within {policy.max_flag_rate:.1%}")
    decided = e.wins + e.losses
    if policy.min_win_rate is not None and decided:
        if e.wins / decided < policy.min_win_rate:
            return Verdict(None, f"win rate {_rate(e.wins, decided)} under min_win_rate {policy.min_win_rate:.1%}")
        held.append(f"win rate {_rate(e.wins, decided)} at least {policy.min_win_rate:.1%}")
    if not policy.auto_promote:
        return Verdict(None, "holds its thresholds (" + ", ".join(held) + "), but auto_promote is off")
    return Verdict("promote", "auto promote: " + ", ".join(held))
