"""Over HTTP, in process (the ingress's real routes and access checks, the registry's in-memory twin): a live
route's shadow, release policies (every bad input a clear 4xx), the automatic rollback a policy makes, and the
evaluation's win rate on shadowed pairs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ray import serve

from contracts.config import AuthConfig
from deployments.releases.adapters import Adapter
from deployments.releases.autopilot import Autopilot
from deployments.router import Router
from deployments.state.adapter_eval import AdapterEvaluation
from deployments.state.adapter_policy import ReleasePolicies
from deployments.state.routes import LiveRoutes, Shadow
from serve_app import access
from serve_app.access import AccessControl
from serve_app.admin_api import AdminAPI
from serve_app.policy_api import PolicyAPI
from tests.unit.test_adapter_releases import ADMIN, LORA_MODEL, USER, Keys, Limiter, Releases, call, register
from tests.unit.test_evaluation_stats import answer


class Admin(Releases, AdminAPI, PolicyAPI):
    """Enough of the ingress for /v1/routes, /v1/adapters and their policies, on one in-memory store."""

    def __init__(self, roots):
        super().__init__(roots)
        store = self.adapters.store
        self.evaluation = AdapterEvaluation(store)
        self.policies = ReleasePolicies(store)
        self.autopilot = Autopilot(self.adapters, self.evaluation, self.policies, interval_s=0.01)
        self.evaluation.on_written = self.autopilot.poke
        self.live_routes = LiveRoutes(store)
        self.router = Router(self.config, store)


@pytest.fixture
def api(tmp_path, monkeypatch) -> Admin:
    ingress = Admin(tmp_path)
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=ingress))
    monkeypatch.setattr(access, "GATE", access.Gate(AccessControl(Keys(), Limiter(), AuthConfig(enabled=True))))
    return ingress


async def canary(tmp_path) -> None:
    await register(tmp_path, "mugs", 1.0)
    await register(tmp_path, "mugs", 2.0, alias="canary")


def message(response) -> str:
    return response.json()["error"]["message"]


# --- a route's shadow -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("shadow", "status", "words"), [
    ({"adapter": "mugs@canary", "share": 0}, 400, "shadow.share"),
    ({"adapter": "mugs@canary", "share": 1.5}, 400, "shadow.share"),
    ({"adapter": "mugs@canary"}, 400, "shadow.share"),
    ({"adapter": "Not A Spec", "share": 0.5}, 400, "shadow.adapter"),
    ({"adapter": "mugs@canary", "share": 0.5, "model": "x"}, 400, "shadow.model"),
    ({"adapter": "cups@canary", "share": 0.5}, 404, "'cups' is not registered"),
    ({"adapter": "mugs@next", "share": 0.5}, 404, "no alias 'next'"),
    ({"adapter": "tutor@stable", "share": 0.5}, 400, "merged adapter of tiny-gptj"),
])
async def test_a_bad_shadow_is_refused_clearly(api, tmp_path, shadow, status, words):
    await canary(tmp_path)
    await api.adapters.register(Adapter("tutor", "tiny-gptj", "/m/1", 0, 4, 0.0, {}, kind="merged", digest="1" * 64),
                                "stable", None)
    answered = await call("PUT", "/v1/routes/finance", body={"model": LORA_MODEL, "shadow": shadow})
    assert answered.status_code == status and words in message(answered), answered.text


async def test_a_route_shadows_a_share_with_a_version(api, tmp_path):
    await canary(tmp_path)
    body = {"variants": [{"name": "A", "model": LORA_MODEL, "adapter": "mugs"}],
            "shadow": {"adapter": "mugs@canary", "share": 0.5}}
    answered = await call("PUT", "/v1/routes/finance", body=body)
    assert answered.status_code == 200 and answered.json()["shadow"] == {"adapter": "mugs@canary", "share": 0.5}
    listed = {r["industry"]: r for r in (await call("GET", "/v1/routes", USER)).json()["data"]}
    assert listed["finance"]["shadow"] == {"adapter": "mugs@canary", "share": 0.5}
    assert listed["finance"]["source"] == "live" and listed["ecommerce"]["shadow"] is None
    plan = await api.router.plan_copy("finance", "mug", [], None, "short", "en")
    assert plan.route.shadow == Shadow("mugs@canary", 0.5) and plan.route.adapter == "mugs"
    # without a shadow the route is stored as before: a plain variant list (what older replicas read)
    assert (await call("PUT", "/v1/routes/finance", body={"model": LORA_MODEL})).json()["shadow"] is None
    raw = json.loads((await api.adapters.store.hashes())["test:routes"]["finance"])
    assert isinstance(raw, list) and (await api.router.plan_copy("finance", "mug", [], None, "short", "en")
                                      ).route.shadow is None


# --- release policies ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "words"), [
    ({}, "auto_rollback needs a threshold to break"),
    ({"max_error_rate": 2}, "max_error_rate"),
    ({"max_error_rate": 0.1, "min_samples": "many"}, "min_samples"),
    ({"max_error_rate": 0.1, "promote": True}, "promote"),
    ({"max_error_rate": 0.1, "min_samples": 5, "rollback_min_samples": 10}, "must not exceed min_samples"),
])
async def test_a_bad_policy_is_a_clear_400(api, tmp_path, policy, words):
    await canary(tmp_path)
    answered = await call("PUT", "/v1/adapters/mugs/policy", body=policy)
    assert answered.status_code == 400 and words in message(answered), answered.text


async def test_policies_are_set_read_and_deleted(api, tmp_path):
    policy = {"max_error_rate": 0.1, "min_samples": 50, "rollback_min_samples": 5}
    assert (await call("PUT", "/v1/adapters/mugs/policy", body=policy)).status_code == 404
    await canary(tmp_path)
    assert (await call("PUT", "/v1/adapters/mugs/policy", USER, policy)).status_code == 403
    set_ = await call("PUT", "/v1/adapters/mugs/policy", body=policy)
    assert set_.status_code == 200, set_.text
    got = set_.json()
    assert got["policy"] | policy == got["policy"] and got["policy"]["auto_rollback"] is True
    assert got["verdict"] == {"canary": 2, "stable": 1, "action": None,
                              "reason": "0 of the 50 answers a promote needs"}
    assert (await call("GET", "/v1/adapters/mugs/policy", USER)).json()["policy"] == got["policy"]
    assert (await call("DELETE", "/v1/adapters/mugs/policy", USER)).status_code == 403
    assert (await call("DELETE", "/v1/adapters/mugs/policy")).json()["deleted"] is True
    assert (await call("DELETE", "/v1/adapters/mugs/policy")).status_code == 404
    assert (await call("GET", "/v1/adapters/mugs/policy")).json() == {"name": "mugs", "policy": None, "verdict": None}
    assert (await call("GET", "/v1/adapters/cups/policy")).status_code == 404
    api.adapters.store.down = True
    assert (await call("PUT", "/v1/adapters/mugs/policy", ADMIN, policy)).status_code == 503


async def test_errors_past_the_policy_roll_the_canary_back_with_the_reason_in_the_history(api, tmp_path):
    await canary(tmp_path)
    policy = {"max_error_rate": 0.2, "rollback_min_samples": 5, "min_samples": 100}
    assert (await call("PUT", "/v1/adapters/mugs/policy", body=policy)).status_code == 200
    version2 = (await api.adapters.resolve("mugs@canary")).ref
    for _ in range(3):
        api.evaluation.record(answer(adapter="mugs@v2"))
    for _ in range(2):
        api.evaluation.record_error(version2)  # 2 of 5: 40% > 20%
    await api.evaluation.drain()
    await api.autopilot.drain()
    assert (await call("GET", "/v1/adapters/mugs", USER)).json()["aliases"] == {"stable": 1, "canary": 1}
    entry = (await call("GET", "/v1/adapters/mugs/history")).json()["data"][0]
    assert (entry["who"], entry["action"], entry["alias"], entry["from"], entry["to"]) == ("auto", "rollback",
                                                                                          "canary", 2, 1)
    assert entry["reason"] == "auto rollback: error rate 40.0% (2 of 5) over max_error_rate 20.0%"


async def test_the_evaluation_gives_the_canary_a_win_rate_on_shadowed_pairs(api, tmp_path):
    await canary(tmp_path)
    served = answer(adapter="mugs@v1", polish={"edits": [{"rule": "compliance", "flagged": True}]})
    for shadow in (answer(adapter="mugs@v2", polish={"edits": []}),) * 3 + (answer(adapter="mugs@v2"),):
        api.evaluation.record_shadow(shadow, served)
    await api.evaluation.drain()
    got = (await call("GET", "/v1/adapters/mugs/evaluation", USER)).json()
    rate = got["compare"]["canary_vs_stable"]["win_rate"]
    assert (rate["wins"], rate["losses"], rate["ties"], rate["rate"]) == (3, 1, 0, 0.75)
    assert got["versions"][1]["shadow_samples"] == 4 and got["versions"][0]["pairs"] == {}
