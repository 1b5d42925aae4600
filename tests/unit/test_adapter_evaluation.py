"""Adapter evaluation: what a copy records for the version that wrote it (through the real /v1/copy handler,
whole and streamed, on fakes), and GET /v1/adapters/{name}/evaluation (statistics: test_evaluation_stats.py)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest

from contracts.config import AuthConfig, parse_config
from contracts.errors import ServiceUnavailableError
from deployments.generation import Completion, Delta
from deployments.releases.adapters import AdapterRef
from deployments.releases.evaluation import moments, report, wilson
from deployments.router import Router
from deployments.state.adapter_eval import AdapterEvaluation
from serve_app.copy_api import CopyAPI
from serve_app.copy_pipeline import CopyPipeline
from serve_app.protocol import CopyRequest
from serve_app.shadow import ShadowRunner
from tests.fakes import FakeMethod, MemoryStore
from tests.unit.test_adapter_releases import USER, Releases, call, register
from tests.unit.test_evaluation_stats import answer

CONFIG = parse_config({
    "redis": {"enabled": False},
    "models": [{"name": "qwen-small", "family": "qwen3", "source": "Qwen/Qwen3-0.6B"}],
    "routes": [{"industry": "ecommerce", "model": "qwen-small"}],
})
CANARY = AdapterRef("mugs", 2, "/adapters/mugs-2", 7, "ab" * 32)
KEY = "test:adapter:mugs:eval:v2"


# --- recording through /v1/copy ---------------------------------------------------------------------------

class Access:
    async def check(self, request):
        return None

    @asynccontextmanager
    async def metered(self, key, tokens: int):
        yield None

    async def settle(self, *args) -> None:
        pass


class Cache:
    def __init__(self, hit: dict | None = None):
        self.hit = hit

    def key(self, material: str) -> str:
        return "cache-key"

    async def get(self, key: str):
        return self.hit

    async def put(self, key: str, payload: dict) -> None:
        pass


def polished(draft):
    draft.edits = [{"rule": "compliance", "before": "best", "after": "great", "start": 0, "flagged": False}]
    return draft


def scored(draft):
    draft.sentiment = {"label": "positive", "score": 0.9, "language": "en"}
    return draft


COMPLETION = Completion(model="qwen-small", texts=["Warm mug."], finish_reasons=["stop"], prompt_tokens=5,
                        completion_tokens=3, first_token_s=0.04, total_s=0.2)


class Stream:
    def __init__(self, items):
        self.items = items

    def __aiter__(self):
        return self._each()

    async def _each(self):
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            yield item

    def cancel(self):
        pass


class CopyEndpoint(CopyAPI):
    def __init__(self, store=None, reply=lambda request: COMPLETION, hit: dict | None = None):
        self.access, self.cache = Access(), Cache(hit)
        model = SimpleNamespace(generate=FakeMethod(reply))
        stream = SimpleNamespace(generate_stream=SimpleNamespace(remote=lambda g: Stream(self.stream_items)))
        self.stream_items = [[Delta(0, "Warm mug.")], COMPLETION]
        self.pipeline = CopyPipeline(Router(CONFIG), {"qwen-small": model}, {"qwen-small": stream},
                                     SimpleNamespace(process=FakeMethod(polished)),
                                     SimpleNamespace(process=FakeMethod(scored)), None)
        self.store = store or MemoryStore()
        self.evaluation = AdapterEvaluation(self.store)
        self.shadows = ShadowRunner(self.pipeline, None, self.evaluation, max_in_flight=0)
        self.asked: list[str] = []

    async def _adapter(self, spec: str, model: str) -> AdapterRef:
        self.asked.append(spec)
        return CANARY

    async def _merged_weights(self, model: str) -> None:
        return None


def http_request():
    return SimpleNamespace(state=SimpleNamespace(request_id="rid"), headers={})


def body(**over) -> CopyRequest:
    return CopyRequest(industry="ecommerce", product="mug", temperature=0, adapter="mugs@canary", **over)


async def sse_finish(response) -> None:
    async for _ in response.body_iterator:
        pass


@pytest.mark.parametrize("stream", [False, True])
async def test_a_copy_records_its_version_and_scores(stream):
    api = CopyEndpoint()
    response = await api.copy(body(stream=stream), http_request())
    if stream:
        await sse_finish(response)
    await api.evaluation.drain()
    assert response.status_code == 200 and api.asked == ["mugs@canary"]
    hashes = await api.store.hashes()
    m = moments(hashes[KEY])
    assert float(hashes[KEY]["samples"]) == 1
    assert {k: v.total for k, v in m.items()} == pytest.approx({
        "error": 0, "attempts": 1, "sentiment": 0.9, "polish_edits": 1, "compliance_edits": 1, "compliance_flags": 0,
        "flagged": 0, "cut_by_length": 0, "total_ms": m["total_ms"].total, "first_token_ms": 40.0})
    assert all(v.n == 1 for v in m.values()) and m["total_ms"].total >= 0
    assert list(hashes) == [KEY]  # nothing for any other version


async def test_a_cache_hit_is_no_new_evidence():
    cached = json.loads((await CopyEndpoint().copy(body(), http_request())).body)
    api = CopyEndpoint(hit=cached)
    response = await api.copy(body(), http_request())
    await api.evaluation.drain()
    assert response.status_code == 200 and await api.store.hashes() == {}


async def test_a_failed_copy_counts_an_error_for_its_version():
    def broken(request):
        raise RuntimeError("engine died")

    api = CopyEndpoint(reply=broken)
    with pytest.raises(RuntimeError):
        await api.copy(body(), http_request())
    # streamed: the error after the first token is the stream's last event
    api.stream_items = [[Delta(0, "Warm")], ServiceUnavailableError("the replica went away")]
    response = await api.copy(body(stream=True), http_request())
    events = [chunk async for chunk in response.body_iterator]
    assert json.loads(events[-1].removeprefix("data: "))["type"] == "error"
    await api.evaluation.drain()
    fields = (await api.store.hashes())[KEY]
    assert "samples" not in fields and (float(fields["error:n"]), float(fields["error:sum"])) == (2, 2)


class BrokenStore(MemoryStore):
    async def call(self, fn, default=None):
        raise RuntimeError("not even failing open")


@pytest.mark.parametrize("store", [MemoryStore(), BrokenStore()], ids=["redis-down", "store-raises"])
async def test_the_copy_is_answered_whatever_recording_does(store):
    store.down = True
    api = CopyEndpoint(store)
    response = await api.copy(body(), http_request())
    await api.evaluation.drain()
    store.down = False  # Redis back: nothing was written meanwhile
    assert response.status_code == 200 and await store.hashes() == {}


# --- GET /v1/adapters/{name}/evaluation -------------------------------------------------------------------

class Evaluated(Releases):
    def __init__(self, roots):
        super().__init__(roots)
        self.evaluation = AdapterEvaluation(self.adapters.store)


@pytest.fixture
def api(tmp_path, monkeypatch):
    from ray import serve

    from serve_app import access
    from serve_app.access import AccessControl
    from tests.unit.test_adapter_releases import Keys, Limiter

    ingress = Evaluated(tmp_path)
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=ingress))
    monkeypatch.setattr(access, "GATE", access.Gate(AccessControl(Keys(), Limiter(), AuthConfig(enabled=True))))
    return ingress


async def scores(api, version: int, sentiments: list[float], errors: int = 0) -> None:
    for s in sentiments:
        api.evaluation.record(answer(adapter=f"mugs@v{version}", sentiment={"score": s}))
    for _ in range(errors):
        api.evaluation.record_error(AdapterRef("mugs", version, "/x"))
    await api.evaluation.drain()


async def test_the_evaluation_compares_canary_with_stable(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")
    await scores(api, 1, [0.5, 0.6, 0.55, 0.45], errors=1)
    await scores(api, 2, [0.9, 0.85, 0.95, 0.9])
    answer_ = await call("GET", "/v1/adapters/mugs/evaluation", USER)
    assert answer_.status_code == 200, answer_.text
    got = answer_.json()
    assert (got["name"], got["aliases"]) == ("mugs", {"canary": 2, "stable": 1})
    one, two = got["versions"]
    assert (one["version"], one["aliases"], one["samples"], len(one["digest"])) == (1, ["stable"], 4, 64)
    assert (two["version"], two["aliases"], two["samples"]) == (2, ["canary"], 4)
    assert one["metrics"]["sentiment"]["mean"] == pytest.approx(0.525)
    assert one["metrics"]["sentiment"]["n"] == 4 and len(one["metrics"]["sentiment"]["ci95"]) == 2
    assert one["error_rate"]["errors"] == 1 and one["error_rate"]["n"] == 5 and one["error_rate"]["mean"] == 0.2
    lo, hi = one["error_rate"]["ci95"]
    assert (lo, hi) == pytest.approx(wilson(1, 5), abs=1e-6)
    assert "error" not in one["metrics"] and "first_token_ms" not in one["metrics"]  # none measured
    compare = got["compare"]["canary_vs_stable"]
    assert compare["sentiment"]["delta"] == pytest.approx(0.375) and compare["sentiment"]["better"] == "canary"
    assert compare["attempts"] == {"delta": 0, "ci95": [0, 0], "better": None}
    assert compare["error"]["delta"] == pytest.approx(-0.2) and compare["error"]["better"] is None


async def test_versions_without_answers_and_no_canary(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    got = (await call("GET", "/v1/adapters/mugs/evaluation", USER)).json()
    assert got["versions"][0] | {"digest": ""} == {"version": 1, "digest": "", "aliases": ["stable"], "samples": 0,
                                                   "metrics": {}, "error_rate": None, "shadow_samples": 0,
                                                   "pairs": {}}
    assert got["compare"] == {}
    assert (await call("GET", "/v1/adapters/cups/evaluation", USER)).status_code == 404
    api.adapters.store.down = True
    assert (await call("GET", "/v1/adapters/mugs/evaluation", USER)).status_code == 503


async def test_deletes_remove_scores_and_registering_again_keeps_them(api, tmp_path):
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")
    await register(tmp_path, "mugs", 3.0, alias=None)
    for version in (1, 2, 3):
        await scores(api, version, [0.5])
    store = api.adapters.store
    assert (await register(tmp_path, "mugs", 1.0)).json()["unchanged"] is True
    assert float((await store.hashes())["test:adapter:mugs:eval:v1"]["samples"]) == 1  # same content: same scores
    assert (await call("DELETE", "/v1/adapters/mugs/versions/v3")).status_code == 200
    hashes = await store.hashes()
    assert "test:adapter:mugs:eval:v3" not in hashes and "test:adapter:mugs:eval:v2" in hashes
    assert (await call("DELETE", "/v1/adapters/mugs")).status_code == 200
    assert not [k for k in await store.hashes() if ":eval:" in k]
    # the numbers go on after a delete: a new version starts from nothing
    assert (await register(tmp_path, "mugs", 1.0)).json()["version"] == 4
    assert (await call("GET", "/v1/adapters/mugs/evaluation", USER)).json()["versions"][0]["samples"] == 0


def test_the_report_of_a_version_without_sums():
    got = report("mugs", {"stable": 1, "canary": 2}, {1: "a", 2: "b"}, {1: {}, 2: {}})
    assert got["compare"] == {"canary_vs_stable": {}}
