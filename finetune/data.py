"""Training data: CSV (the seed's columns) or JSONL of (product_name, keywords, copy_text),
validated with errors that name the file, the line and the fix."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from deployments.text.draft import detect_language

REQUIRED = ("product_name", "keywords", "copy_text")


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message says where and why."""


@dataclass(frozen=True)
class Example:
    product: str
    keywords: tuple[str, ...]
    copy: str
    language: str


def _keywords(value) -> tuple[str, ...]:
    if isinstance(value, list):
        items = value
    else:
        text = str(value or "")
        items = text.split("|") if "|" in text else text.replace("、", ",").replace("，", ",").split(",")
    return tuple(k.strip() for k in items if str(k).strip())


def _rows(path: Path) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".jsonl":
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((line_no, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
        return rows
    if path.suffix.lower() != ".csv":
        raise DatasetError(f"{path}: use a .csv or .jsonl file")
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}; "
                               f"the header must have {', '.join(REQUIRED)}")
        return [(line_no, row) for line_no, row in enumerate(reader, 2)]


def load_examples(path: str | Path) -> list[Example]:
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    examples, problems, seen = [], [], {}
    for line_no, row in rows:
        if not isinstance(row, dict) or any(c not in row for c in REQUIRED):
            problems.append(f"line {line_no}: needs {', '.join(REQUIRED)}")
            continue
        product, copy_text = str(row["product_name"] or "").strip(), str(row["copy_text"] or "").strip()
        if not product or not copy_text:
            problems.append(f"line {line_no}: empty product_name or copy_text")
            continue
        key = (product.casefold(), copy_text.casefold())
        if key in seen:
            problems.append(f"line {line_no}: duplicate of line {seen[key]}")
            continue
        seen[key] = line_no
        examples.append(Example(product, _keywords(row["keywords"]), copy_text, detect_language(copy_text)))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DatasetError(f"{path}: {len(problems)} bad row(s): {shown}")
    return examples


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded held-out split; at least one example on each side."""
    if len(examples) < 2:
        raise DatasetError("need at least 2 rows: one to train on and one to evaluate")
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = min(len(shuffled) - 1, max(1, round(len(shuffled) * eval_fraction)))
    return shuffled[n_eval:], shuffled[:n_eval]


def dataset_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
