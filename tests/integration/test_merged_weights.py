"""GPT-J adapters are served merged: activating one rolls the model's two replicas one at a time,
with no failed request, and every request after the roll is served by the merged weights."""

import threading
import time
from collections import Counter

import pytest

from finetune.config import TrainConfig
from finetune.embedded_models import prepare
from finetune.train import train
from serve_app.config import models_home
from tests.integration.helpers import write_dataset

MODEL = "tiny-gptj-pair"  # two replicas (tests/configs/integration.yaml), route "tutoring"
PROMPT = {"industry": "tutoring", "product": "Algebra course 3", "temperature": 0, "max_tokens": 12,
          "postprocess": False, "cache": False}
ROWS = [(f"Algebra course {i}", "live tutors|weekly quizzes",
         f"Master algebra in course {i} with live tutors and weekly quizzes. Enrol today.") for i in range(12)]


@pytest.fixture(scope="module")
def merged_adapter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("merged")
    data = folder / "courses.csv"
    write_dataset(data, ROWS)
    base = prepare(models_home(), ("tiny-gptj",))["tiny-gptj"]
    train(TrainConfig(base_model=base, family="gptj", data=data, output=folder / "tutor", industry="education",
                      rank=4, epochs=2, batch_size=4, learning_rate=5e-2, max_length=160, merge=True),
          progress=False)
    return folder / "tutor"


def rolled(admin, tag: str) -> bool:
    state = admin.get(f"/v1/models/{MODEL}/weights").json()
    return state["adapter"] == tag and state["deployment"].get("status", "").endswith("HEALTHY") \
        and state["deployment"]["replicas"] == {"RUNNING": 2}


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

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        started = time.monotonic()
        r = admin.put(f"/v1/models/{MODEL}/weights", json={"adapter": "tutor"})
        assert r.status_code == 202, r.text
        assert r.json() == {"model": MODEL, "adapter": tag, "status": "rolling",
                            "watch": f"GET /v1/models/{MODEL}/weights"}
        time.sleep(2)  # let the controller start the roll before polling for its end
        deadline = time.monotonic() + 300
        while not rolled(admin, tag) and time.monotonic() < deadline:
            time.sleep(1)
        roll_s = time.monotonic() - started
        assert rolled(admin, tag), admin.get(f"/v1/models/{MODEL}/weights").text
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
