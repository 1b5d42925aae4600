"""Bad input gets a 4xx with a message that says what to fix, and the engines stay healthy."""

import pytest

OK = {"industry": "ecommerce", "product": "desk lamp"}


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    assert body["error"]["code"] == response.status_code
    return body["error"]


@pytest.mark.parametrize("body, status, says", [
    ({"industry": "ecommerce"}, 400, "product: Field required"),
    ({**OK, "product": "   "}, 400, "product"),
    ({**OK, "industry": ""}, 400, "industry"),
    ({**OK, "industry": "automotive"}, 400, "known industries: ecommerce"),
    ({**OK, "temperature": 3}, 400, "temperature"),
    ({**OK, "temperature": -0.5}, 400, "temperature"),
    ({**OK, "max_tokens": 5000}, 400, "max_tokens=5000 is too large"),
    ({**OK, "max_tokens": 0}, 400, "max_tokens"),
    ({**OK, "keywords": "not-a-list"}, 400, "keywords"),
    ({**OK, "keywords": ["ok", ""]}, 400, "keywords"),
    ({**OK, "n": 50}, 400, "n"),
    ({**OK, "lenght": "short"}, 400, "lenght"),
    ({**OK, "stream": True, "max_tokens": 5000}, 400, "max_tokens"),
])
def test_copy_rejects(client, body, status, says):
    r = client.post("/v1/copy", json=body)
    assert r.status_code == status, r.text
    assert says in error_of(r)["message"]


def test_unknown_industry_lists_known_ones(client):
    err = error_of(client.post("/v1/copy", json={**OK, "industry": "cars"}))
    assert err["param"] == "industry"
    for known in ("ecommerce", "finance", "education", "电商", "金融", "教育"):
        assert known in err["message"]


def test_non_json_body(client):
    r = client.post("/v1/copy", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in error_of(r)["message"]
    r = client.post("/v1/copy", content=b'["a", "list"]', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON object" in error_of(r)["message"]


def test_huge_body_is_413(client):
    r = client.post("/v1/copy", json={**OK, "keywords": ["x" * 60] * 2000})
    assert r.status_code == 413 and "limit" in error_of(r)["message"]


def test_prompt_longer_than_context(client):
    # tiny-gptj has max_model_len 512; this prompt is far longer.
    r = client.post("/v1/completions", json={"model": "tiny-gptj", "prompt": "word " * 3000, "max_tokens": 4})
    assert r.status_code == 400
    assert "maximum context length is 512" in error_of(r)["message"]


def test_openai_bad_fields(client):
    r = client.post("/v1/chat/completions", json={"model": "ecommerce", "messages": []})
    assert r.status_code == 400 and "messages" in error_of(r)["message"]
    r = client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and error_of(r)["param"] == "model"
    r = client.post("/v1/completions", json={"model": "finance", "prompt": "x", "top_p": 0})
    assert r.status_code == 400 and error_of(r)["param"] == "top_p"


def test_engines_healthy_after_bad_input(client):
    for _ in range(3):  # a burst of bad requests first
        client.post("/v1/copy", json={**OK, "max_tokens": 5000})
        client.post("/v1/completions", json={"model": "tiny-gptj", "prompt": "word " * 3000})
    health = client.get("/healthz")
    assert health.status_code == 200
    assert all(m["status"] == "ok" and m["unfinished_requests"] == 0 for m in health.json()["models"].values())
    for industry in ("ecommerce", "finance", "education"):
        assert client.post("/v1/copy", json={"industry": industry, "product": "lamp", "max_tokens": 4}).is_success
