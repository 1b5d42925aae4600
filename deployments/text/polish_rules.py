"""Polish rules: pure functions from text to (text, edits), language-aware (en/zh), plus the
compliance rules read from ``deployments/text/rules/compliance.yaml``.

Every change is recorded as an Edit (rule, what was there, what replaced it, and where). Edits are
patches in order: ``start`` is the offset in the text as it stood when that edit was made, so
replaying the non-flagged edits one after another on the raw text gives the polished text (see
``replay``); that is what a client needs to show a diff.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

RULES_FILE = Path(__file__).parent / "rules" / "compliance.yaml"
CJK = r"\u3400-\u9fff\uf900-\ufaff"
SENTENCE_END = re.compile(rf"[.!?。！？…](?=[\"'”’)）]*(\s|$|[{CJK}]))")
ZH_PUNCT = {",": "，", ".": "。", "!": "！", "?": "？", ":": "：", ";": "；"}
EN_PUNCT = {"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")"}


@dataclass(frozen=True)
class Edit:
    rule: str
    before: str
    after: str
    start: int
    flagged: bool = False
    why: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _sub(rule: str, pattern: re.Pattern, text: str, repl: Callable[[re.Match], str]) -> tuple[str, list[Edit]]:
    """re.sub that records an Edit (with an in-order offset) for every match whose replacement differs."""
    edits: list[Edit] = []
    shift = 0

    def record(m: re.Match) -> str:
        nonlocal shift
        after = repl(m)
        if after != m.group(0):
            edits.append(Edit(rule, m.group(0), after, m.start() + shift))
            shift += len(after) - len(m.group(0))
        return after

    return pattern.sub(record, text), edits


def _strip(rule: str, text: str) -> tuple[str, list[Edit]]:
    """Strip surrounding whitespace, recorded like any other edit."""
    edits, stripped = [], text.lstrip()
    if len(stripped) < len(text):
        edits.append(Edit(rule, text[:len(text) - len(stripped)], "", 0))
    final = stripped.rstrip()
    if len(final) < len(stripped):
        edits.append(Edit(rule, stripped[len(final):], "", len(final)))
    return final, edits


def replay(text: str, edits: list[Edit] | list[dict]) -> str:
    """Apply edits in order (flagged ones change nothing): the raw text becomes the polished one."""
    for e in edits:
        e = e if isinstance(e, dict) else e.to_dict()
        if not e["flagged"]:
            start = e["start"]
            assert text[start:start + len(e["before"])] == e["before"], (e, text)
            text = text[:start] + e["after"] + text[start + len(e["before"]):]
    return text


# --- structure ---------------------------------------------------------------------------------

def trim_incomplete(text: str, finish_reason: str | None) -> tuple[str, list[Edit]]:
    """Generation stopped by the token budget mid-sentence: cut back to the last complete sentence."""
    if finish_reason != "length":
        return text, []
    ends = list(SENTENCE_END.finditer(text))
    if not ends:
        return text, []  # no complete sentence at all: keep what there is
    cut = ends[-1].end()
    while cut < len(text) and text[cut] in "\"'”’)）":
        cut += 1
    tail = text[cut:]
    if not tail.strip():
        return text, []
    return text[:cut].rstrip(), [Edit("trim_incomplete", tail, "", cut)]


QUOTES = "\"“”「」『』"
WRAPPING_QUOTES = re.compile(r'^(\s*["“「『]\s*)(.*?)(\s*["”」』]?\s*)$', re.S)


def strip_wrapping_quotes(text: str) -> tuple[str, list[Edit]]:
    """Small models like to wrap the whole answer in quotes (and lose the closing one when trimmed)."""
    m = WRAPPING_QUOTES.match(text)
    if not m or any(q in m.group(2) for q in QUOTES):
        return text, []
    body = m.group(2)
    edits = [Edit("strip_wrapping_quotes", m.group(1), "", 0)]
    if m.group(3):
        edits.append(Edit("strip_wrapping_quotes", m.group(3), "", len(body)))
    return body, edits


# A looped phrase has a letter in it (numbers like "8, 8.5" are lists, not loops) and is not
# followed by more of a number; short Chinese units must loop 3+ times (一步一步 is fine Chinese).
EN_REPEAT = re.compile(r"\b((?:\w+[\s,]+){0,5}?\w*[^\W\d_]\w*)(?:[\s,]+\1\b(?![.,]?\d))+", re.I)
ZH_REPEAT = re.compile(rf"([{CJK}]{{4,12}}?)(?:[，、,\s]*\1)+|([{CJK}]{{2,3}}?)(?:[，、,\s]*\2){{2,}}")


def collapse_repeats(text: str, language: str) -> tuple[str, list[Edit]]:
    """Loops of small models: a phrase said twice in a row, or a sentence said again later."""
    pattern = ZH_REPEAT if language == "zh" else EN_REPEAT
    text, edits = _sub("collapse_repeats", pattern, text, lambda m: m.group(1) or m.group(2))
    sentences = _split_sentences(text)
    seen, kept, offset = set(), [], 0
    for sentence in sentences:
        key = re.sub(r"\W+", " ", sentence).strip().casefold()
        if key and key in seen:
            edits.append(Edit("collapse_repeats", sentence, "", offset))
        else:
            seen.add(key)
            kept.append(sentence)
            offset += len(sentence)
    if len(kept) == len(sentences):
        return text, edits
    text, stripped = _strip("collapse_repeats", "".join(kept))
    return text, edits + stripped


def _split_sentences(text: str) -> list[str]:
    parts, start = [], 0
    for m in SENTENCE_END.finditer(text):
        end = m.end()
        while end < len(text) and text[end].isspace():
            end += 1
        parts.append(text[start:end])
        start = end
    if start < len(text):
        parts.append(text[start:])
    return parts


# --- punctuation and case -----------------------------------------------------------------------

# A space a model put before the mark ("很好 !") goes with it: Chinese sets none there.
# An ellipsis ("...") is not a full stop: its dots are left alone.
ZH_HALF_PUNCT = re.compile(rf"(?<=[{CJK}])[ \t]*((?!\.\.)[,.!?:;])(?![\d.])|(?<!\.)([,.!?:;])(?=[{CJK}])")
ZH_INNER_SPACE = re.compile(rf"(?<=[{CJK}，。！？：；、])[ \t]+(?=[{CJK}，。！？：；、])")
EN_FULL_PUNCT = re.compile("[" + "".join(EN_PUNCT) + "]")
EN_SPACE_BEFORE = re.compile(r"[ \t]+([,.!?;:])")
EN_NO_SPACE_AFTER = re.compile(r"([,!?;])(?=[A-Za-z])|(?<=[a-z])\.(?=[A-Z][a-z])")
MULTI_SPACE = re.compile(r"[ \t]{2,}")


def normalize_punctuation(text: str, language: str) -> tuple[str, list[Edit]]:
    """zh: full-width punctuation next to Chinese, no spaces between Chinese characters.
    en: no full-width punctuation, no space before punctuation, one space after it."""
    edits: list[Edit] = []
    steps: list[tuple[re.Pattern, Callable[[re.Match], str]]]
    if language == "zh":
        steps = [(ZH_HALF_PUNCT, lambda m: ZH_PUNCT[m.group(1) or m.group(2)]), (ZH_INNER_SPACE, lambda m: "")]
    else:
        steps = [(EN_FULL_PUNCT, lambda m: EN_PUNCT[m.group(0)] + ("" if m.group(0) in "（" else " ")),
                 (EN_SPACE_BEFORE, lambda m: m.group(1)), (EN_NO_SPACE_AFTER, lambda m: m.group(0) + " ")]
    steps.append((MULTI_SPACE, lambda m: " "))
    for pattern, repl in steps:
        text, found = _sub("punctuation", pattern, text, repl)
        edits += found
    text, stripped = _strip("punctuation", text)
    return text, edits + stripped


SENTENCE_START = re.compile(r"(^|[.!?]\s+|\n\s*)([a-z])(?![a-z]*[A-Z])")  # not "iPhone"


def capitalize_sentences(text: str, language: str) -> tuple[str, list[Edit]]:
    """English sentences start with a capital letter."""
    if language != "en":
        return text, []
    return _sub("capitalize", SENTENCE_START, text, lambda m: m.group(1) + m.group(2).upper())


# --- compliance ----------------------------------------------------------------------------------

class ComplianceRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    terms: list[str] = Field(..., min_length=1)
    exceptions: list[str] = Field(default_factory=list, description="Phrases containing a term that are fine.")
    action: Literal["replace", "flag"]
    replacement: str | None = None
    why: str

    @model_validator(mode="after")
    def _replacement_for_replace(self) -> ComplianceRule:
        if self.action == "replace" and self.replacement is None:
            raise ValueError("a `replace` rule needs a `replacement`")
        return self

    def pattern(self) -> re.Pattern:
        return _terms_pattern(tuple(self.terms))


@functools.lru_cache(maxsize=1024)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern:
    alternatives = []
    for term in sorted(terms, key=len, reverse=True):  # longest first: 保本保息 before 保本
        escaped = re.escape(term)
        alternatives.append(rf"\b{escaped}\b" if term.isascii() else escaped)
    return re.compile("|".join(alternatives), re.I)


def load_compliance(path: Path = RULES_FILE) -> dict[str, list[ComplianceRule]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return {industry: [ComplianceRule.model_validate(r) for r in rules] for industry, rules in data.items()}
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def apply_compliance(text: str, rules: list[ComplianceRule]) -> tuple[str, list[Edit]]:
    """Replace forbidden terms, or flag them (text kept, edit reported with flagged=True)."""
    edits: list[Edit] = []
    for rule in rules:
        allowed = [m.span() for m in _terms_pattern(tuple(rule.exceptions)).finditer(text)] if rule.exceptions else []
        shift = 0

        def repl(m: re.Match, rule: ComplianceRule = rule, allowed: list = allowed) -> str:
            nonlocal shift
            if any(a <= m.start() < b for a, b in allowed):  # e.g. 第一时间 ("at once") is not a claim
                return m.group(0)
            if rule.action == "flag":
                edits.append(Edit("compliance", m.group(0), m.group(0), m.start() + shift, flagged=True,
                                  why=rule.why))
                return m.group(0)
            after = rule.replacement
            if m.group(0)[:1].isupper():  # keep a sentence-initial capital
                after = after[:1].upper() + after[1:]
            edits.append(Edit("compliance", m.group(0), after, m.start() + shift, why=rule.why))
            shift += len(after) - len(m.group(0))
            return after

        text = rule.pattern().sub(repl, text)
    return text, edits


def polish_text(text: str, language: str, finish_reason: str | None,
                compliance: list[ComplianceRule]) -> tuple[str, list[Edit]]:
    """All rules in order: punctuation before repeats (glued sentences split), compliance last."""
    edits: list[Edit] = []
    for step in (
        lambda t: trim_incomplete(t, finish_reason),
        strip_wrapping_quotes,
        lambda t: normalize_punctuation(t, language),
        lambda t: collapse_repeats(t, language),
        lambda t: capitalize_sentences(t, language),
        lambda t: apply_compliance(t, compliance),
    ):
        text, found = step(text)
        edits += found
    return text, edits
