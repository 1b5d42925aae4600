"""Channel-shaped copy on the real engines: fields constrained by a JSON schema while they are written,
every field within its platform's limit in its own unit, and the 4xx answers for what cannot be served."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from deployments.text.channels import DANGLING, catalogue, measure


def within_limits(channel_id: str, fields: dict) -> list[str]:
    """Every field present, non-empty, and within its limit; the problems, if any."""
    problems = []
    for f in catalogue()[channel_id].fields:
        values = fields[f.name] if f.count > 1 else [fields[f.name]]
        assert len(values) == f.count, (f.name, values)
        for value in values:
            if not value.strip() or measure(value, f.unit) > f.limit:
                problems.append(f"{f.name}: {value!r} ({measure(value, f.unit)} {f.unit} of {f.limit})")
    return problems


def test_channels_are_listed_with_their_limits(client):
    listed = {c["id"]: c for c in client.get("/v1/channels").json()["data"]}
    rsa = {f["name"]: f for f in listed["google-rsa"]["fields"]}
    assert rsa["headlines"]["limit"] == 30 and rsa["headlines"]["unit"] == "width"
    assert rsa["headlines"]["max_chars"] == {"en": 30, "zh": 15} and rsa["headlines"]["source"]
    assert listed["taobao-title"]["languages"] == ["zh"]


@pytest.mark.parametrize("industry, channel, language", [
    ("ecommerce", "google-rsa", "en"),   # SmolLM2, lists of fields
    ("ecommerce", "taobao-title", "zh"),  # Taobao bytes
    ("finance", "sms", "zh"),            # Qwen3: one UCS-2 segment
    ("finance", "x-post", "en"),         # X's weighting, up to 280 tokens: a context of 2048
    ("education", "email", "en"),        # GPT-J (a 512-token context here: a channel that fits it)
    ("ecommerce", "xiaohongshu-note", "en"),  # a 1,000-character body on a 1,024-token context: shortened to fit
])
def test_every_field_holds_its_limit_by_construction(client, industry, channel, language):
    for seed in range(2):
        r = client.post("/v1/copy", json={"industry": industry, "product": "insulated steel water bottle",
                                          "keywords": ["leak-proof"], "language": language, "channel": channel,
                                          "seed": seed, "temperature": 1.0, "cache": False})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["channel"] == channel and not within_limits(channel, body["fields"]), body["fields"]
        assert body["text"]


def test_every_channel_in_each_of_its_languages_answers_whole_fields_within_limits(client):
    """One generation per channel and language on SmolLM2 (a 1,024-token context here: the long channels'
    fields shrink to fit), eight at a time: every field present, non-empty, within its platform's limit, and
    not ending on a word no sentence ends on."""
    cases = [(c.id, language) for c in catalogue().values() for language in c.languages]

    def one(case):
        channel, language = case
        r = client.post("/v1/copy", json={"industry": "ecommerce", "product": "insulated steel water bottle",
                                          "language": language, "channel": channel, "seed": 7, "temperature": 1.0,
                                          "cache": False}, timeout=600)
        return case, r

    with ThreadPoolExecutor(8) as pool:
        for (channel, language), r in pool.map(one, cases):
            assert r.status_code == 200, (channel, language, r.text)
            fields = r.json()["fields"]
            assert not within_limits(channel, fields), (channel, language, fields)
            for value in (v for vs in fields.values() for v in (vs if isinstance(vs, list) else [vs])):
                assert language == "zh" or value.split()[-1].lower() not in DANGLING, (channel, value)
    assert len(cases) >= 16  # 9 channels, most in both languages


def test_a_stream_shows_its_fields_as_written_and_ends_with_them(client):
    with client.stream("POST", "/v1/copy", json={"industry": "ecommerce", "product": "yoga mat", "channel": "email",
                                                 "stream": True, "temperature": 0, "cache": False}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    final = events[-1]
    assert final["type"] == "final" and final["channel"] == "email" and not within_limits("email", final["fields"])
    raw = "".join(e["text"] for e in events if e["type"] == "delta")
    assert set(json.loads(raw)) == {"subject", "preheader"}  # the deltas are the JSON as the engine wrote it
    progress = [e["fields"] for e in events if e["type"] == "fields"]  # the fields as far as written
    assert len(progress) > 1 and progress[-1] == json.loads(raw)
    assert all(len(progress[i]) <= len(progress[i + 1]) for i in range(len(progress) - 1))
    assert progress[0]["subject"] in json.loads(raw)["subject"]  # begun, then grown


@pytest.mark.parametrize("body, status, param, says", [
    ({"channel": "fax"}, 404, "channel", "no channel 'fax'"),
    ({"channel": "taobao-title", "language": "en"}, 400, "language", "takes copy in zh"),
    ({"channel": "Not A Channel"}, 400, "channel", "channel"),
])
def test_channels_that_cannot_be_served_are_4xx(client, body, status, param, says):
    r = client.post("/v1/copy", json={"industry": "ecommerce", "product": "mug", **body})
    assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    assert says in r.json()["error"]["message"]
