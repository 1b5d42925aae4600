"""Polish, Sentiment and the quality gate on the real app."""

import json

from ray import serve

from deployments.text.draft import Draft


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_copy_carries_edits_sentiment_and_attempts(client):
    r = client.post("/v1/copy", json={"industry": "ecommerce", "product": "insulated steel water bottle",
                                      "keywords": ["leak-proof"], "temperature": 0, "max_tokens": 40})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["raw_text"] and body["text"]
    assert isinstance(body["polish"]["edits"], list)
    for edit in body["polish"]["edits"]:
        assert {"rule", "before", "after", "start"} <= set(edit)
    # max_tokens 40 cuts SmolLM2 mid-sentence: polish trims back to the last complete sentence.
    if body["finish_reasons"][0] == "length" and any(e["rule"] == "trim_incomplete" for e in body["polish"]["edits"]):
        assert len(body["text"]) < len(body["raw_text"])
    sentiment = body["sentiment"]
    assert sentiment["label"] in {"positive", "neutral", "negative"} and 0 <= sentiment["score"] <= 1
    assert sentiment["language"] == "en"
    assert body["attempts"] == 1 and len(body["attempt_scores"]) == 1
    timings = body["timings"]
    assert timings["polish_ms"] > 0 and timings["sentiment_ms"] > 0
    # The ingress waited for both deployments (Polish's answer went straight to Sentiment).
    assert timings["postprocess_ms"] >= timings["polish_ms"] + timings["sentiment_ms"]


def test_postprocess_can_be_turned_off(client):
    body = client.post("/v1/copy", json={"industry": "ecommerce", "product": "mug", "max_tokens": 8,
                                         "postprocess": False}).json()
    assert body["polish"] is None and body["sentiment"] is None and body["attempts"] == 1
    assert body["text"] == body["raw_text"].strip()


def test_unreachable_floor_spends_the_whole_retry_budget(client):
    # route `luxury`: sentiment_floor 1.0, max_retries 2 (tests/configs/integration.yaml)
    body = client.post("/v1/copy", json={"industry": "luxury", "product": "silk scarf", "max_tokens": 8,
                                         "seed": 3}).json()
    assert body["attempts"] == 3 and len(body["attempt_scores"]) == 3
    assert all(score < 1.0 for score in body["attempt_scores"])
    assert body["sentiment"]["score"] == max(body["attempt_scores"])  # the best attempt is answered
    assert body["usage"]["completion_tokens"] > 8  # tokens of all three attempts


def test_stream_reports_retries_and_final_post_processing(client):
    # Seeded: TextBlob scores a text of only "best"/"perfect" words 1.0, so an unseeded draw can meet the floor.
    with client.stream("POST", "/v1/copy", json={"industry": "luxury", "product": "silk scarf", "max_tokens": 6,
                                                  "seed": 3, "cache": False, "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r)
    kinds = [e["type"] for e in events]
    assert kinds.count("retry") == 2 and kinds[-1] == "final"
    assert {e["attempt"] for e in events if e["type"] == "delta"} == {1, 2, 3}
    final = events[-1]
    assert final["attempts"] == 3 and final["sentiment"] is not None and "edits" in final["polish"]


def test_polish_deployment_applies_compliance_rules(base_url, app_config):
    polish = serve.get_deployment_handle("Polish", app_name=app_config.server.app_name)
    draft = polish.process.remote(Draft("本理财产品保本,零风险!收益稳赚。", "zh", "finance", "stop")).result()
    assert "保本" not in draft.text and "零风险" not in draft.text and "稳赚" not in draft.text
    assert "，" in draft.text and "！" in draft.text
    assert {e["rule"] for e in draft.edits} >= {"compliance", "punctuation"}
    assert draft.raw_text == "本理财产品保本,零风险!收益稳赚。"


def test_sentiment_deployment_scores_clear_cases(base_url, app_config):
    sentiment = serve.get_deployment_handle("Sentiment", app_name=app_config.server.app_name)
    cases = {"This is a wonderful, delightful bottle. I love it!": "positive",
             "Terrible quality. It broke after one day, awful.": "negative",
             "这款产品非常好用，质量很棒，我很喜欢": "positive",
             "质量太差了，用一天就坏了，非常失望": "negative"}
    for text, label in cases.items():
        result = sentiment.analyze.remote(text).result()
        assert result["label"] == label, (text, result)
