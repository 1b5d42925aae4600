"""HTTP plumbing on a tiny in-process FastAPI app: request ids, body limit, error envelopes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from contracts.errors import NotFoundError
from serve_app.http import EdgeSettings, RequestContextMiddleware, install_error_handlers, sse, sse_stream
from serve_app.openai_protocol import ChatCompletionRequest

LIMIT = 1024


class Item(BaseModel):
    product: str = Field(..., min_length=1)
    n: int = Field(1, ge=1, le=8)


def build_app(allowed_hosts: frozenset[str] | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, settings=EdgeSettings(LIMIT, allowed_hosts))

    @app.post("/items")
    async def items(item: Item):
        return item.model_dump()

    @app.post("/chat")
    async def chat(req: ChatCompletionRequest):
        return {"stop": req.stop}

    @app.get("/missing")
    async def missing():
        raise NotFoundError("no such thing", "thing")

    @app.get("/boom")
    async def boom():
        raise RuntimeError("db password is hunter2")

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def error_of(r: httpx.Response) -> dict:
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["error"]


def request_ids(r: httpx.Response) -> list[str]:
    return r.headers.get_list("x-request-id")


async def test_generated_request_id_on_success(client):
    a = await client.post("/items", json={"product": "shoes"})
    b = await client.post("/items", json={"product": "shoes"})
    assert a.status_code == 200 and a.json() == {"product": "shoes", "n": 1}
    assert request_ids(a)[0].startswith("req-")
    assert request_ids(a)[0] != request_ids(b)[0]


async def test_generated_request_id_in_error_message(client):
    r = await client.get("/missing")
    assert r.status_code == 404
    err = error_of(r)
    rid = request_ids(r)[0]
    assert rid.startswith("req-")
    assert err == {"message": f"no such thing (request id: {rid})", "type": "not_found_error", "param": "thing",
                   "code": 404}


async def test_error_response_carries_one_request_id_header(client):
    r = await client.get("/missing")
    assert len(request_ids(r)) == 1


async def test_given_request_id_is_used(client):
    r = await client.get("/missing", headers={"X-Request-Id": "abc-123"})
    assert error_of(r)["message"].endswith("(request id: abc-123)")
    assert request_ids(r) == ["abc-123"]
    r = await client.post("/items", json={"product": ""}, headers={"X-Request-Id": "given-1"})
    assert "(request id: given-1)" in error_of(r)["message"]


async def test_body_over_limit_is_413(client):
    r = await client.post("/items", content=b"x" * (LIMIT + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == 413 and f"limit of {LIMIT} bytes" in err["message"]
    assert request_ids(r)[0] in err["message"]


async def test_body_at_limit_passes_the_size_check(client):
    body = b'{"product": "' + b"x" * (LIMIT - 15) + b'"}'
    assert len(body) == LIMIT
    r = await client.post("/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200


async def test_chunked_body_over_limit_is_413(client):
    async def chunks():
        for _ in range(4):
            yield b"x" * 400

    r = await client.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "limit" in error_of(r)["message"]


async def test_invalid_json_is_400(client):
    r = await client.post("/items", content=b'{"product": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = error_of(r)
    assert "not valid JSON" in err["message"] and err["type"] == "invalid_request_error" and err["param"] is None


async def test_validation_error_names_param(client):
    r = await client.post("/items", json={"product": "shoes", "n": 99})
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == "n" and err["message"].startswith("n: ")
    assert request_ids(r)[0] in err["message"]


async def test_json_array_body_is_400(client):
    r = await client.post("/items", json=[{"product": "shoes"}])
    assert r.status_code == 400
    assert "JSON object" in error_of(r)["message"]


async def test_unknown_exception_is_500_without_internals(client):
    r = await client.get("/boom")
    assert r.status_code == 500
    err = error_of(r)
    assert err["message"].startswith("internal server error (request id: req-")
    assert "hunter2" not in r.text


async def test_non_string_stop_is_400(client):
    r = await client.post("/chat", json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": 5})
    assert r.status_code == 400 and error_of(r)["param"] == "stop"


async def test_sse_stream_turns_late_error_into_event():
    async def events():
        yield {"a": 1}
        raise NotFoundError("gone", "model")

    out = [chunk async for chunk in sse_stream(events(), "rid-1", done_marker=True)]
    assert out[0] == sse({"a": 1}) == 'data: {"a":1}\n\n'
    assert '"type":"error"' in out[1] and "gone (request id: rid-1)" in out[1]
    assert out[-1] == "data: [DONE]\n\n"


async def test_unknown_path_is_404_in_the_error_shape(client):
    r = await client.get("/v2/nothing")
    assert r.status_code == 404
    err = error_of(r)
    assert err["type"] == "not_found_error" and "/v2/nothing" in err["message"] and "/v1" in err["message"]
    assert "detail" not in r.json()


async def test_wrong_method_is_405_naming_the_allowed_ones(client):
    r = await client.get("/items")
    assert r.status_code == 405
    err = error_of(r)
    assert "GET is not allowed on /items" in err["message"] and "POST" in err["message"]


@pytest.mark.parametrize("host,ok", [("127.0.0.1:8000", True), ("localhost:8000", True), ("[::1]:8000", True),
                                     ("10.1.2.3", True), ("copy.internal", True), ("evil.example:8000", False),
                                     ("", False)])
async def test_a_keyless_instance_answers_only_known_hosts(host, ok):
    """DNS rebinding: a page on evil.example re-points its name at 127.0.0.1; the Host header still says so."""
    app = build_app(allowed_hosts=frozenset({"copy.internal"}))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/items", json={"product": "x"}, headers={"host": host})
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert "API keys off" in error_of(r)["message"]


async def test_with_api_keys_every_host_is_answered(client):
    r = await client.post("/items", json={"product": "x"}, headers={"host": "evil.example"})
    assert r.status_code == 200
