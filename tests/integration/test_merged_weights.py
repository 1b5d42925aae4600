"""GPT-J adapters are served merged: activating one rolls the model's two replicas one at a time,
with no failed request, and every request after the roll is served by the merged weights. A model
activated by an alias follows it: promoting a new version rolls the model onto it."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from contracts.config import models_home
from finetune.config import TrainConfig
from finetune.embedded_models import prepare
from finetune.train import train
from tests.integration.helpers import write_dataset

pytestmark = pytest.mark.slow  # chaos: runs after the rest of the suite
MODEL = "tiny-gptj-pair"  # two replicas (tests/configs/integration.yaml), route "tutoring"
SOLO = "tiny-gptj"        # one replica, route "education"
PROMPT = {"industry": "tutoring", "product": "Algebra course 3", "temperature": 0, "max_tokens": 12,
          "postprocess": False, "cache": False}
# A roll starts count new engines one after another (the count + 1st is stopped as it starts): 139 s for
# the pair on a 2-core box (2026-11-27; 529 s on a slower day before the spared start). The deadline is a
# hang guard: a roll that never ends still fails.
ROLL_DEADLINE_S = 1500
PAUSE_S = 0.2  # between a client's requests: the load spans the roll, and the starting replicas still get CPU
ROWS = [(f"Algebra course {i}", "live tutors|weekly quizzes",
         f"Master algebra in course {i} with live tutors and weekly quizzes. Enrol today.") for i in range(12)]


def train_merged(folder, seed: int = 0):
    data = folder / "courses.csv"
    write_dataset(data, ROWS)
    base = prepare(models_home(), ("tiny-gptj",))["tiny-gptj"]
    train(TrainConfig(base_model=base, family="gptj", data=data, output=folder / "tutor", industry="education",
                      rank=4, epochs=2, batch_size=4, learning_rate=5e-2, max_length=160, merge=True, seed=seed),
          progress=False)
    return folder / "tutor"


@pytest.fixture(scope="module")
def merged_adapter(tmp_path_factory):
    return train_merged(tmp_path_factory.mktemp("merged"))


@pytest.fixture(scope="module")
def second_merged(tmp_path_factory):
    """Another version of the same adapter: other weights (another seed), so other copy."""
    return train_merged(tmp_path_factory.mktemp("merged-v2"), seed=1)


def rolled(admin, tag: str | None, model: str = MODEL, replicas: int = 2) -> bool:
    """The roll is over: the tag is active, and the count is back to the configured one."""
    state = admin.get(f"/v1/models/{model}/weights").json()
    return state["adapter"] == tag and state["deployment"].get("status") == "HEALTHY" \
        and state["deployment"]["replicas"] == {"RUNNING": replicas}


def surge_then_settle(admin, tag: str | None, model: str = MODEL, replicas: int = 2,
                      timeout_s: float = ROLL_DEADLINE_S) -> bool:
    """Wait for a roll: one replica more than configured seen (running or starting), then the
    configured count again with the tag active. False on timeout."""
    deadline, surged = time.monotonic() + timeout_s, False
    while time.monotonic() < deadline:
        # Serving or about to: a plain roll stops an old replica first and never has more than configured.
        states = admin.get(f"/v1/models/{model}/weights").json()["deployment"].get("replicas", {})
        surged |= states.get("RUNNING", 0) + states.get("STARTING", 0) > replicas
        if surged and rolled(admin, tag, model, replicas):
            return True
        time.sleep(0.5)
    return False


def test_activation_rolls_replicas_without_failed_requests(admin, client, merged_adapter):
    base = client.post("/v1/copy", json=PROMPT)
    assert base.status_code == 200 and base.json()["adapter"] is None

    r = admin.post("/v1/adapters", json={"name": "tutor", "base_model": MODEL, "path": str(merged_adapter)})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "merged" and r.json()["path"].endswith("/merged")
    tag = f"tutor@v{r.json()['version']}"
    # Merged weights are not applied per request: naming the adapter before activation says what to do.
    early = client.post("/v1/copy", json={**PROMPT, "adapter": "tutor"})
    assert early.status_code == 409 and f"PUT /v1/models/{MODEL}/weights" in early.json()["error"]["message"]

    served, failures, stop = Counter(), [], threading.Event()

    def load():
        while not stop.is_set():
            resp = client.post("/v1/copy", json={**PROMPT, "max_tokens": 6})
            if resp.status_code == 200:
                served[resp.json()["adapter"]] += 1
            else:
                failures.append((resp.status_code, resp.text[:200]))
            stop.wait(PAUSE_S)

    workers = [threading.Thread(target=load) for _ in range(2)]  # two clients: load, not a CPU race
    for w in workers:
        w.start()
    try:
        started = time.monotonic()
        r = admin.put(f"/v1/models/{MODEL}/weights", json={"adapter": "tutor"})
        assert r.status_code == 202, r.text
        assert r.json() == {"model": MODEL, "adapter": tag, "follows": "stable", "status": "rolling",
                            "watch": f"GET /v1/models/{MODEL}/weights"}
        assert surge_then_settle(admin, tag), admin.get(f"/v1/models/{MODEL}/weights").text  # 2 -> 3 -> 2
        roll_s = time.monotonic() - started
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join()
    print(f"\n[merged] rolled 2 replicas in {roll_s:.0f}s; served {dict(served)}; failures {len(failures)}")
    assert failures == []
    assert served[None] > 0 and served[tag] > 0  # load ran across the roll

    after = [client.post("/v1/copy", json=PROMPT).json() for _ in range(4)]
    assert {a["adapter"] for a in after} == {tag}  # both replicas serve the merged weights
    assert after[0]["raw_text"] != base.json()["raw_text"]  # and the copy changed
    named = client.post("/v1/copy", json={**PROMPT, "adapter": "tutor"})
    assert named.status_code == 200 and named.json()["adapter"] == tag


def test_weights_endpoint_refuses_what_it_cannot_do(admin, client, merged_adapter):
    cases = [
        ("tiny-qwen3", {"adapter": None}, 400, "applies LoRA adapters per request"),
        ("no-such-model", {"adapter": None}, 404, "no model"),
        (MODEL, {"adapter": "never-registered"}, 404, "not registered"),
        (MODEL, {}, 400, "adapter"),
    ]
    for model, body, status, says in cases:
        r = admin.put(f"/v1/models/{model}/weights", json=body)
        assert r.status_code == status and says in r.json()["error"]["message"], (model, r.text)
    r = client.put(f"/v1/models/{MODEL}/weights", json={"adapter": None})
    assert r.status_code == 403  # admin only
    # A merged adapter of the wrong shape is refused at registration.
    r = admin.post("/v1/adapters", json={"name": "wrong", "base_model": "smollm2-135m-instruct",
                                         "path": str(merged_adapter)})
    assert r.status_code == 400 and "do not fit model" in r.json()["error"]["message"]


def test_a_single_replica_model_rolls_with_no_downtime_and_follows_a_promote(admin, client, merged_adapter,
                                                                              second_merged):
    r = admin.post("/v1/adapters", json={"name": "solo", "base_model": SOLO, "path": str(merged_adapter)})
    assert r.status_code == 201, r.text
    tag = f"solo@v{r.json()['version']}"
    prompt = {**PROMPT, "industry": "education", "max_tokens": 6}
    served, failures, stop = Counter(), [], threading.Event()

    def load():  # one client: the model's queue (2 + 2) is not what is tested here
        while not stop.is_set():
            resp = client.post("/v1/copy", json=prompt)
            if resp.status_code == 200:
                served[resp.json()["adapter"]] += 1
            else:
                failures.append((resp.status_code, resp.text[:200]))
            stop.wait(PAUSE_S)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        started = time.monotonic()
        # Two admins at once: one roll, one 409 (one change of a model's weights at a time).
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: admin.put(f"/v1/models/{SOLO}/weights", json={"adapter": "solo"}),
                                    range(2)))
        assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
        assert "being applied" in next(r for r in answers if r.status_code == 409).json()["error"]["message"]
        surged = surge_then_settle(admin, tag, SOLO, replicas=1)
        roll_s = time.monotonic() - started
        assert surged and rolled(admin, tag, SOLO, replicas=1)  # a second replica carried the roll, then left
        first = client.post("/v1/copy", json=prompt).json()

        # A new version staged as canary rolls nothing; promoting it moves stable, which the model follows.
        r = admin.post("/v1/adapters", json={"name": "solo", "base_model": SOLO, "path": str(second_merged),
                                             "alias": "canary"})
        assert r.status_code == 201, r.text
        tag2 = f"solo@v{r.json()['version']}"
        assert admin.get(f"/v1/models/{SOLO}/weights").json()["adapter"] == tag
        started = time.monotonic()
        r = admin.post("/v1/adapters/solo/promote", json={"reason": "canary reads better"})
        assert r.status_code == 200, r.text
        followed = surge_then_settle(admin, tag2, SOLO, replicas=1)
        follow_s = time.monotonic() - started
        time.sleep(1)
    finally:
        stop.set()
        worker.join()
    print(f"\n[merged] rolled 1 replica (surge to 2) in {roll_s:.0f}s, then onto the promoted version in "
          f"{follow_s:.0f}s; served {dict(served)}; failures {len(failures)}")
    assert followed, admin.get(f"/v1/models/{SOLO}/weights").text
    assert failures == []
    assert served[None] > 0 and served[tag] > 0 and served[tag2] > 0  # load ran across both rolls
    state = admin.get(f"/v1/models/{SOLO}/weights").json()
    assert (state["adapter"], state["follows"]) == (tag2, "stable")
    after = client.post("/v1/copy", json=prompt).json()
    assert after["adapter"] == tag2 and after["raw_text"] != first["raw_text"]  # the replica runs the new weights
    named = client.post("/v1/copy", json={**prompt, "adapter": "solo@stable"})
    assert named.status_code == 200 and named.json()["adapter"] == tag2
    moves = [(e["action"], e["alias"], e["to"]) for e in admin.get("/v1/adapters/solo/history").json()["data"]]
    assert ("promote", "stable", int(tag2.rpartition("@v")[2])) in moves
