"""Sentiment: language detection, the lexicon backend (TextBlob, SnowNLP), batching through serve.batch,
and the transformers backend on a tiny classifier built locally (no hub)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray import serve

from contracts.config import SentimentConfig, models_home
from deployments.sentiment import LexiconBackend, Sentiment, SentimentBackend, TransformersBackend, label_of
from deployments.text.draft import Draft, detect_language

EN_POSITIVE = "I love these shoes, they are wonderful, beautiful and perfect for running!"
EN_NEGATIVE = "Terrible shoes. The quality is awful and they broke after a day, I hate them."
ZH_POSITIVE = "这双鞋非常好，质量很棒，穿着舒服，我很喜欢！"
ZH_NEGATIVE = "质量太差了，穿了一天就坏了，非常失望，很难用。"


@pytest.fixture(autouse=True)
def serve_batch_outside_serve(monkeypatch):
    """serve.batch (Ray 2.60) reads the replica context when its queue is created and on every
    set_max_batch_size once it exists; outside a replica that raises, so give it one.

    The queue is one per decorated function (shared by all Sentiment instances) and bound to the event
    loop of its first call; each test has its own loop, so drop the queue after each test."""
    context = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=1000))
    monkeypatch.setattr(serve, "get_replica_context", lambda: context)
    yield
    lazy_queue = Sentiment.score_batch._get_max_batch_size.__self__
    if lazy_queue._queue is not None:
        lazy_queue._queue._handle_batch_task.cancel()  # its loop is closing anyway
        lazy_queue._queue._handle_batch_task = None  # so the queue's __del__ does not open a new loop
        lazy_queue._queue = None


@pytest.fixture(scope="module")
def lexicon() -> LexiconBackend:
    return LexiconBackend()


class RecordingBackend(SentimentBackend):
    """Scores by text length so each answer can be traced back to its text; records every batch."""

    def __init__(self):
        self.batches: list[tuple[list[str], list[str]]] = []

    def score(self, texts: list[str], languages: list[str]) -> list[float]:
        self.batches.append((list(texts), list(languages)))
        return [len(t) / 100 for t in texts]


# --- language and labels -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "language"),
    [("这款跑鞋轻盈透气，适合日常通勤。", "zh"),
     ("Lightweight running shoes for every day.", "en"),
     ("SUNYAL跑鞋，轻盈透气，适合跑步。", "zh"),  # mixed, mostly Chinese
     ("Meet SUNYAL 跑鞋, the lightest running shoes of the year.", "en"),  # mixed, mostly English
     ("abcd中", "zh"),  # exactly 20% Chinese letters
     ("abcde中", "en"),  # just under 20%
     ("", "en"), ("123 !!! 4.5", "en")],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("score", "label"),
    [(1.0, "positive"), (0.6, "positive"), (0.5999, "neutral"), (0.5, "neutral"), (0.4, "neutral"),
     (0.3999, "negative"), (0.0, "negative")],
)
def test_label_of_thresholds(score, label):
    assert label_of(score) == label


# --- lexicon backend ---------------------------------------------------------------------------

def test_lexicon_scores_clear_sentiment_in_both_languages(lexicon):
    pos_en, neg_en, pos_zh, neg_zh = lexicon.score([EN_POSITIVE, EN_NEGATIVE, ZH_POSITIVE, ZH_NEGATIVE],
                                                   ["en", "en", "zh", "zh"])
    assert pos_en > 0.6 and pos_zh > 0.6
    assert neg_en < 0.4 and neg_zh < 0.4
    assert all(0 <= s <= 1 for s in (pos_en, neg_en, pos_zh, neg_zh))


def test_lexicon_blank_text_is_neutral(lexicon):
    assert lexicon.score(["", "   "], ["en", "zh"]) == [0.5, 0.5]


def test_lexicon_needs_one_language_per_text(lexicon):
    with pytest.raises(ValueError):
        lexicon.score(["a", "b"], ["en"])


# --- Sentiment (serve.batch in plain asyncio) --------------------------------------------------

async def test_analyze_returns_label_score_and_language():
    sentiment = Sentiment(SentimentConfig())
    assert isinstance(sentiment.backend, LexiconBackend)
    for text, language, label in [(EN_POSITIVE, "en", "positive"), (ZH_NEGATIVE, "zh", "negative")]:
        result = await sentiment.analyze(text)
        assert set(result) == {"label", "score", "language"}
        assert result["language"] == language and result["label"] == label
        assert 0 <= result["score"] <= 1 and result["score"] == round(result["score"], 4)
        assert label_of(result["score"]) == result["label"]


async def test_analyze_language_given_overrides_detection():
    sentiment = Sentiment(SentimentConfig())
    sentiment.backend = stub = RecordingBackend()
    result = await sentiment.analyze("hello", language="zh")
    assert result == {"label": "negative", "score": 0.05, "language": "zh"}
    assert stub.batches == [(["hello"], ["zh"])]


async def test_concurrent_analyze_calls_are_batched():
    sentiment = Sentiment(SentimentConfig(max_batch_size=16, batch_wait_timeout_s=0.05))
    sentiment.backend = stub = RecordingBackend()
    texts = ["a" * 10, "b" * 20, "很好" * 5, "c" * 40, "d" * 50]
    results = await asyncio.gather(*(sentiment.analyze(t) for t in texts))
    assert [len(texts) for texts, _ in stub.batches] == [5]
    assert stub.batches[0] == (texts, ["en", "en", "zh", "en", "en"])
    assert [r["score"] for r in results] == [0.1, 0.2, 0.1, 0.4, 0.5]  # each caller gets its own text's score
    assert [r["language"] for r in results] == ["en", "en", "zh", "en", "en"]


async def test_without_a_batch_window_requests_that_wait_together_still_share_a_batch():
    sentiment = Sentiment(SentimentConfig())  # batch_wait_timeout_s 0: a lone request is never held
    sentiment.backend = stub = RecordingBackend()
    results = await asyncio.gather(*(sentiment.analyze("x" * (i + 1)) for i in range(5)))
    assert sum(len(texts) for texts, _ in stub.batches) == 5 and len(stub.batches) <= 2
    assert [r["score"] for r in results] == [(i + 1) / 100 for i in range(5)]


async def test_batches_respect_configured_max_batch_size():
    sentiment = Sentiment(SentimentConfig(max_batch_size=4, batch_wait_timeout_s=5.0))
    sentiment.backend = stub = RecordingBackend()
    started = time.monotonic()
    results = await asyncio.gather(*(sentiment.analyze("x" * (i + 1)) for i in range(8)))
    assert [len(texts) for texts, _ in stub.batches] == [4, 4]
    assert time.monotonic() - started < 2.5  # full batches go at once, without waiting for the timeout
    assert [r["score"] for r in results] == [(i + 1) / 100 for i in range(8)]


async def test_process_sets_draft_sentiment():
    sentiment = Sentiment(SentimentConfig())
    draft = await sentiment.process(Draft(ZH_POSITIVE, "zh"))
    assert draft.sentiment["label"] == "positive" and draft.sentiment["language"] == "zh"
    empty = await sentiment.process(Draft("", "zh"))
    assert empty.sentiment == {"label": "neutral", "score": 0.5, "language": "zh"}


# --- transformers backend ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """A random 2-layer Llama sequence classifier with SmolLM2's tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from finetune.embedded_models import SMOLLM2, prepare

    source = prepare(models_home(), (SMOLLM2,))[SMOLLM2]  # a no-op when already prepared
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512,
                         num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                         pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-classifier")
    LlamaForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def transformers_backend(tiny_classifier) -> TransformersBackend:
    return TransformersBackend({"en": str(tiny_classifier), "zh": str(tiny_classifier)}, batch_size=4)


def test_transformers_positive_label_detected(transformers_backend):
    assert transformers_backend._positive == {"en": "POSITIVE", "zh": "POSITIVE"}


@pytest.mark.parametrize(
    ("id2label", "positive"),
    [({0: "LABEL_0", 1: "LABEL_1"}, "LABEL_1"), ({0: "NEGATIVE", 1: "POSITIVE"}, "POSITIVE"),
     ({0: "Positive", 1: "Negative"}, "Positive"), ({0: "neg", 1: "neutral", 2: "pos"}, "pos")],
)
def test_positive_label(id2label, positive):
    assert TransformersBackend._positive_label(id2label) == positive


def test_transformers_scores_en_and_zh_in_unit_range(transformers_backend):
    scores = transformers_backend.score([EN_POSITIVE, ZH_NEGATIVE], ["en", "zh"])
    assert len(scores) == 2 and all(isinstance(s, float) and 0 <= s <= 1 for s in scores)


def test_transformers_batch_gives_one_score_per_text_matching_single_scores(transformers_backend):
    texts = [EN_POSITIVE, ZH_POSITIVE, "ok", EN_NEGATIVE, ZH_NEGATIVE, "好", "Shoes."]
    languages = [detect_language(t) for t in texts]
    batch = transformers_backend.score(texts, languages)
    assert len(batch) == len(texts)
    singles = [transformers_backend.score([t], [lg])[0] for t, lg in zip(texts, languages, strict=True)]
    assert batch == pytest.approx(singles, abs=1e-4)  # padding in a batch does not change a text's score


def test_transformers_score_is_the_positive_class_probability(tiny_classifier, transformers_backend):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    with torch.no_grad():
        probs = model(**tokenizer(EN_POSITIVE, return_tensors="pt")).logits.softmax(-1)[0]
    assert transformers_backend.score([EN_POSITIVE], ["en"]) == pytest.approx([probs[1].item()], abs=1e-5)


def test_transformers_language_without_a_model_is_neutral(tiny_classifier):
    backend = TransformersBackend({"en": str(tiny_classifier)}, batch_size=2)
    scores = backend.score([EN_POSITIVE, ZH_POSITIVE], ["en", "zh"])
    assert scores[1] == 0.5 and 0 <= scores[0] <= 1


async def test_sentiment_with_transformers_backend(tiny_classifier):
    config = SentimentConfig(backend="transformers", models={"en": str(tiny_classifier), "zh": str(tiny_classifier)})
    sentiment = Sentiment(config)
    assert isinstance(sentiment.backend, TransformersBackend)
    results = await asyncio.gather(sentiment.analyze(EN_POSITIVE), sentiment.analyze(ZH_POSITIVE))
    assert [r["language"] for r in results] == ["en", "zh"]
    assert all(0 <= r["score"] <= 1 and r["label"] == label_of(r["score"]) for r in results)
