"""The Chinese lexicon sentiment: SnowNLP's own model and arithmetic, without loading the package's segmenter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deployments.text.zh_sentiment import ReviewBayes

REVIEWS = ["这双鞋非常好，质量很棒，穿着舒服，我很喜欢！", "质量太差了，穿了一天就坏了，非常失望，很难用。",
           "价格实惠，物流很快，推荐购买", "客服态度恶劣，退货麻烦"]


@pytest.fixture(scope="module")
def bayes() -> ReviewBayes:
    return ReviewBayes()


def test_same_words_give_snownlps_own_score(bayes):
    from snownlp import sentiment as snownlp_sentiment  # loads the whole package: in this test only
    for text in REVIEWS:
        words = bayes.words(text)
        label, prob = snownlp_sentiment.classifier.classifier.classify(words)
        expected = prob if label == "pos" else 1 - prob
        assert bayes.positive_of_words(words) == pytest.approx(expected, abs=1e-9), text


def test_praise_scores_above_complaint_and_stop_words_are_dropped(bayes):
    assert bayes.positive(REVIEWS[0]) > 0.9 > 0.1 > bayes.positive(REVIEWS[1])
    assert bayes.positive(REVIEWS[2]) > 0.6 > 0.4 > bayes.positive(REVIEWS[3])
    assert "的" not in bayes.words("我的鞋")


def test_a_very_long_text_does_not_overflow(bayes):
    assert 0.0 <= bayes.positive("非常失望，" * 5000) < 0.01
    assert bayes.positive("") == pytest.approx(bayes.positive_of_words([]))


def test_the_lexicon_backend_does_not_load_snownlps_segmenter():
    code = ("import sys; from deployments.sentiment import LexiconBackend; b = LexiconBackend(); "
            "print(b.score(['质量很棒'], ['zh'])[0] > 0.5, any(m.startswith('snownlp') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
