"""Adapter releases over HTTP, in process (httpx's ASGITransport, the ingress's real routes and access checks),
on the registry over fakeredis (its real Lua scripts, in process): content-addressed versions, aliases, promote,
rollback, version deletes, and how requests name a version."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch
from ray import serve
from safetensors.torch import save_file

import serve_app.ingress  # noqa: F401 - registers the routes on the app
from contracts.config import AuthConfig, load_config
from contracts.errors import ConflictError, InvalidRequestError, NotFoundError
from deployments.releases.adapters import AdapterRef, content_digest, content_files, parse_spec
from deployments.releases.merged_weights import ActiveWeights
from deployments.router import CopyPlan, RoutePlan
from deployments.state.adapter_releases import AdapterRegistry
from deployments.state.keys import ApiKey
from deployments.state.ratelimit import Decision
from deployments.state.routes import LiveRoute, Shadow
from serve_app import access
from serve_app.access import AccessControl
from serve_app.api_app import app
from serve_app.copy_pipeline import CopyPipeline
from serve_app.ingress import Ingress
from serve_app.protocol import CopyRequest
from serve_app.releases_api import ReleasesAPI
from tests.fakes import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
LORA_MODEL = "tiny-qwen3"
ADMIN, USER = "admin-secret", "user-secret"


class Keys:
    KEYS = {USER: ApiKey("u1", "user", "user", 0.0), ADMIN: ApiKey("a1", "admin", "admin", 0.0)}

    async def verify(self, secret: str) -> ApiKey | None:
        return self.KEYS.get(secret)

    async def verify_counted(self, secret: str, _count) -> tuple[ApiKey | None, Decision]:
        return self.KEYS.get(secret), Decision(True)


class Limiter:
    async def admit(self, _key_id, _limit) -> Decision:
        return Decision(True)


class Releases(ReleasesAPI):
    """Enough of the ingress for /v1/adapters and its ``_adapter`` lookup."""

    _adapter = Ingress._adapter

    def __init__(self, roots: Path):
        config = load_config(ROOT / "tests/configs/integration.yaml")
        self.config = config.model_copy(update={"server": config.server.model_copy(
            update={"adapter_roots": [str(roots)]})})
        self.models = {m.name: None for m in config.models}
        store = MemoryStore()
        self.adapters = AdapterRegistry(store)
        self.router = SimpleNamespace(table={})
        self.router.live_routes = lambda: _value(self.router.table)
        self.active_weights = ActiveWeights(store)


async def _value(value):
    return value


def lora_folder(path: Path, fill: float) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.full((4, 8), fill)},
              str(path / "adapter_model.safetensors"))
    (path / "copyserve-adapter.json").write_text(json.dumps({"dataset_sha256": "x", "fill": fill}))
    return path


@pytest.fixture
def api(tmp_path, monkeypatch) -> Releases:
    ingress = Releases(tmp_path)
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=ingress))
    monkeypatch.setattr(access, "GATE", access.Gate(AccessControl(Keys(), Limiter(), AuthConfig(enabled=True))))
    return ingress


async def call(method: str, path: str, secret: str = ADMIN, body: dict | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.request(method, path, json=body, headers={"Authorization": f"Bearer {secret}"})


async def register(tmp_path: Path, name: str, fill: float, alias: str | None = "stable", **extra) -> httpx.Response:
    folder = tmp_path / f"{name}-{fill}"
    if not folder.exists():
        lora_folder(folder, fill)
    return await call("POST", "/v1/adapters", body={"name": name, "base_model": LORA_MODEL, "path": str(folder),
                                                    "alias": alias, **extra})


# --- content-addressed versions ----------------------------------------------------------------------

def test_the_digest_follows_the_content_not_the_folder(tmp_path):
    a, b = lora_folder(tmp_path / "a", 1.0), tmp_path / "b"
    shutil.copytree(a, b)
    digest = content_digest(a, content_files(a, "lora"))
    assert len(digest) == 64 and digest == content_digest(b, content_files(b, "lora"))
    (b / "copyserve-adapter.json").write_text("{}")  # the manifest (training metadata) is not content
    assert content_digest(b, content_files(b, "lora")) == digest
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": torch.full((4, 8), 2.0)},
              str(b / "adapter_model.safetensors"))
    assert content_digest(b, content_files(b, "lora")) != digest
    shutil.rmtree(b)
    shutil.copytree(a, b)
    (b / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA", "lora_alpha": 16}))
    assert content_digest(b, content_files(b, "lora")) != digest
    # the relative file names are hashed too: the same bytes under another name are other content
    (a / "x").mkdir()
    shutil.copy(a / "adapter_config.json", a / "x" / "c.json")
    assert content_digest(a, [a / "adapter_config.json"]) != content_digest(a, [a / "x" / "c.json"])


async def test_identical_content_registers_once(api, tmp_path):
    first = await register(tmp_path, "mugs", 1.0, reason="first cut")
    assert first.status_code == 201, first.text
    record = first.json()
    assert (record["version"], record["unchanged"], record["aliases"]) == (1, False, ["stable"])
    again = await register(tmp_path, "mugs", 1.0)
    assert again.status_code == 200 and again.json()["unchanged"] is True
    assert again.json()["version"] == 1 and again.json()["lora_id"] == record["lora_id"]
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "mugs-1.0", moved)  # the same content in another folder
    same = await call("POST", "/v1/adapters", body={"name": "mugs", "base_model": LORA_MODEL, "path": str(moved)})
    assert same.status_code == 200 and same.json()["version"] == 1
    history = (await call("GET", "/v1/adapters/mugs/history")).json()["data"]
    assert [(e["action"], e["who"], e["reason"]) for e in history] == [("register", "a1", "first cut")]


async def test_user_keys_see_versions_and_aliases_not_paths(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")
    for path in ("/v1/adapters/mugs", "/v1/adapters"):
        answer = (await call("GET", path, USER)).json()
        user_view = answer if "name" in answer else answer["data"][0]
        assert user_view["version"] == 1 and user_view["aliases"] == {"canary": 2, "stable": 1}
        assert [v["version"] for v in user_view["versions"]] == [1, 2] and len(user_view["digest"]) == 64
        assert not {"path", "manifest", "lora_id"} & set(user_view)
        assert all(not {"path", "manifest", "lora_id"} & set(v) for v in user_view["versions"])
    admin_view = (await call("GET", "/v1/adapters/mugs")).json()
    assert admin_view["path"].endswith("mugs-1.0") and admin_view["versions"][1]["path"].endswith("mugs-2.0")
    assert (await call("GET", "/v1/adapters/mugs/history", USER)).status_code == 403


# --- naming a version -----------------------------------------------------------------------------------

async def test_requests_name_a_version_every_way(api, tmp_path):
    v1 = (await register(tmp_path, "mugs", 1.0)).json()
    v2 = (await register(tmp_path, "mugs", 2.0, alias="canary")).json()
    for spec, expected in (("mugs", v1), ("mugs@stable", v1), ("mugs@canary", v2), ("mugs@v2", v2),
                           (f"mugs@{v2['digest'][:8]}", v2), (f"mugs@{v1['digest']}", v1)):
        ref = await api._adapter(spec, LORA_MODEL)
        assert (ref.version, ref.digest) == (expected["version"], expected["digest"]), spec
    for spec, error in (("mugs@beta", NotFoundError), ("mugs@v7", NotFoundError), ("cups", NotFoundError),
                        ("mugs@", InvalidRequestError), ("Mugs", InvalidRequestError),
                        ("mugs@UPPER", InvalidRequestError)):
        with pytest.raises(error) as err:
            await api._adapter(spec, LORA_MODEL)
        assert err.value.param == "adapter", spec
    with pytest.raises(InvalidRequestError, match="is for model tiny-qwen3"):
        await api._adapter("mugs@canary", "smollm2-135m-instruct")


def test_alias_and_version_forms_do_not_overlap():
    assert parse_spec("mugs") == parse_spec("mugs@stable")
    assert (parse_spec("mugs@v12").kind, parse_spec("mugs@12").value) == ("version", "12")
    assert parse_spec("mugs@12345678").kind == "digest"  # 8+ digits read as a digest prefix
    assert parse_spec("mugs@cafe").kind == "alias" and parse_spec("mugs@cafebabe").kind == "digest"


async def test_two_versions_never_share_an_engine_name_or_a_cache_key(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")
    one, two = await api._adapter("mugs", LORA_MODEL), await api._adapter("mugs@canary", LORA_MODEL)
    assert one.engine_name.startswith("mugs@v1-") and two.engine_name.startswith("mugs@v2-")
    assert one.engine_name != two.engine_name and one.engine_id != two.engine_id
    assert (one.tag, two.tag) == ("mugs@v1", "mugs@v2")  # what responses keep saying
    plan = CopyPlan(RoutePlan(model=LORA_MODEL, industry="finance"), "en", [{"role": "user", "content": "x"}], 64,
                    api.config.routes[0].quality)
    body = CopyRequest(industry="finance", product="mug", temperature=0)
    sampling = CopyPipeline.sampling(body, plan)
    keys = {CopyPipeline.cache_material(body, replace(plan, adapter=ref), sampling) for ref in
            (one, two, replace(two, digest="f" * 64), None)}
    assert len(keys) == 4  # per version, and per content even under one version number
    assert f'"adapter":"{two.engine_name}"' in CopyPipeline.cache_material(body, replace(plan, adapter=two), sampling)
    merged = CopyPipeline.cache_material(body, plan, sampling, weights=AdapterRef("tutor", 3, "/m", digest="a" * 64))
    assert '"adapter":"tutor@v3-aaaaaaaaaaaa"' in merged


# --- aliases, promote, rollback -------------------------------------------------------------------------

async def test_an_alias_moves_atomically_and_the_move_is_recorded(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    v2 = (await register(tmp_path, "mugs", 2.0, alias=None)).json()
    assert v2["aliases"] == [] and (await api._adapter("mugs", LORA_MODEL)).version == 1
    r = await call("PUT", "/v1/adapters/mugs/aliases/canary", body={"version": v2["digest"][:10], "reason": "try"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "mugs", "alias": "canary", "from": None, "to": 2,
                        "aliases": {"stable": 1, "canary": 2}}
    assert (await call("PUT", "/v1/adapters/mugs/aliases/stable", body={"version": "v2"})).json()["from"] == 1
    assert (await api._adapter("mugs", LORA_MODEL)).version == 2  # the next request serves the move
    newest = (await call("GET", "/v1/adapters/mugs/history")).json()["data"][:2]
    assert [(e["action"], e["alias"], e["from"], e["to"], e["who"]) for e in newest] == [
        ("move", "stable", 1, 2, "a1"), ("move", "canary", None, 2, "a1")]
    for alias, body, status in (("canary", {"version": 9}, 404), ("v3", {"version": 1}, 400),
                                ("deadbeef", {"version": 1}, 400), ("Canary", {"version": 1}, 400),
                                ("canary", {"version": "two"}, 400)):
        assert (await call("PUT", f"/v1/adapters/mugs/aliases/{alias}", body=body)).status_code == status, alias
    assert (await call("PUT", "/v1/adapters/cups/aliases/stable", body={"version": 1})).status_code == 404
    assert (await call("PUT", "/v1/adapters/mugs/aliases/stable", USER, {"version": 1})).status_code == 403


async def test_promote_then_roll_back(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    assert (await call("POST", "/v1/adapters/mugs/promote")).status_code == 409  # no canary yet
    await register(tmp_path, "mugs", 2.0, alias="canary")
    promoted = await call("POST", "/v1/adapters/mugs/promote", body={"reason": "canary looked good"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["aliases"] == {"stable": 2, "canary": 2} and promoted.json()["from"] == 1
    rolled = await call("POST", "/v1/adapters/mugs/rollback", body={"alias": "stable", "reason": "complaints"})
    assert rolled.status_code == 200 and rolled.json()["aliases"]["stable"] == 1
    again = await call("POST", "/v1/adapters/mugs/rollback")
    assert again.status_code == 409 and "no earlier version" in again.json()["error"]["message"]
    history = (await call("GET", "/v1/adapters/mugs/history")).json()["data"]
    assert [(e["action"], e["from"], e["to"], e["reason"]) for e in history[:2]] == [
        ("rollback", 2, 1, "complaints"), ("promote", 1, 2, "canary looked good")]
    assert (await call("POST", "/v1/adapters/mugs/promote", USER)).status_code == 403
    same = await call("POST", "/v1/adapters/mugs/promote", body={"from": "stable", "to": "stable"})
    assert same.status_code == 400


# --- deleting -----------------------------------------------------------------------------------------

async def test_a_version_in_use_stays(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")
    await register(tmp_path, "mugs", 3.0, alias=None)
    aliased = await call("DELETE", "/v1/adapters/mugs/versions/v2")
    assert aliased.status_code == 409 and "canary" in aliased.json()["error"]["message"]
    api.router.table = {"finance": LiveRoute([{"name": "B", "model": LORA_MODEL, "adapter": "mugs@v3", "weight": 1.0}])}
    pinned = await call("DELETE", "/v1/adapters/mugs/versions/v3")
    assert pinned.status_code == 409 and "route finance" in pinned.json()["error"]["message"]
    api.router.table = {"finance": LiveRoute([{"name": "B", "model": LORA_MODEL, "adapter": "mugs@canary",
                                               "weight": 1.0}])}
    assert (await call("DELETE", "/v1/adapters/mugs/aliases/canary")).status_code == 409  # the route names it
    api.router.table = {"finance": LiveRoute([{"name": "A", "model": LORA_MODEL, "adapter": None, "weight": 1.0}],
                                             Shadow("mugs@canary", 0.5))}
    shadowed = await call("DELETE", "/v1/adapters/mugs/aliases/canary")
    assert shadowed.status_code == 409 and "route finance (shadow)" in shadowed.json()["error"]["message"]
    assert (await call("DELETE", "/v1/adapters/mugs/aliases/stable")).status_code == 400
    assert (await call("DELETE", "/v1/adapters/mugs")).status_code == 409  # the whole adapter: as before
    api.router.table = {}
    assert (await call("DELETE", "/v1/adapters/mugs/versions/v3")).json() == {"name": "mugs", "version": 3,
                                                                              "deleted": True}
    assert (await call("DELETE", "/v1/adapters/mugs/versions/v3")).status_code == 404
    assert (await call("DELETE", "/v1/adapters/mugs/aliases/canary")).json()["aliases"] == {"stable": 1}
    assert (await call("DELETE", "/v1/adapters/mugs/versions/v2")).status_code == 200
    assert (await call("DELETE", "/v1/adapters/mugs")).json()["deleted"] is True
    assert (await call("GET", "/v1/adapters/mugs")).status_code == 404


# --- merged weights ---------------------------------------------------------------------------------------

async def test_a_merged_adapter_serves_only_the_version_the_model_runs(api):
    from deployments.releases.adapters import Adapter

    for number, digest in ((1, "1" * 64), (2, "2" * 64)):
        await api.adapters.register(Adapter("tutor", "tiny-gptj", f"/m/{number}", 0, 4, 0.0, {}, kind="merged",
                                            digest=digest), "stable" if number == 1 else "canary", None)
    await api.active_weights.set("tiny-gptj", (await api.adapters.resolve("tutor@v1")).ref)  # pinned to v1
    assert await api._adapter("tutor", "tiny-gptj") is None  # the bare name: whichever version it runs
    assert await api._adapter("tutor@stable", "tiny-gptj") is None
    with pytest.raises(ConflictError, match=r"tutor@v2.*serves tutor@v1"):
        await api._adapter("tutor@canary", "tiny-gptj")
