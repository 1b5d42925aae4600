"""When batch work asks again: a 429 always waits, a 503 waits within its window, anything else is the answer;
`copyserve batch run`'s client follows the same policy (an HTTP stand-in for the service)."""

import time

import httpx

from serve_app.batch_cli import CopyWriter
from serve_app.batch_retry import MAX_WAIT_S, MIN_WAIT_S, retry_after, wait_before_retry


def test_a_429_waits_its_retry_after_within_bounds_whatever_the_window():
    past = time.monotonic() - 1
    assert wait_before_retry(429, 2.0, past) == 2.0
    assert wait_before_retry(429, 0.0, past) == MIN_WAIT_S
    assert wait_before_retry(429, 3600.0, past) == MAX_WAIT_S


def test_a_503_waits_only_while_its_window_allows():
    assert wait_before_retry(503, 1.0, time.monotonic() + 60) == 1.0
    assert wait_before_retry(503, 1.0, time.monotonic() + 0.5) is None  # the wait would end past the window
    assert wait_before_retry(503, 1.0, time.monotonic() - 1) is None


def test_other_answers_are_taken_as_they_are():
    later = time.monotonic() + 60
    for status in (200, 400, 404, 500, 502):
        assert wait_before_retry(status, 1.0, later) is None


def test_retry_after_reads_seconds_and_falls_back_to_one():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({}) == 1.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) == 1.0


def stand_in(answers: list[int]):
    """A service that answers each POST with the next status (then 200s), a 503 with Retry-After: 0."""
    sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        status = answers.pop(0) if answers else 200
        if status == 200:
            return httpx.Response(200, json={"text": "ok", "usage": {"total_tokens": 5}})
        return httpx.Response(status, headers={"Retry-After": "0"}, json={"error": {"message": f"status {status}"}})

    return httpx.MockTransport(handle), sent


def test_the_catalogue_client_asks_again_after_503s_and_reports_the_row_answered():
    transport, sent = stand_in([503, 503])
    writer = CopyWriter("http://service", None, {"industry": "ecommerce"}, 10, transport=transport)
    out = writer({"product_name": ["lamp"], "keywords": ["warm|brass"]})
    assert out["ok"] == [True] and out["status"] == [200] and out["tokens"] == [5]
    assert len(sent) == 3


def test_the_catalogue_client_reports_a_503_once_its_window_is_spent_and_never_retries_a_400():
    transport, sent = stand_in([503] * 100)
    writer = CopyWriter("http://service", None, {"industry": "ecommerce"}, 10, unavailable_retry_s=0,
                        transport=transport)
    out = writer({"product_name": ["lamp"], "keywords": ["warm"]})
    assert out["ok"] == [False] and out["status"] == [503] and "status 503" in out["error"][0] and len(sent) == 1
    transport, sent = stand_in([400])
    out = CopyWriter("http://service", None, {"industry": "ecommerce"}, 10, transport=transport)(
        {"product_name": ["lamp"], "keywords": ["warm"]})
    assert out["status"] == [400] and len(sent) == 1
