"""Access is declared once per route family (FastAPI dependencies), so a route added without it fails here;
and a request is checked, and counted against its key's rate limit, once."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import httpx
import pytest
from fastapi.routing import APIRoute
from ray import serve

import serve_app.ingress  # noqa: F401 - registers the routes on the app
from contracts.config import AuthConfig
from deployments.state.keys import ApiKey
from deployments.state.ratelimit import Decision
from serve_app import access
from serve_app.access import AccessControl, admin, caller, docs_reader
from serve_app.api_app import app
from serve_app.copy_api import CopyAPI

# Deliberately open: the studio page, the docs page (a 404 unless server.public_docs) and health, which load
# balancers call without a key.
OPEN = {("GET", "/"), ("GET", "/docs"), ("GET", "/healthz")}
# Checks its key by hand, at once with its route lookup (copy_api.py): dependencies run one after another.
BY_HAND = {("POST", "/v1/copy")}
DOCS = {("GET", "/openapi.json")}  # open only with server.public_docs
ADMIN = {("PUT", "/v1/routes/{industry}"), ("DELETE", "/v1/routes/{industry}"), ("POST", "/v1/adapters"),
         ("DELETE", "/v1/adapters/{name}"), ("PUT", "/v1/models/{model}/weights"), ("GET", "/v1/keys"),
         ("POST", "/v1/keys"), ("DELETE", "/v1/keys/{key_id}"),
         # adapter releases: the history names who acted, so reading it is an admin's too
         ("PUT", "/v1/adapters/{name}/aliases/{alias}"), ("DELETE", "/v1/adapters/{name}/aliases/{alias}"),
         ("DELETE", "/v1/adapters/{name}/versions/{version}"), ("GET", "/v1/adapters/{name}/history"),
         ("POST", "/v1/adapters/{name}/promote"), ("POST", "/v1/adapters/{name}/rollback"),
         ("PUT", "/v1/adapters/{name}/policy"), ("DELETE", "/v1/adapters/{name}/policy")}


def policies() -> dict[tuple[str, str], str]:
    found = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the /web mount: the studio's static files
        calls = {d.call for d in route.dependant.dependencies}
        assert not {caller, admin} <= calls, f"{route.path}: two checks would count one request twice"
        policy = ("admin" if admin in calls else "key" if caller in calls else "docs" if docs_reader in calls
                  else "open")
        found.update({(method, route.path): policy for method in route.methods})
    return found


def test_every_route_declares_its_access():
    found = policies()
    assert len(found) >= 31 and OPEN | BY_HAND | DOCS | ADMIN <= set(found)  # the walk saw the routes
    expected = {r: "open" for r in OPEN | BY_HAND} | {r: "docs" for r in DOCS} | {r: "admin" for r in ADMIN}
    assert {r: p for r, p in found.items() if p != "key"} == expected
    assert "self.access.check(request)" in inspect.getsource(CopyAPI.copy)


class Limiter:
    def __init__(self):
        self.admitted: list[str] = []

    async def admit(self, key_id: str, _limit) -> Decision:
        self.admitted.append(key_id)
        return Decision(True)

    async def admit_key(self, _record: str, _digest: str, key_id: str | None, _roles) -> tuple[dict, Decision]:
        if key_id is not None:  # as the script: a request counts only for a valid key
            self.admitted.append(key_id)
        return {}, Decision(True)


class Keys:
    KEYS = {"user-secret": ApiKey("u1", "user", "user", 0.0), "admin-secret": ApiKey("a1", "admin", "admin", 0.0)}

    async def verify(self, secret: str) -> ApiKey | None:
        return self.KEYS.get(secret)

    async def verify_counted(self, secret: str, count) -> tuple[ApiKey | None, Decision | None]:
        key = self.KEYS.get(secret)
        _, decision = await count(f"key:{secret}", secret, key.id if key else None)
        return key, decision if key else None

    async def list(self) -> list[ApiKey]:
        return list(self.KEYS.values())


@pytest.fixture
def limiter(monkeypatch) -> Limiter:
    limiter = Limiter()
    control = AccessControl(Keys(), limiter, AuthConfig(enabled=True))
    monkeypatch.setattr(control, "usage", lambda key: _answer({"key_id": key.id}))
    ingress = SimpleNamespace(access=control, keys=Keys(), _openapi={"openapi": "3.1.0"})
    # What Serve does for a class-based view: `self` is the replica's ingress.
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=ingress))
    monkeypatch.setattr(access, "GATE", access.Gate(control, public_docs=False))
    return limiter


async def _answer(value):
    return value


async def get(path: str, secret: str | None = None, method: str = "GET", **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.request(method, path, headers=headers, **kwargs)


async def test_a_request_is_checked_and_counted_once(limiter):
    r = await get("/v1/usage", "user-secret")  # the family's dependency, and the handler's `key`
    assert r.status_code == 200 and r.json() == {"key_id": "u1"} and limiter.admitted == ["u1"]
    r = await get("/v1/keys", "admin-secret")
    assert r.status_code == 200 and limiter.admitted == ["u1", "a1"]


async def test_refusals_keep_their_status_and_shape(limiter):
    r = await get("/v1/channels")
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    r = await get("/v1/channels", "not-a-key")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    r = await get("/v1/keys", "user-secret")
    assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
    # The key is checked before the body is read: a stranger learns nothing of the request's shape.
    r = await get("/v1/copy/revise", method="POST", json={"session_id": ""})
    assert r.status_code == 401 and limiter.admitted == []


async def test_the_openapi_document_needs_a_key_unless_docs_are_public(limiter, monkeypatch):
    assert (await get("/openapi.json")).status_code == 401
    assert (await get("/openapi.json", "user-secret")).json() == {"openapi": "3.1.0"}
    monkeypatch.setattr(access.GATE, "public_docs", True)
    assert (await get("/openapi.json")).status_code == 200 and limiter.admitted == ["u1"]
