"""record_copy gives every series all its tags and only positive counter increments (Ray raises
otherwise, which would fail the request it records); values are checked by the integration test."""

from __future__ import annotations

import pytest

from contracts import metrics

PAYLOAD = {"industry": "ecommerce", "model": "smollm2", "adapter": None, "attempts": 2,
           "timings": {"first_token_ms": 210.5}, "usage": {"completion_tokens": 12},
           "sentiment": {"label": "positive", "score": 0.8},
           "polish": {"edits": [{"rule": "punctuation"}, {"rule": "compliance"}]}}


@pytest.mark.parametrize("cache", ["hit", "miss", "off"])
def test_a_whole_payload_records(cache):
    metrics.record_copy(PAYLOAD, cache, 1.5)


def test_a_payload_without_post_processing_or_tokens_records():
    bare = {**PAYLOAD, "adapter": "shoes@2", "timings": {"first_token_ms": None}, "usage": {"completion_tokens": 0},
            "sentiment": None, "polish": None}
    metrics.record_copy(bare, "miss", 0.2)


def test_a_missing_tag_is_what_ray_refuses():
    with pytest.raises(ValueError, match="tag key"):
        metrics.COPIES.inc(tags={"industry": "ecommerce"})
