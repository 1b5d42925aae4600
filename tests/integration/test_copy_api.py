"""POST /v1/copy on the real app: JSON, SSE, routing by industry and alias."""

import json

import psutil
import pytest

SMOLLM2, QWEN3, GPTJ = "smollm2-135m-instruct", "tiny-qwen3", "tiny-gptj"


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_ecommerce_copy_is_written_by_smollm2(client):
    r = client.post("/v1/copy", json={"industry": "ecommerce", "product": "insulated steel water bottle",
                                      "keywords": ["leak-proof", "keeps drinks cold"], "temperature": 0,
                                      "max_tokens": 48})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == SMOLLM2 and body["industry"] == "ecommerce" and body["language"] == "en"
    assert len(body["text"].split()) >= 5, body["text"]
    assert body["texts"] == [body["text"]]
    assert 0 < body["usage"]["completion_tokens"] <= 48
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["timings"]["first_token_ms"] > 0 and body["timings"]["total_ms"] >= body["timings"]["generation_ms"]
    assert r.headers["x-request-id"] == body["id"]


@pytest.mark.parametrize("industry, model, language", [
    ("ecommerce", SMOLLM2, "en"), ("E-Commerce", SMOLLM2, "en"), ("电商", SMOLLM2, "zh"),
    ("finance", QWEN3, "en"), ("金融", QWEN3, "zh"),
    ("education", GPTJ, "en"), ("教育", GPTJ, "zh"),
])
def test_industry_and_alias_route_to_their_model(client, industry, model, language):
    r = client.post("/v1/copy", json={"industry": industry, "product": "demo product", "max_tokens": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["language"]) == (model, language)
    assert body["industry"] in {"ecommerce", "finance", "education"}


def test_chinese_product_gets_chinese_prompt_and_explicit_language_wins(client):
    zh = client.post("/v1/copy", json={"industry": "ecommerce", "product": "便携咖啡机", "max_tokens": 4}).json()
    en = client.post("/v1/copy", json={"industry": "ecommerce", "product": "便携咖啡机", "language": "en",
                                       "max_tokens": 4}).json()
    assert zh["language"] == "zh" and en["language"] == "en"
    assert zh["usage"]["prompt_tokens"] != en["usage"]["prompt_tokens"]


def test_stream_sends_deltas_then_a_final_event(client):
    body = {"industry": "ecommerce", "product": "wool socks", "keywords": ["warm"], "stream": True,
            "temperature": 0, "max_tokens": 24}
    with client.stream("POST", "/v1/copy", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    deltas, final = events[:-1], events[-1]
    assert len(deltas) >= 2 and all(e["type"] == "delta" for e in deltas)
    assert final["type"] == "final" and final["model"] == SMOLLM2
    assert "".join(e["text"] for e in deltas).strip() == final["raw_text"]
    assert final["usage"]["completion_tokens"] <= 24
    # Same request without streaming (temperature 0) gives the same text.
    whole = client.post("/v1/copy", json={**body, "stream": False}, headers={"Cache-Control": "no-cache"}).json()
    assert whole["text"] == final["text"]


def test_n_texts_and_seed_reproducibility(client):
    body = {"industry": "finance", "product": "index fund", "n": 3, "temperature": 1.0, "seed": 7,
            "max_tokens": 12}
    fresh = {"Cache-Control": "no-cache"}  # a seeded request is cacheable: make the engine write each time
    first = client.post("/v1/copy", json=body, headers=fresh).json()
    again = client.post("/v1/copy", json=body, headers=fresh).json()
    other = client.post("/v1/copy", json={**body, "seed": 8}, headers=fresh).json()
    assert len(first["texts"]) == 3 and len(first["finish_reasons"]) == 3
    assert first["texts"] == again["texts"]
    assert first["texts"] != other["texts"]


def test_engines_run_at_the_configured_priority(client, app_config):
    # Ray's default worker niceness (15) would put the CPU engine behind every other process on the host.
    models = client.get("/healthz").json()["models"]
    for name, model in models.items():
        replica = psutil.Process(model["pid"])
        engine = replica.children(recursive=True)
        assert engine, f"{name}: no engine processes under its replica"
        assert {p.nice() for p in [replica, *engine]} == {app_config.server.worker_niceness}, name
