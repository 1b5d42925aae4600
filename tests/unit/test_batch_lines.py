"""Batch input files: which lines run, and the error each other line gets (the batch goes on)."""

import json

from serve_app.batch_runner import parse_lines, response_line, succeeded

CHAT = "/v1/chat/completions"


def line(custom_id, url=CHAT, body=None, **extra) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": body if body is not None else {"model": "m", "messages": []}, **extra})


def test_good_lines_run_in_order_with_their_line_numbers():
    data = "\n".join([line("a"), "", line("b")]).encode()
    lines, errors = parse_lines(data, CHAT)
    assert [(x.number, x.custom_id) for x in lines] == [(1, "a"), (3, "b")] and errors == {}


def test_each_bad_line_gets_its_own_error_naming_the_line():
    data = "\n".join([
        line("ok"),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"method": "POST", "url": CHAT, "body": {}}),
        line("ok"),
        line("get", method="GET"),
        line("elsewhere", url="/v1/completions"),
        json.dumps({"custom_id": "nobody", "url": CHAT}),
    ]).encode()
    lines, errors = parse_lines(data, CHAT)
    assert [x.custom_id for x in lines] == ["ok"]
    messages = {n: e["error"]["message"] for n, e in errors.items()}
    assert messages[2].startswith("line 2 is not valid JSON")
    assert messages[3] == "line 3: a line must be one JSON object"
    assert "custom_id" in messages[4] and errors[4]["custom_id"] is None
    assert messages[5] == "line 5: custom_id 'ok' is already used by line 1" and errors[5]["custom_id"] == "ok"
    assert "method must be POST" in messages[6]
    assert messages[7] == "line 7: url is '/v1/completions', but this batch runs /v1/chat/completions"
    assert "body" in messages[8]
    assert all(e["response"] is None and e["error"]["code"] == "invalid_request" for e in errors.values())


def test_a_line_succeeded_only_with_a_2xx_answer():
    assert succeeded(response_line("a", 200, "r", {}))
    assert not succeeded(response_line("a", 400, "r", {"error": {}}))
    _, errors = parse_lines(b"{", CHAT)
    assert not succeeded(errors[1])
