"""When batch work runs a request again: one policy for the Batch API's runner and `copyserve batch run`.

A 429 (the key's token budget refills) always waits for its window; a 503 (a model replica being replaced, a
full queue, Redis away) is the platform's trouble, not the request's, and waits while the caller's window
allows. Anything else is the answer.
"""

from __future__ import annotations

import time

MAX_WAIT_S = 30.0  # one wait, whatever a Retry-After says
MIN_WAIT_S = 0.5


def wait_before_retry(status: int, retry_after_s: float, give_up_at: float) -> float | None:
    """Seconds to wait before running the request again, or None to take ``status`` as its answer;
    ``give_up_at`` is a ``time.monotonic()`` deadline for 503s."""
    wait_s = min(MAX_WAIT_S, max(MIN_WAIT_S, retry_after_s))
    if status == 429 or (status == 503 and time.monotonic() + wait_s < give_up_at):
        return wait_s
    return None


def retry_after(headers) -> float:
    """An HTTP answer's Retry-After in seconds (1 when absent or a date)."""
    try:
        return float(headers.get("retry-after", 1))
    except (TypeError, ValueError):
        return 1.0
