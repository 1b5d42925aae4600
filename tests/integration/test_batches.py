"""The OpenAI Batch API end to end, through the ``openai`` SDK unchanged: upload a JSONL file, run it on
the real engines beside live traffic, read the answers by custom_id. Bad lines go to the error file with
the message the endpoint itself gives; another key sees none of it; a cancel stops the batch."""

import json
import time

import httpx
import openai
import pytest

from tests.integration.helpers import scrape, total, wait_for

CHAT = "/v1/chat/completions"


def sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)


def jsonl(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def chat_line(custom_id: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": CHAT,
            "body": {"model": "finance", "messages": [{"role": "user", "content": "A slogan for tea"}],
                     "max_tokens": 4, **body}}


def wait_finished(client: openai.OpenAI, batch_id: str, timeout_s: float = 300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout_s}s")


def results(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    rows = [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
    return {r["custom_id"] or f"line-without-id-{i}": r for i, r in enumerate(rows)}


def test_a_batch_answers_every_line_and_keeps_bad_lines_apart(base_url, user_key, make_key, app_config):
    def lines(outcome: str) -> float:
        return total(scrape(app_config), "ray_copyserve_batch_lines", endpoint=CHAT, outcome=outcome)

    ok_before, failed_before = lines("ok"), lines("failed")
    client = sdk(base_url, user_key)
    invalid_body = chat_line("bad-body", max_tokens=-1)
    rows = [chat_line("tea-1"), chat_line("tea-2", temperature=0), "{broken", invalid_body,
            {**chat_line("wrong-url"), "url": "/v1/completions"}]
    uploaded = client.files.create(file=("tea.jsonl", jsonl(rows)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(rows))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h",
                                  metadata={"campaign": "tea"})
    assert batch.status == "validating" and batch.request_counts.total == 5
    done = wait_finished(client, batch.id)
    assert done.status == "completed" and done.metadata == {"campaign": "tea"}
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 2, 3)
    assert done.in_progress_at and done.completed_at >= done.in_progress_at
    # Lines by outcome in the metrics (scraped from Ray's exporter, which lags the runner by a report interval).
    counted = lambda: (lines("ok") - ok_before, lines("failed") - failed_before)  # noqa: E731
    assert wait_for(lambda: counted()[0] >= 2 and counted()[1] >= 3, 60, every_s=1), counted()

    output = results(client, done.output_file_id)
    assert set(output) == {"tea-1", "tea-2"}
    for row in output.values():
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert row["response"]["body"]["object"] == "chat.completion"
        assert row["response"]["body"]["usage"]["completion_tokens"] >= 1

    errors = results(client, done.error_file_id)
    assert errors["line-without-id-0"]["error"]["message"].startswith("line 3 is not valid JSON")
    assert errors["wrong-url"]["error"]["message"] == ("line 5: url is '/v1/completions', but this batch runs "
                                                       "/v1/chat/completions")
    # An invalid request body: the status and message the endpoint gives over HTTP.
    direct = httpx.post(f"{base_url}{CHAT}", json=invalid_body["body"], headers={"Authorization": f"Bearer {user_key}"})
    answer = errors["bad-body"]["response"]
    assert answer["status_code"] == direct.status_code == 400
    without_id = lambda message: message.partition(" (request id:")[0]  # noqa: E731
    assert without_id(answer["body"]["error"]["message"]) == without_id(direct.json()["error"]["message"])
    assert answer["body"]["error"]["param"] == "max_tokens"

    # Another key finds nothing: not the batch, not the files, not in its lists.
    other = sdk(base_url, make_key("user")[1])
    for call in (lambda: other.batches.retrieve(batch.id), lambda: other.files.retrieve(uploaded.id),
                 lambda: other.files.content(done.output_file_id), lambda: other.batches.cancel(batch.id),
                 lambda: other.files.delete(uploaded.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert other.batches.list().data == [] and other.files.list().data == []
    assert batch.id in [b.id for b in client.batches.list().data]
    # The owner can delete its input file; the results stay.
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    assert results(client, done.output_file_id).keys() == {"tea-1", "tea-2"}


def test_copy_batches_use_the_copy_endpoint(base_url, user_key):
    client = sdk(base_url, user_key)
    rows = [{"custom_id": f"sku-{i}", "method": "POST", "url": "/v1/copy",
             "body": {"industry": "finance", "product": f"savings account {i}", "max_tokens": 4}} for i in range(3)]
    rows.append({"custom_id": "streamed", "method": "POST", "url": "/v1/copy",
                 "body": {"industry": "finance", "product": "x", "stream": True}})
    rows.append({"custom_id": "nowhere", "method": "POST", "url": "/v1/copy",
                 "body": {"industry": "astrology", "product": "x"}})
    uploaded = client.files.create(file=("skus.jsonl", jsonl(rows)), purpose="batch")
    done = wait_finished(client, client.batches.create(input_file_id=uploaded.id, endpoint="/v1/copy",
                                                       completion_window="24h").id)
    output, errors = results(client, done.output_file_id), results(client, done.error_file_id)
    assert set(output) == {"sku-0", "sku-1", "sku-2"}
    assert all(r["response"]["body"]["industry"] == "finance" and r["response"]["body"]["text"] is not None
               for r in output.values())
    assert errors["streamed"]["response"]["body"]["error"]["param"] == "stream"
    assert errors["nowhere"]["response"]["status_code"] == 400  # what /v1/copy says of an unknown industry
    assert "unknown industry" in errors["nowhere"]["response"]["body"]["error"]["message"]


def test_a_cancelled_batch_stops_and_keeps_what_it_answered(base_url, user_key):
    client = sdk(base_url, user_key)
    rows = [chat_line(f"slow-{i}", model="ecommerce", max_tokens=24) for i in range(40)]
    uploaded = client.files.create(file=("slow.jsonl", jsonl(rows)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.ConflictError, match="still running"):  # its input stays while it runs
        client.files.delete(uploaded.id)
    client.batches.cancel(batch.id)
    assert client.batches.retrieve(batch.id).status in ("cancelling", "cancelled")
    done = wait_finished(client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at and done.cancelling_at
    assert done.request_counts.completed < 40
    assert len(results(client, done.output_file_id)) == done.request_counts.completed


def test_uploads_are_checked(base_url, user_key):
    client = sdk(base_url, user_key)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="fine-tune")
    with pytest.raises(openai.APIStatusError) as too_big:
        client.files.create(file=("big.jsonl", b"x" * 70_000), purpose="batch")
    assert too_big.value.status_code == 413
    uploaded = client.files.create(file=("empty.jsonl", b"\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="1 to"):
        client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="cannot be batched"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
