"""The one small interface post-processors share: a Draft goes in, a Draft comes out.

Each post-processor (Polish, Sentiment) is its own Serve deployment with ``async def
process(self, draft: Draft) -> Draft``; the ingress chains them after the model writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """``zh`` when a fair share of the letters are Chinese characters, else ``en``."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    return "zh" if sum(1 for c in letters if CJK.match(c)) / len(letters) >= 0.2 else "en"


@dataclass
class Draft:
    """One generated text on its way out: the raw model text, the current text, and findings."""

    text: str
    language: str
    industry: str | None = None
    finish_reason: str | None = None
    raw_text: str = ""
    edits: list[dict] = field(default_factory=list)
    sentiment: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)  # ms each post-processor spent on it, by step

    def __post_init__(self):
        self.raw_text = self.raw_text or self.text
