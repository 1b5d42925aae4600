"""Chinese sentiment: SnowNLP's review-trained naive Bayes model, with words from jieba-rs.

``import snownlp`` loads every model the package ships (its character trigram segmenter, the
part-of-speech tagger, pinyin): ~410 MiB of Python dicts in every Sentiment replica, of which scoring
uses only the classifier's ~1 MiB of word counts. So the counts and the stop words are read from the
package's own data files (found without importing it), and the words come from ``rjieba`` (jieba's
dictionary in Rust: ~33 MiB, microseconds per text). The arithmetic is SnowNLP's ``Bayes.classify``
with its add-one smoothing; scores differ from ``SnowNLP(text).sentiments`` only where the two
segmenters cut a sentence differently.
"""

from __future__ import annotations

import gzip
import importlib.util
import marshal
import math
from pathlib import Path

import rjieba


def _package_dir() -> Path:
    spec = importlib.util.find_spec("snownlp")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the lexicon sentiment backend needs the snownlp package for its Chinese model")
    return Path(next(iter(spec.submodule_search_locations)))


class ReviewBayes:
    """P(positive | words) under SnowNLP's two-class model (``pos``/``neg``), trained on shop reviews."""

    def __init__(self, package_dir: Path | None = None):
        root = package_dir or _package_dir()
        with gzip.open(root / "sentiment" / "sentiment.marshal.3", "rb") as f:
            model = marshal.loads(f.read())
        total = model["total"]
        # Per class: log prior, log of the smoothed total, and word counts (unseen words count 1).
        self._classes = {name: (math.log(c["total"]) - math.log(total), math.log(c["total"]), c["d"])
                         for name, c in model["d"].items()}
        self._stop = set((root / "normal" / "stopwords.txt").read_text("utf-8").split())

    def words(self, text: str) -> list[str]:
        return [w for w in rjieba.cut(text) if w not in self._stop]

    def positive(self, text: str) -> float:
        return self.positive_of_words(self.words(text))

    def positive_of_words(self, words: list[str]) -> float:
        logp = {name: prior + sum(math.log(counts.get(w, 1)) - log_total for w in words)
                for name, (prior, log_total, counts) in self._classes.items()}
        # Softmax over two classes, written so a long text cannot overflow exp().
        return 1.0 / (1.0 + math.exp(min(700.0, logp["neg"] - logp["pos"])))
