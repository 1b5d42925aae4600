"""Channels: copy shaped for where it runs, with each platform's hard limits (``rules/channels.yaml``).

A limit holds by construction: the engine writes JSON under a schema whose ``maxLength`` per field is
the most characters that can never break the platform's own unit for the copy's language (a Chinese
character is 2 in ``width``, so a 30-width headline gets 15). The prompt names a shorter target, so
the model ends its sentences before the ceiling; a field that still reaches the ceiling, or breaks
its unit (English copy with a wide character), is trimmed back to a word or clause boundary.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CATALOGUE_FILE = Path(__file__).parent / "rules" / "channels.yaml"
Unit = Literal["characters", "width", "gbk_bytes", "x_weighted", "sms_segments"]
TARGET_SHARE = 0.8  # the prompt asks for this share of the ceiling: room to end a sentence
SHORTEST_SHRUNK_FIELD = 10  # characters: below this a field is not worth writing, and the context too small

# GSM 03.38: the basic set (1 septet) and the extension set (2 septets: escape + character).
GSM7_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")
# twitter-text v3: code points in these ranges weigh 1, every other one 2 (of a 280 budget).
X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
CLAUSE_END = "，。！？；、,.!?;:：…"
DANGLING = {"a", "an", "the", "and", "or", "but", "to", "of", "for", "with", "in", "on", "at", "by", "your", "our",
            "from", "that", "is", "are", ""}


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def measure(text: str, unit: Unit) -> int:
    """``text``'s length in ``unit``, as the platform counts it."""
    if unit == "characters":
        return len(text)
    if unit == "width":
        return sum(2 if _wide(c) else 1 for c in text)
    if unit == "gbk_bytes":  # as Taobao counts: ASCII 1, any other character 2 (a Chinese character's GBK size)
        return sum(1 if ord(c) < 128 else 2 for c in text)
    if unit == "x_weighted":
        return sum(1 if any(lo <= ord(c) <= hi for lo, hi in X_LIGHT_RANGES) else 2 for c in text)
    # sms_segments
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        septets = len(text) + sum(1 for c in text if c in GSM7_EXTENDED)
        return 1 if septets <= 160 else -(-septets // 153)
    return 1 if len(text) <= 70 else -(-len(text) // 67)


class ChannelField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]{0,30}$")
    limit: int = Field(..., ge=1)
    unit: Unit = "characters"
    count: int = Field(1, ge=1, le=15, description="How many the copy writes; a list when more than 1.")
    source: str = Field(..., min_length=1, description="Where the limit comes from.")

    def max_chars(self, language: str) -> int:
        """The most characters that can never break the limit in ``language`` (the schema's maxLength)."""
        if self.unit == "sms_segments":
            return 70 if language == "zh" else 160  # UCS-2 / GSM-7 in one segment (re-checked after)
        if self.unit == "characters":
            return self.limit
        return self.limit // 2 if language == "zh" else self.limit  # CJK counts 2 (English re-checked after)

    def value_in(self, fields: dict, j: int) -> str:
        """The field's ``j``-th text in an answer's fields (its only one when count is 1)."""
        return fields[self.name][j] if self.count > 1 else fields[self.name]

    def put(self, fields: dict, j: int, text: str) -> None:
        if self.count > 1:
            fields[self.name][j] = text
        else:
            fields[self.name] = text

    def public(self) -> dict:
        return {"name": self.name, "limit": self.limit, "unit": self.unit, "count": self.count,
                "max_chars": {"en": self.max_chars("en"), "zh": self.max_chars("zh")}, "source": self.source}


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., pattern=r"^[a-z][a-z0-9-]{1,40}$")
    label: dict[Literal["en", "zh"], str]
    languages: list[Literal["en", "zh"]] = Field(..., min_length=1)
    fields: list[ChannelField] = Field(..., min_length=1)

    def public(self) -> dict:
        return {"id": self.id, "label": self.label, "languages": self.languages,
                "fields": [f.public() for f in self.fields]}

    def json_schema(self, language: str) -> dict:
        """The engine's constraint: every field present, non-empty and within its ceiling."""
        properties = {}
        for f in self.fields:
            text = {"type": "string", "minLength": 1, "maxLength": f.max_chars(language)}
            properties[f.name] = text if f.count == 1 else {"type": "array", "items": text,
                                                             "minItems": f.count, "maxItems": f.count}
        return {"type": "object", "properties": properties, "required": [f.name for f in self.fields],
                "additionalProperties": False}

    def instructions(self, language: str) -> str:
        """What the prompt tells the model: the fields, how many, and a target under each ceiling."""
        parts = []
        for f in self.fields:
            target = max(1, int(f.max_chars(language) * TARGET_SHARE))
            if language == "zh":
                many = f"{f.count} 条，" if f.count > 1 else ""
                parts.append(f"{f.name}（{many}每条不超过 {target} 个字）")
            else:
                many = f"{f.count} items, " if f.count > 1 else ""
                parts.append(f"{f.name} ({many}each at most {target} characters)")
        # The channel's name stays out: small models copy it into the fields.
        if language == "zh":
            return f"只用 JSON 回答，字段：{'；'.join(parts)}。每个字段都是关于这个产品的文案，写完整的句子，不要截断。"
        return (f"Answer with JSON only, fields: {'; '.join(parts)}. Each field is copy about the product; "
                "end every field on a complete word or sentence.")

    def max_tokens(self, language: str) -> int:
        """A token budget the whole answer fits in: at worst a token per character (three for a Chinese
        character a tokenizer spells in bytes), plus the JSON around the fields."""
        per_char = 3 if language == "zh" else 1
        return sum(f.count * (f.max_chars(language) * per_char + 8) for f in self.fields) + 16

    def within(self, language: str, budget_tokens: int) -> Channel:
        """This channel with its longest fields shortened until a whole answer fits ``budget_tokens`` (what the
        model's context leaves after the prompt), so the engine always closes the JSON: a 1,000-character note
        body on a 2,048-token model would otherwise run out of context mid-field. Limits only ever shrink."""
        per_char, channel = (3 if language == "zh" else 1), self
        while (over := channel.max_tokens(language) - budget_tokens) > 0:
            longest = max((f for f in channel.fields if f.unit != "sms_segments"),
                          key=lambda f: f.count * f.max_chars(language), default=None)
            if longest is None:
                break
            chars = longest.max_chars(language) - -(-over // (per_char * longest.count))  # ceiling division
            if chars < SHORTEST_SHRUNK_FIELD:
                break  # the context cannot hold this channel: the answer's end says so (a 400 naming max_tokens)
            limit = chars * longest.limit // longest.max_chars(language)  # the same share in the field's unit
            channel = channel.model_copy(update={"fields": [f.model_copy(update={"limit": limit}) if f is longest
                                                            else f for f in channel.fields]})
        return channel

    def fit(self, answer: dict, language: str) -> dict[str, str | list[str]]:
        """The model's JSON as fields that hold every limit: stripped, and trimmed at a boundary when a
        field reached its ceiling or breaks its unit."""
        fields: dict[str, str | list[str]] = {}
        for f in self.fields:
            value = answer.get(f.name)
            values = value if isinstance(value, list) else [value]
            fitted = [fit_text(str(v or ""), f, language) for v in values][:f.count]
            fitted += [""] * (f.count - len(fitted))  # the schema asks exactly count; never index past it
            fields[f.name] = fitted if f.count > 1 else (fitted[0] if fitted else "")
        return fields

    def fill(self, fields: dict, others: list[dict]) -> dict:
        """``fields`` with each empty slot taken from another attempt at the same copy that wrote it (a text not
        used yet): a placement is not answered with an empty slot that one attempt did write."""
        filled = {k: list(v) if isinstance(v, list) else v for k, v in fields.items()}
        for f in self.fields:
            for j in range(f.count):
                if f.value_in(filled, j):
                    continue
                used = {f.value_in(filled, i) for i in range(f.count)}
                spare = (f.value_in(o, i) for o in others for i in range(f.count) if o.get(f.name) is not None)
                f.put(filled, j, next((t for t in spare if t and t not in used), ""))
        return filled

    def display(self, fields: dict[str, str | list[str]]) -> str:
        """The fields as one text, one line each (for ``text``, sentiment and the studio)."""
        lines = []
        for f in self.fields:
            value = fields.get(f.name, "")
            lines.extend(value if isinstance(value, list) else [value])
        return "\n".join(line for line in lines if line)


def fit_text(text: str, field: ChannelField, language: str) -> str:
    text = " ".join(text.split())
    ceiling = field.max_chars(language)
    if len(text) < ceiling and measure(text, field.unit) <= field.limit:
        return close_on_word(text, language)
    while text and (len(text) > ceiling or measure(text, field.unit) > field.limit):
        text = text[:-1]
    return trim_to_boundary(text, language)


def close_on_word(text: str, language: str) -> str:
    """A field the model closed itself on a separator or on a word no sentence ends on ("... and it's called
    the", "free resource for,") ends at the clause or word before it; one with no word a sentence ends on (bare
    punctuation, "The") is empty, and written again."""
    if language == "zh" or not text:
        return text
    words = [w.lower().strip(",;:-–—/(&.") for w in text.split(" ")]
    if all(w in DANGLING or not any(c.isalnum() for c in w) for w in words):
        return ""
    text = re.sub(r"[\s,;:\-–—/(&]+$", "", text)
    if " " in text and text.rsplit(" ", 1)[-1].lower() in DANGLING:
        return trim_to_boundary(text, language)
    return text


def trim_to_boundary(text: str, language: str) -> str:
    """Cut a text that stopped at its ceiling back to where a reader would stop: the last clause end
    (Chinese, or English with one in the last half) that does not leave a word no sentence ends on ("...
    gardening and,"), else the last whole word."""
    for i in range(len(text) - 1, len(text) // 2 - 1, -1):
        if text[i] in CLAUSE_END:
            cut = text[: i + 1].rstrip("，、,;:：")
            if language == "zh" or cut.rsplit(" ", 1)[-1].lower() not in DANGLING:
                return cut
    if language != "zh" and " " in text:
        words = text.rsplit(" ", 1)[0].split(" ")
        while len(words) > 1 and words[-1].lower().strip(",;:-–—/(&") in DANGLING:
            words.pop()  # "a guide to a" ends on a word no sentence ends on
        return re.sub(r"[\s,;:\-–—/(&]+$", "", " ".join(words))
    return text


def parse_answer(text: str) -> dict | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


@cache
def catalogue(path: Path = CATALOGUE_FILE) -> dict[str, Channel]:
    """Every channel by id, validated (a broken file fails the service at start, naming the entry)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    channels = [Channel.model_validate(entry) for entry in raw]
    ids = [c.id for c in channels]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: channel ids must be unique: {ids}")
    return {c.id: c for c in channels}
