"""copyserve's own Prometheus metrics, through Ray's metrics API.

Ray exports them (prefixed ``ray_``) with its own ``ray_serve_*`` request metrics and vLLM's engine
metrics (``ray_vllm_*``, see ``deployments/engines/vllm_engine.py``) on every node's metrics
export port. These add what only the service knows: which industry, adapter and cache path served a
copy, how many attempts the quality gate took, what polish changed, who was rate limited.
Labels stay low-cardinality: industries, models and rules come from the config, and adapters are
labelled by name, not by version.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Histogram

LATENCY_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80]
ATTEMPT_BUCKETS = [1, 2, 3, 4, 6]
SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]

COPIES = Counter("copyserve_copies", description="Copies answered, by industry, model, adapter, channel and cache "
                 "result.", tag_keys=("industry", "model", "adapter", "channel", "cache"))
COPY_LATENCY = Histogram("copyserve_copy_latency_seconds", description="Ingress receipt to the whole copy.",
                         boundaries=LATENCY_BUCKETS_S, tag_keys=("industry", "cache"))
FIRST_TOKEN = Histogram("copyserve_copy_first_token_seconds",
                        description="Model server receipt to first token, per model and adapter.",
                        boundaries=LATENCY_BUCKETS_S, tag_keys=("model", "adapter"))
COMPLETION_TOKENS = Counter("copyserve_completion_tokens", description="Tokens written, all attempts.",
                            tag_keys=("model", "adapter"))
ATTEMPTS = Histogram("copyserve_copy_attempts", description="Attempts the sentiment quality gate took per copy.",
                     boundaries=ATTEMPT_BUCKETS, tag_keys=("industry",))
SENTIMENT = Histogram("copyserve_copy_sentiment_score", description="Sentiment of the answered copy, 0..1.",
                      boundaries=SCORE_BUCKETS, tag_keys=("industry",))
POLISH_EDITS = Counter("copyserve_polish_edits", description="Edits polish made to answered copy, by rule.",
                       tag_keys=("industry", "rule"))
RATE_LIMITED = Counter("copyserve_rate_limited", description="Requests refused with 429, by exhausted limit.",
                       tag_keys=("limit",))
MODEL_CALL_RETRIES = Counter("copyserve_model_call_retries",
                             description="Model calls sent again because their replica died before a token.",
                             tag_keys=("deployment",))
QUEUE_FULL = Counter("copyserve_queue_full", description="Model calls refused (503) by a full deployment queue.",
                     tag_keys=("deployment",))
SHADOWS = Counter("copyserve_shadow_copies", description="Shadow copies (a route's shadow share), by adapter name and "
                  "outcome: win, loss or tie against the answer served; error; skipped: busy (the replica's "
                  "shadow_max_in_flight reached), overloaded (a full model queue), same (the shadow version served "
                  "it), unservable (the shadow names no LoRA adapter of a served model).",
                  tag_keys=("adapter", "outcome"))
AUTO_MOVES = Counter("copyserve_adapter_auto_moves", description="Alias moves made by release policies, by adapter "
                     "name and action (promote, rollback).", tag_keys=("adapter", "action"))
BATCH_LINES = Counter("copyserve_batch_lines", description="Batch lines answered, by endpoint and outcome "
                      "(ok: a 2xx answer; failed: an error answer or a line that was not a request).",
                      tag_keys=("endpoint", "outcome"))
BATCH_LINE_RETRIES = Counter("copyserve_batch_line_retries", description="Batch lines run again after a 503 "
                             "(batch.unavailable_retry_s), by endpoint.", tag_keys=("endpoint",))
BATCHES = Counter("copyserve_batches", description="Batches finished, by endpoint and final status.",
                  tag_keys=("endpoint", "status"))


def record_copy(payload: dict, cache: str, latency_s: float) -> None:
    """One answered /v1/copy (or revision). ``cache``: hit, miss or off. A hit reused its work: only
    the count and latency are new."""
    industry, model = payload["industry"], payload["model"]
    adapter = (payload.get("adapter") or "base").partition("@")[0]  # name@vN: versions would grow the series
    COPIES.inc(tags={"industry": industry, "model": model, "adapter": adapter,
                     "channel": payload.get("channel") or "none", "cache": cache})
    COPY_LATENCY.observe(latency_s, tags={"industry": industry, "cache": cache})
    if cache == "hit":
        return
    first_token_ms = payload["timings"].get("first_token_ms")
    if first_token_ms is not None:
        FIRST_TOKEN.observe(first_token_ms / 1000, tags={"model": model, "adapter": adapter})
    if payload["usage"]["completion_tokens"] > 0:  # Ray counters take only positive increments
        COMPLETION_TOKENS.inc(payload["usage"]["completion_tokens"], tags={"model": model, "adapter": adapter})
    ATTEMPTS.observe(payload["attempts"], tags={"industry": industry})
    if payload.get("sentiment"):
        SENTIMENT.observe(payload["sentiment"]["score"], tags={"industry": industry})
    for edit in (payload.get("polish") or {}).get("edits", []):
        POLISH_EDITS.inc(tags={"industry": industry, "rule": edit["rule"]})
