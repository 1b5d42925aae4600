"""`copyserve adapters`: each command's HTTP call, and what it prints."""

from __future__ import annotations

import httpx
import pytest

from serve_app import adapters_cli
from serve_app.cli import parser


@pytest.mark.parametrize("argv, call", [
    (["list"], ("GET", "/v1/adapters", None)),
    (["history", "mugs", "--limit", "5"], ("GET", "/v1/adapters/mugs/history?limit=5", None)),
    (["promote", "mugs"], ("POST", "/v1/adapters/mugs/promote", {"from": "canary", "to": "stable"})),
    (["promote", "mugs", "--from", "beta", "--to", "canary", "--reason", "ok"],
     ("POST", "/v1/adapters/mugs/promote", {"from": "beta", "to": "canary", "reason": "ok"})),
    (["rollback", "mugs"], ("POST", "/v1/adapters/mugs/rollback", {"alias": "stable"})),
    (["alias", "mugs", "canary", "3"], ("PUT", "/v1/adapters/mugs/aliases/canary", {"version": 3})),
    (["alias", "mugs", "canary", "v3"], ("PUT", "/v1/adapters/mugs/aliases/canary", {"version": "v3"})),
    (["register", "mugs", "/adapters/mugs-2", "--base-model", "tiny-qwen3", "--alias", "canary"],
     ("POST", "/v1/adapters", {"name": "mugs", "base_model": "tiny-qwen3", "path": "/adapters/mugs-2",
                               "alias": "canary"})),
    (["register", "mugs", "/adapters/mugs-2", "--base-model", "tiny-qwen3", "--alias", "none", "--reason", "try"],
     ("POST", "/v1/adapters", {"name": "mugs", "base_model": "tiny-qwen3", "path": "/adapters/mugs-2",
                               "alias": None, "reason": "try"})),
    (["delete", "mugs", "--version", "v2"], ("DELETE", "/v1/adapters/mugs/versions/v2", None)),
    (["delete", "mugs"], ("DELETE", "/v1/adapters/mugs", None)),
    (["alias", "mugs", "canary", "12345678"], ("PUT", "/v1/adapters/mugs/aliases/canary", {"version": "12345678"})),
])
def test_each_command_makes_one_call(argv, call):
    assert adapters_cli.request(parser().parse_args(["adapters", *argv])) == call


def test_answers_print_as_tables_and_errors_as_the_service_said(monkeypatch, capsys):
    answers = {
        "/v1/adapters": (200, {"object": "list", "data": [
            {"name": "mugs", "base_model": "tiny-qwen3", "kind": "lora", "version": 1, "digest": "ab" * 32,
             "versions": [{"version": 1}, {"version": 2}], "aliases": {"stable": 1, "canary": 2}}]}),
        "/v1/adapters/mugs/promote": (409, {"error": {"message": "adapter 'mugs' has no alias 'canary'"}}),
    }
    seen = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        status, body = answers[request.url.path]
        return httpx.Response(status, json=body)

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(reply), **kw))
    args = parser().parse_args(["adapters", "list", "--key", "cs-secret"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mugs" in out and "abababababab" in out and "v1 v2" in out and "canary=v2, stable=v1" in out
    args = parser().parse_args(["adapters", "promote", "mugs"])
    assert args.func(args) == 1
    assert "409: adapter 'mugs' has no alias 'canary'" in capsys.readouterr().err
    assert seen[0] == "Bearer cs-secret"


def test_a_registration_says_whether_the_content_was_new():
    answer = {"name": "mugs", "version": 2, "digest": "cd" * 32, "aliases": {"stable": 1, "canary": 2}}
    assert adapters_cli.show_registered({**answer, "unchanged": False}).splitlines() == [
        "mugs: registered as v2 (digest cdcdcdcdcdcd)", "aliases: canary=v2, stable=v1"]
    assert adapters_cli.show_registered({**answer, "unchanged": True}).startswith("mugs: already registered as v2")
    assert adapters_cli.show_deleted({"name": "mugs", "version": 2, "deleted": True}) == "mugs@v2: deleted"
