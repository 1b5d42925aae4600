"""Sentiment deployment: scores copy in [0, 1] (1 = most positive), batched with ``serve.batch``.

Backends: ``lexicon`` (offline default: TextBlob's shipped English lexicon, SnowNLP's shipped
Chinese model) and ``transformers`` (a text-classification pipeline per language).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod

from ray import serve

from contracts.config import SentimentConfig
from contracts.process import freeze_startup_heap
from deployments.text.draft import Draft, detect_language

logger = logging.getLogger("copyserve.sentiment")
POSITIVE_FROM, NEGATIVE_BELOW = 0.6, 0.4


def label_of(score: float) -> str:
    return "positive" if score >= POSITIVE_FROM else "negative" if score < NEGATIVE_BELOW else "neutral"


class SentimentBackend(ABC):
    @abstractmethod
    def score(self, texts: list[str], languages: list[str]) -> list[float]:
        """One score in [0, 1] per text."""


class LexiconBackend(SentimentBackend):
    """Offline: TextBlob polarity (English lexicon) and SnowNLP's review model (Chinese; ``zh_sentiment``)."""

    def __init__(self):
        from textblob import TextBlob

        from deployments.text.zh_sentiment import ReviewBayes

        self._en, self._zh = TextBlob, ReviewBayes()

    def score(self, texts: list[str], languages: list[str]) -> list[float]:
        scores = []
        for text, language in zip(texts, languages, strict=True):
            if not text.strip():
                scores.append(0.5)
            elif language == "zh":
                scores.append(self._zh.positive(text))
            else:
                scores.append((self._en(text).sentiment.polarity + 1) / 2)
        return scores


class TransformersBackend(SentimentBackend):
    """A ``text-classification`` pipeline per language; the score is the positive class's probability."""

    def __init__(self, models: dict[str, str], batch_size: int):
        from transformers import pipeline

        self._pipes = {lang: pipeline("text-classification", model=path, tokenizer=path, top_k=None,
                                      truncation=True, device="cpu")
                       for lang, path in models.items()}
        self._positive = {lang: self._positive_label(p.model.config.id2label) for lang, p in self._pipes.items()}
        self._batch_size = batch_size

    @staticmethod
    def _positive_label(id2label: dict) -> str:
        labels = [str(v) for v in id2label.values()]
        named = [lab for lab in labels if lab.lower().startswith("pos")]
        return named[0] if named else labels[-1]  # binary models without names: the last class is positive

    def score(self, texts: list[str], languages: list[str]) -> list[float]:
        scores: list[float] = [0.5] * len(texts)
        for lang, pipe in self._pipes.items():
            idx = [i for i, lg in enumerate(languages) if lg == lang]
            if not idx:
                continue
            results = pipe([texts[i] for i in idx], batch_size=self._batch_size)
            for i, classes in zip(idx, results, strict=True):
                scores[i] = next(c["score"] for c in classes if c["label"] == self._positive[lang])
        return scores


def make_backend(config: SentimentConfig) -> SentimentBackend:
    if config.backend == "transformers":
        return TransformersBackend(config.models, config.max_batch_size)
    return LexiconBackend()


class Sentiment:
    """Scores each Draft; concurrent requests are scored together in batches."""

    def __init__(self, config: SentimentConfig):
        self.config = config
        self.backend = make_backend(config)
        self.score_batch.set_max_batch_size(config.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        freeze_startup_heap()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0)
    async def score_batch(self, items: list[tuple[str, str]]) -> list[float]:
        texts, languages = [t for t, _ in items], [lg for _, lg in items]
        # Scoring is CPU work: keep the replica's event loop free to collect the next batch.
        return await asyncio.to_thread(self.backend.score, texts, languages)

    async def analyze(self, text: str, language: str | None = None) -> dict:
        language = language or detect_language(text)
        score = await self.score_batch((text, language))
        return {"label": label_of(score), "score": round(score, 4), "language": language}

    async def process(self, draft: Draft) -> Draft:
        started = time.perf_counter()
        draft.sentiment = await self.analyze(draft.text, detect_language(draft.text) if draft.text else draft.language)
        draft.timings["sentiment_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return draft
