"""Every input a client can send gets a 2xx or a 4xx in the one error shape, never a 5xx or a hang.

schemathesis reads the running app's /openapi.json (which names the config's industries, models and
budgets, so valid cases reach the engines) and sends every operation positive and negative cases, a
fixed, derandomized budget per operation that fits CI."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 10  # per operation and mode
MAX_TOKENS = 4  # generated answers stay short on this CPU: the checks are about inputs, not lengths
ADMIN_OPERATIONS = {("POST", "/v1/adapters"), ("POST", "/v1/keys"), ("GET", "/v1/keys")}
# Admin changes that would reshape the app under the rest of the suite (a rolling reload, a route table):
# fuzzed with a user key only (403 before any logic); their validation is covered by their own tests.
USER_ONLY = {("PUT", "/v1/models/{model}/weights"), ("PUT", "/v1/routes/{industry}"),
             ("DELETE", "/v1/routes/{industry}"), ("DELETE", "/v1/adapters/{name}"), ("DELETE", "/v1/keys/{key_id}")}


GENERATING = {"/v1/copy", "/v1/copy/revise", "/v1/chat/completions", "/v1/completions"}


def short(body, path: str):
    """Cap generation budgets in a drawn body, and give one to a generating body that has none (its default
    comes from `length`, up to 8 alternatives each: most of the test's time went there); every other field
    stays as drawn."""
    if isinstance(body, dict):
        budgets = [f for f in ("max_tokens", "max_completion_tokens") if f in body]
        for field in budgets:
            if isinstance(body[field], int) and not isinstance(body[field], bool) and body[field] > MAX_TOKENS:
                body[field] = MAX_TOKENS
        if not budgets and path in GENERATING:
            body["max_tokens"] = MAX_TOKENS
    return body


def sender(operation, mode: GenerationMode, base_url: str, headers: dict, statuses: Counter, problems: list):
    """A hypothesis test sending ``operation`` cases of ``mode``, recording statuses and findings."""
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def send(case):
        if case.body is not None and not isinstance(case.body, bytes):
            case.body = short(case.body, operation.path)
        response = case.call(base_url=base_url, headers=headers, timeout=120)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            problems.append(f"{label}: {response.status_code} {response.text[:200]} for {case.body!r:.200}")
        elif response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert error["message"] and error["type"]
            except Exception:  # noqa: BLE001 - any shape but ours is the finding
                problems.append(f"{label}: {response.status_code} not in our error shape: {response.text:.200}")

    return send


def test_no_input_gets_a_server_error(base_url, user_key, admin_key):
    document = httpx.get(f"{base_url}/openapi.json", timeout=30, headers={"Authorization": f"Bearer {user_key}"})
    industry = document.json()["components"]["schemas"]["CopyRequest"]["properties"]["industry"]
    assert "ecommerce" in json.dumps(industry)  # the live config's values reach clients
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    statuses: Counter = Counter()
    problems: list[str] = []

    for operation in operations:
        key = admin_key if (operation.method.upper(), operation.path) in ADMIN_OPERATIONS else user_key
        headers = {"Authorization": f"Bearer {key}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            send = sender(operation, mode, base_url, headers, statuses, problems)
            try:
                send()
            except Unsatisfiable:
                # No invalid input exists (no parameters, or a free-form path segment): nothing to send.
                assert mode is GenerationMode.NEGATIVE, f"{operation.method} {operation.path}: no valid case"
                statuses["no negative case"] += 1

    total = sum(n for s, n in statuses.items() if isinstance(s, int))
    print(f"\n[fuzz] {len(operations)} operations, {total} cases: {dict(sorted(statuses.items(), key=str))}")
    assert total >= len(operations) * 2, "every operation was sent cases in both modes"
    assert any(isinstance(s, int) and 200 <= s < 300 for s in statuses), "valid cases reached the logic"
    assert not problems, "\n".join(problems[:10])


@pytest.mark.parametrize("body", [
    {"industry": "ecommerce", "product": "x", "seed": 2**70},
    {"industry": "ecommerce", "product": "x", "keywords": "not-a-list"},
    {"industry": "ecommerce", "product": "\x00" * 10, "max_tokens": 2},
    {"industry": ["ecommerce"], "product": "x"},
])
def test_a_corpus_of_hostile_copy_bodies(client, body):
    r = client.post("/v1/copy", json=body)
    assert r.status_code < 500 and (r.status_code == 200 or "error" in r.json()), r.text
