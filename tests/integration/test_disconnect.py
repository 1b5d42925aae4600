"""A client that goes away mid-stream leaves nothing decoding in the engine."""

import json
import time

import httpx


def unfinished(model_handle, model: str) -> int:
    return model_handle(model).stats.remote().result()["unfinished_requests"]


def test_disconnect_mid_stream_aborts_engine_request(base_url, model_handle, user_key):
    model = "tiny-qwen3"
    body = {"model": "finance", "prompt": "Tell a long story.", "max_tokens": 2000, "stream": True}
    headers = {"Authorization": f"Bearer {user_key}"}
    with (httpx.Client(base_url=base_url, timeout=60, headers=headers) as c,
          c.stream("POST", "/v1/completions", json=body) as r):
        assert r.status_code == 200
        lines = r.iter_lines()
        received = [line for line in (next(lines) for _ in range(10)) if line.startswith("data: ")]
        assert received and "choices" in json.loads(received[0][6:])
        assert unfinished(model_handle, model) == 1  # still decoding while we hold the stream
    # Leaving the block closed the connection before the 2000 tokens were done.
    deadline = time.monotonic() + 15
    while unfinished(model_handle, model) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert unfinished(model_handle, model) == 0
