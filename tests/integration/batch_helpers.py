"""Batch API helpers for the chaos tests that run a batch while something fails under it."""

from __future__ import annotations

import json
import uuid

import openai

CHAT = "/v1/chat/completions"


def start_batch(client: openai.OpenAI, lines: int, model: str = "finance", max_tokens: int = 8) -> str:
    """A batch of ``lines`` short chat requests to ``model`` (a route or a model name); its id."""
    rows = [{"custom_id": f"c{i}", "method": "POST", "url": CHAT,
             "body": {"model": model, "max_tokens": max_tokens,
                      "messages": [{"role": "user", "content": f"Tagline {i} {uuid.uuid4().hex[:6]}"}]}}
            for i in range(lines)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    uploaded = client.files.create(file=("chaos.jsonl", data), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h").id


def progress(client: openai.OpenAI, batch_id: str) -> int:
    try:
        counts = client.batches.retrieve(batch_id).request_counts
    except (openai.APIStatusError, openai.APIConnectionError):
        return 0  # the ingress or Redis is down for a moment
    return counts.completed + counts.failed


def finished(client: openai.OpenAI, batch_id: str):
    try:
        batch = client.batches.retrieve(batch_id)
    except (openai.APIStatusError, openai.APIConnectionError):
        return None
    return batch if batch.status in ("completed", "failed", "cancelled", "expired") else None


def assert_each_line_once(client: openai.OpenAI, batch, lines: int) -> None:
    """Completed, every line answered (a 2xx), each once, in input order."""
    assert batch.status == "completed" and batch.request_counts.completed == lines, batch
    ids = [json.loads(line)["custom_id"] for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert ids == [f"c{i}" for i in range(lines)]
