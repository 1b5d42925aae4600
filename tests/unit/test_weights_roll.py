"""Activating merged weights: a fixed replica count is raised by one for the roll (Serve then starts
each new replica before stopping an old one) and brought back once every replica runs the new
weights; an autoscaled deployment is rolled as it is."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from contracts.config import load_config, parse_config
from contracts.errors import ConflictError
from deployments.releases.adapters import Adapter, AdapterRef
from deployments.releases.merged_weights import PendingRoll
from serve_app import serve_control, weights_roll
from serve_app.admin_api import AdminAPI
from serve_app.protocol import WeightsRequest
from serve_app.serve_config import build_serve_config

ROOT = Path(__file__).resolve().parents[2]
SOLO, PAIR = "tiny-gptj", "tiny-gptj-pair"  # 1 and 2 fixed replicas in the integration config
REF = AdapterRef(name="tutor", version=1, path="/adapters/tutor/v1/merged")


class Admin(AdminAPI):
    def __init__(self, config):
        self.config = config


class Controller:
    """serve_control's calls, on a config held in memory; statuses play in order."""

    def __init__(self, monkeypatch, config, statuses=(), fresh=()):
        self.running, self.deployed, self.statuses = build_serve_config(config), [], list(statuses)
        self.fresh = list(fresh)  # replicas running the new weights, one figure per look (0 when none left)
        monkeypatch.setattr(serve_control, "deployed_config", lambda: self.running)
        monkeypatch.setattr(serve_control, "deploy", self.deploy)
        monkeypatch.setattr(serve_control, "deployment_status", lambda _app: self.statuses.pop(0))
        monkeypatch.setattr(serve_control, "running_since",
                            lambda _app, _deployment, _since: self.fresh.pop(0) if self.fresh else 0)
        monkeypatch.setattr(weights_roll, "SETTLE_POLL_S", 0)

    def deploy(self, config):
        self.running = config
        self.deployed.append(config)

    def spec(self, config, model):
        return next(d for d in config["applications"][0]["deployments"] if d["name"] == f"model-{model}")


@pytest.fixture
def config():
    return load_config(ROOT / "tests/configs/integration.yaml")


@pytest.mark.parametrize("model, count", [(SOLO, 1), (PAIR, 2)])
def test_a_fixed_count_rolls_with_one_extra_replica(monkeypatch, config, model, count):
    control = Controller(monkeypatch, config)
    assert weights_roll.roll(config, model, REF) == count
    (rolled,) = control.deployed
    spec = control.spec(rolled, model)
    assert spec["num_replicas"] == count + 1
    assert spec["ray_actor_options"]["runtime_env"]["env_vars"]["COPYSERVE_MERGED_ADAPTER"]
    assert control.spec(rolled, "tiny-qwen3") == control.spec(build_serve_config(config), "tiny-qwen3")


def status(state: str, **replicas: int) -> dict:
    return {f"model-{SOLO}": {"status": state, "replicas": replicas}}


@pytest.mark.parametrize("statuses", [
    pytest.param([status("HEALTHY", RUNNING=1),                  # the controller has not picked it up yet
                  status("UPDATING", RUNNING=2),
                  status("UPDATING", RUNNING=1, STOPPING=1),
                  status("HEALTHY", RUNNING=2)], id="roll"),
    pytest.param([status("HEALTHY", RUNNING=2),                  # a stale count from an earlier surge
                  status("UNHEALTHY", RUNNING=2),                # a new replica failing its health check
                  status("UPDATING", RUNNING=2),
                  status("HEALTHY", RUNNING=2)], id="stale-and-unhealthy"),
])
async def test_the_extra_replica_is_drained_only_when_every_replica_runs_the_new_weights(
        monkeypatch, config, statuses):
    control = Controller(monkeypatch, config, statuses)
    pending = Pending()
    await weights_roll.start(config, SOLO, REF, pending)
    settler = weights_roll.Settler(config, pending)
    for _ in statuses:
        await settler.step()
    assert control.statuses == [] and pending.rolls == {}  # it waited through every intermediate state
    surged, settled = control.deployed
    assert control.spec(settled, SOLO)["num_replicas"] == 1
    assert control.spec(settled, SOLO)["ray_actor_options"] == control.spec(surged, SOLO)["ray_actor_options"]


async def test_the_extra_start_is_spared_once_the_count_runs_the_new_weights(monkeypatch, config):
    # Serve rolls all count + 1 replicas; the last start would only be drained. Two old replicas, a third
    # new one, then a second new one running (Serve stops the last old one and starts a third new one).
    rolling = {f"model-{PAIR}": {"status": "UPDATING", "replicas": {"RUNNING": 3}}}
    control = Controller(monkeypatch, config, [rolling] * 3, fresh=[0, 1, 2])
    pending = Pending()
    await weights_roll.start(config, PAIR, REF, pending)
    settler = weights_roll.Settler(config, pending)
    for _ in range(2):
        await settler.step()
    assert len(control.deployed) == 1 and pending.rolls  # one new replica of two: the roll goes on
    await settler.step()
    surged, settled = control.deployed
    assert control.spec(settled, PAIR)["num_replicas"] == 2 and pending.rolls == {}


async def test_any_ingress_replica_finishes_a_roll_and_only_one_drains(monkeypatch, config):
    control = Controller(monkeypatch, config, [status("UPDATING", RUNNING=2), status("UPDATING", RUNNING=2),
                                               status("HEALTHY", RUNNING=2), status("HEALTHY", RUNNING=2)])
    pending = Pending()
    await weights_roll.start(config, SOLO, REF, pending)  # the replica that started it is gone: others settle
    others = [weights_roll.Settler(config, pending), weights_roll.Settler(config, pending)]
    for settler in others * 2:
        await settler.step()
    surged, settled = control.deployed  # one drain, not two
    assert control.spec(settled, SOLO)["num_replicas"] == 1 and pending.rolls == {}


async def test_settling_survives_a_controller_hiccup(monkeypatch, config):
    control = Controller(monkeypatch, config, [status("UPDATING", RUNNING=2), status("HEALTHY", RUNNING=2)])
    pending = Pending()
    await pending.add(SOLO, 1, time.time())
    calls = iter([ConnectionError("controller restarting")])
    real = serve_control.deployment_status

    def flaky(app):
        error = next(calls, None)
        if error:
            raise error
        return real(app)

    monkeypatch.setattr(serve_control, "deployment_status", flaky)
    run = asyncio.ensure_future(weights_roll.Settler(config, pending).run())
    try:
        deadline = time.monotonic() + 5
        while pending.rolls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        run.cancel()
    (settled,) = control.deployed
    assert control.spec(settled, SOLO)["num_replicas"] == 1


class Pending:
    """PendingRolls in memory."""

    def __init__(self):
        self.rolls = {}

    async def add(self, model, count, deployed_at):
        self.rolls[model] = PendingRoll(model, count, deployed_at, f"{count}@{deployed_at}")

    async def all(self):
        return list(self.rolls.values())

    async def take(self, roll):
        return self.rolls.get(roll.model) == roll and self.rolls.pop(roll.model) is not None


def test_an_autoscaled_model_rolls_without_changing_its_count(monkeypatch, config):
    raw = yaml.safe_load((ROOT / "tests/configs/integration.yaml").read_text())
    pair = next(m for m in raw["models"] if m["name"] == PAIR)
    pair["deployment"] = {"num_cpus": 0.5, "autoscaling": {"min_replicas": 2, "max_replicas": 3}}
    config = parse_config(raw)
    control = Controller(monkeypatch, config)
    assert weights_roll.roll(config, PAIR, REF) is None
    (rolled,) = control.deployed
    assert "num_replicas" not in control.spec(rolled, PAIR) and control.spec(rolled, PAIR)["autoscaling_config"]


class Weights:
    def __init__(self):
        self.active, self.follows, self.claimed = {}, {}, set()

    async def claim(self, model, hold_s):
        if model in self.claimed:
            return None
        self.claimed.add(model)
        return "token"

    async def release(self, model):
        self.claimed.discard(model)

    async def followed(self, model):
        return self.active.get(model), self.follows.get(model)

    async def set(self, model, ref, follows=None):
        self.active[model], self.follows[model] = ref, follows


class Api(Admin):
    """Enough of the ingress for PUT /v1/models/{model}/weights."""

    def __init__(self, config):
        super().__init__(config)
        self.models = {m.name: None for m in config.models}
        self.active_weights = Weights()
        self.pending_rolls = Pending()
        merged = Adapter("tutor", SOLO, REF.path, 1, 4, 0.0, {}, kind="merged")
        self.adapters = SimpleNamespace(resolve=lambda _spec: asyncio.sleep(0, merged))


async def test_activation_waits_for_a_roll_in_progress(monkeypatch, config):
    Controller(monkeypatch, config, [status("UPDATING", RUNNING=2)])
    api = Api(config)
    with pytest.raises(ConflictError, match="rolling or scaling"):
        await api.set_weights(SOLO, WeightsRequest(adapter="tutor"))
    assert api.active_weights.active == {} and api.active_weights.claimed == set()


@pytest.mark.parametrize("state", ["DEPLOY_FAILED", "UNHEALTHY"])
async def test_a_failed_roll_can_be_rolled_back(monkeypatch, config, state):
    control = Controller(monkeypatch, config, [status(state, RUNNING=1)])
    api = Api(config)
    api.active_weights.active[SOLO] = REF  # the version that broke the deployment
    answer = await api.set_weights(SOLO, WeightsRequest(adapter=None))
    assert answer["status"] == "rolling" and api.active_weights.active == {SOLO: None}
    assert len(control.deployed) == 1 and SOLO in api.pending_rolls.rolls


async def test_one_weights_change_at_a_time(monkeypatch, config):
    Controller(monkeypatch, config, [status("HEALTHY", RUNNING=1)])
    api = Api(config)
    await api.set_weights(SOLO, WeightsRequest(adapter="tutor"))
    # Right after a deploy the controller may still say HEALTHY: the claim, not the status, refuses.
    with pytest.raises(ConflictError, match="being applied"):
        await api.set_weights(SOLO, WeightsRequest(adapter=None))
    assert api.active_weights.active == {SOLO: REF}


async def test_a_refused_deploy_leaves_the_active_weights_as_they_were(monkeypatch, config):
    Controller(monkeypatch, config, [status("HEALTHY", RUNNING=1)])

    def refuse(_config):
        raise serve_control.DeployError("the controller refused it")

    monkeypatch.setattr(serve_control, "deploy", refuse)
    api = Api(config)
    with pytest.raises(ConflictError, match="cannot roll tiny-gptj: the controller refused it"):
        await api.set_weights(SOLO, WeightsRequest(adapter="tutor"))
    assert api.active_weights.active == {SOLO: None} and api.active_weights.claimed == set()


@pytest.mark.parametrize("spec, follows", [("tutor@canary", "canary"), ("tutor@v2", None),
                                           (f"tutor@{'2' * 12}", None)])
async def test_activation_records_the_version_and_the_alias_it_follows(monkeypatch, config, spec, follows):
    from deployments.state.adapter_releases import AdapterRegistry
    from tests.fakes import MemoryStore

    Controller(monkeypatch, config, [status("HEALTHY", RUNNING=1)])
    api = Api(config)
    api.adapters = AdapterRegistry(MemoryStore())
    for number, alias in ((1, "stable"), (2, "canary")):
        await api.adapters.register(Adapter("tutor", SOLO, f"/adapters/tutor/v{number}/merged", 0, 4, 0.0, {},
                                            kind="merged", digest=str(number) * 64), alias, None)
    answer = await api.set_weights(SOLO, WeightsRequest(adapter=spec))
    assert (answer["adapter"], answer["follows"]) == ("tutor@v2", follows)  # an alias is followed, a version pinned
    active = api.active_weights.active[SOLO]
    assert (active.version, active.digest, active.path) == (2, "2" * 64, "/adapters/tutor/v2/merged")
    assert api.active_weights.follows[SOLO] == follows
