"""Redis-backed state on the real app: response cache, fail-open, API keys, rate limits, sessions,
and Serve back-pressure."""

import concurrent.futures as futures
import json
import time

import httpx

COPY = {"industry": "ecommerce", "product": "bamboo toothbrush", "keywords": ["eco"], "temperature": 0,
        "max_tokens": 24}


def timed_post(client, path, **kwargs):
    started = time.perf_counter()
    response = client.post(path, **kwargs)
    return response, time.perf_counter() - started


def test_cache_hit_is_same_payload_faster_and_expires(client):
    body = {**COPY, "product": f"bamboo toothbrush {time.time()}"}
    miss, miss_s = timed_post(client, "/v1/copy", json=body)
    hit, hit_s = timed_post(client, "/v1/copy", json=body)
    assert miss.headers["x-cache"] == "miss" and hit.headers["x-cache"] == "hit"
    assert hit.json() == miss.json()
    assert hit_s < miss_s / 3
    assert client.post("/v1/copy", json={**body, "seed": 5}).headers["x-cache"] == "miss"  # other sampling
    assert client.post("/v1/copy", json=body, headers={"Cache-Control": "no-cache"}).headers["x-cache"] == "miss"
    time.sleep(3.5)  # ttl_s: 3 in tests/configs/integration.yaml
    assert client.post("/v1/copy", json=body).headers["x-cache"] == "miss"


def test_unreproducible_requests_are_not_cached_unless_asked(client):
    body = {**COPY, "temperature": 0.9, "product": f"mug {time.time()}"}
    client.post("/v1/copy", json=body)
    assert client.post("/v1/copy", json=body).headers["x-cache"] == "miss"
    client.post("/v1/copy", json={**body, "cache": True})
    assert client.post("/v1/copy", json={**body, "cache": True}).headers["x-cache"] == "hit"


def test_streamed_cache_hit_replays_text_and_final(client):
    body = {**COPY, "product": f"lamp {time.time()}", "stream": True}
    with client.stream("POST", "/v1/copy", json=body) as first:
        assert first.headers["x-cache"] == "miss"
        first.read()
    with client.stream("POST", "/v1/copy", json=body) as again:
        assert again.headers["x-cache"] == "hit"
        lines = [line for line in again.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[0][6:])["type"] == "delta" and json.loads(lines[-1][6:])["type"] == "final"


def test_service_fails_open_when_redis_stops_and_recovers(client, redis_server, make_key, base_url):
    body = {**COPY, "product": f"kettle {time.time()}"}
    client.post("/v1/copy", json=body)
    redis_server.stop()
    try:
        for _ in range(3):
            r, elapsed = timed_post(client, "/v1/copy", json=body)
            assert r.status_code == 200 and r.headers["x-cache"] == "miss"
        health = client.get("/healthz").json()
        assert health["redis"].startswith("down") and health["status"] == "degraded" and health["cache"] == "off"
    finally:
        redis_server.start()
    time.sleep(2.5)  # redis.retry_after_s is 2: the store tries again on its own
    client.post("/v1/copy", json=body)
    assert client.post("/v1/copy", json=body).headers["x-cache"] == "hit"
    assert client.get("/healthz").json()["redis"] == "ok"
    # Every pooled connection died with the old server: a key never seen before must verify at once.
    _, fresh = make_key("user")
    for _ in range(5):
        assert httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_auth_matrix(base_url, user_key, admin_key):
    copy = {**COPY, "postprocess": False, "max_tokens": 2}
    cases = [(None, 401, 401), ("cs-not-a-key", 401, 401), (user_key, 200, 403), (admin_key, 200, 200)]
    with httpx.Client(base_url=base_url, timeout=60) as c:
        for key, user_status, admin_status in cases:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            assert c.post("/v1/copy", json=copy, headers=headers).status_code == user_status, key
            assert c.get("/v1/keys", headers=headers).status_code == admin_status, key
            assert c.get("/openapi.json", headers=headers).status_code == user_status, key  # it names every model
        assert c.get("/healthz").status_code == 200  # health stays public for load balancers
        docs = c.get("/docs", headers={"Authorization": f"Bearer {user_key}"})
        assert docs.status_code == 404 and "server.public_docs" in docs.json()["error"]["message"]


def test_revoked_key_stops_working_at_once(base_url, admin_key):
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, timeout=60) as c:
        created = c.post("/v1/keys", json={"role": "user", "name": "short-lived"}, headers=admin).json()
        user = {"Authorization": f"Bearer {created['key']}"}
        assert c.get("/v1/models", headers=user).status_code == 200
        assert c.delete(f"/v1/keys/{created['id']}", headers=admin).json()["revoked"] is True
        r = c.get("/v1/models", headers=user)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
        listed = {k["id"]: k for k in c.get("/v1/keys", headers=admin).json()["data"]}
        assert listed[created["id"]]["revoked"] is True and "key" not in listed[created["id"]]


def test_rate_limit_is_exact_across_clients_and_retry_after_is_honoured(base_url, make_key):
    _, secret = make_key("user", requests_per_window=5)  # window_s: 10
    headers = {"Authorization": f"Bearer {secret}"}

    def call(_):
        with httpx.Client(base_url=base_url, timeout=30, headers=headers) as c:
            return c.get("/v1/models")

    started = time.monotonic()
    with futures.ThreadPoolExecutor(2) as pool:  # two concurrent clients sharing one key
        results = list(pool.map(call, range(8)))
    assert time.monotonic() - started < 10, "the burst must fit in one window for the count to be exact"
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 3
    refused = next(r for r in results if r.status_code == 429)
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 10 and refused.json()["error"]["type"] == "rate_limit_error"
    time.sleep(retry_after)
    assert call(0).status_code == 200


def test_two_turn_session_revises_the_first_copy(client):
    session = f"s-{time.time_ns()}"
    first = client.post("/v1/copy", json={**COPY, "session_id": session, "max_tokens": 16}).json()
    revised = client.post("/v1/copy/revise", json={"session_id": session, "instruction": "Make it shorter.",
                                                   "temperature": 0, "max_tokens": 16})
    assert revised.status_code == 200, revised.text
    body = revised.json()
    assert body["model"] == first["model"] and body["industry"] == "ecommerce"
    # The revision prompt is the first prompt plus the first copy plus the instruction.
    assert body["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + 5
    missing = client.post("/v1/copy/revise", json={"session_id": "never-started", "instruction": "shorter"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "session_id"


def test_chat_session_keeps_turns(client):
    session = f"chat-{time.time_ns()}"
    turn = {"model": "ecommerce", "max_tokens": 8, "temperature": 0, "session_id": session}
    first = client.post("/v1/chat/completions", json={**turn, "messages": [{"role": "user", "content": "Hi!"}]})
    second = client.post("/v1/chat/completions", json={**turn, "messages": [{"role": "user", "content": "Again."}]})
    assert first.status_code == second.status_code == 200
    assert second.json()["usage"]["prompt_tokens"] > first.json()["usage"]["prompt_tokens"] + 3


def test_back_pressure_is_503_with_retry_after_not_a_hang(client):
    # tiny-gptj: max_ongoing_requests 2, max_queued_requests 2 (tests/configs/integration.yaml)
    body = {"model": "tiny-gptj", "prompt": "Once upon a time", "max_tokens": 300, "temperature": 1.0}

    def call(_):
        return client.post("/v1/completions", json=body, timeout=120)

    with futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(call, range(10)))
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    refused = next(r for r in results if r.status_code == 503)
    # Our JSON error, with Retry-After from the deployment's retry_after_s (Serve's own answer is plain text).
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "service_unavailable" and "max_queued_requests 2" in error["message"]
