"""LoRA adapters end to end: train with finetune, register over HTTP, serve per request, swap a
new version under load, delete, and refuse bad adapters with a 4xx that says why."""

import concurrent.futures as futures
import json
import shutil
import time

import pytest

PROMPT = {"industry": "finance", "product": "Travel mug 3", "temperature": 0, "max_tokens": 12,
          "postprocess": False}


def test_register_use_swap_and_delete(admin, client, trained):
    base = client.post("/v1/copy", json=PROMPT, headers={"Cache-Control": "no-cache"}).json()
    started = time.perf_counter()
    r = admin.post("/v1/adapters", json={"name": "mugs", "base_model": "tiny-qwen3", "path": str(trained["v1"])})
    assert r.status_code == 201, r.text
    first_version = r.json()["version"]
    v1 = client.post("/v1/copy", json={**PROMPT, "adapter": "mugs"}).json()
    print(f"\n[adapters] registration to first use: {time.perf_counter() - started:.2f}s")
    assert v1["adapter"] == f"mugs@v{first_version}" and v1["model"] == "tiny-qwen3"
    assert v1["text"] != base["text"]  # the adapter changes the copy
    listed = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert "tiny-qwen3:mugs" in listed

    # Swap in a new version while requests run: none fails, and requests after the swap use it.
    def ask(i):
        return client.post("/v1/copy", json={**PROMPT, "adapter": "mugs", "seed": i, "temperature": 0.8,
                                             "cache": False})

    with futures.ThreadPoolExecutor(4) as pool:
        running = [pool.submit(ask, i) for i in range(8)]
        r = admin.post("/v1/adapters", json={"name": "mugs", "base_model": "tiny-qwen3", "path": str(trained["v2"])})
        assert r.status_code == 201 and r.json()["version"] == first_version + 1
        results = [f.result() for f in running]
    assert all(x.status_code == 200 for x in results), [x.text for x in results if x.status_code != 200]
    after = client.post("/v1/copy", json={**PROMPT, "adapter": "mugs"}).json()
    assert after["adapter"] == f"mugs@v{first_version + 1}"
    assert after["text"] != v1["text"]  # new version, new weights (and no stale cache entry)

    # OpenAI endpoints name adapters as "<route or model>:<adapter>".
    chat = client.post("/v1/chat/completions", json={"model": "finance:mugs", "max_tokens": 4,
                                                     "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200

    assert admin.delete("/v1/adapters/mugs").json()["deleted"] is True
    gone = client.post("/v1/copy", json={**PROMPT, "adapter": "mugs"})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "adapter"
    assert client.post("/v1/copy", json=PROMPT).status_code == 200  # the base still answers


def make_bad(trained, tmp_path, case):
    bad = tmp_path / case
    shutil.copytree(trained["v1"], bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    if case == "no-config":
        (bad / "adapter_config.json").unlink()
    elif case == "wrong-base":
        config["base_model_name_or_path"] = "/models/some-other-model"
    elif case == "rank-too-high":
        config["r"] = 64
    elif case == "rank-not-a-number":
        config["r"] = "sixteen"
    elif case == "manifest-not-json":
        (bad / "copyserve-adapter.json").write_text("{not json")
    elif case == "corrupt-weights":
        (bad / "adapter_model.safetensors").write_bytes(b"not safetensors at all")
    if case != "no-config":
        (bad / "adapter_config.json").write_text(json.dumps(config))
    return bad


@pytest.mark.parametrize("case, base_model, status, says", [
    ("no-config", "tiny-qwen3", 400, "adapter_config.json"),
    ("wrong-base", "tiny-qwen3", 400, "trained on /models/some-other-model"),
    ("rank-too-high", "tiny-qwen3", 400, "rank 64 is outside 1..8"),
    ("rank-not-a-number", "tiny-qwen3", 400, "must be an integer"),
    ("manifest-not-json", "tiny-qwen3", 400, "copyserve-adapter.json cannot be read"),
    ("corrupt-weights", "tiny-qwen3", 400, "cannot be read"),
    ("ok", "tiny-gptj", 400, "holds no merged weights"),
    ("ok", "no-such-model", 404, "no model"),
])
def test_bad_adapters_are_refused(admin, trained, tmp_path, case, base_model, status, says):
    path = make_bad(trained, tmp_path, case)
    r = admin.post("/v1/adapters", json={"name": f"bad-{case}", "base_model": base_model, "path": str(path)})
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]
    assert admin.get(f"/v1/adapters/bad-{case}").status_code == 404  # nothing was stored


def test_missing_folder_and_user_key(admin, client, trained):
    missing = trained["v1"].parent / "never-trained"
    r = admin.post("/v1/adapters", json={"name": "x", "base_model": "tiny-qwen3", "path": str(missing)})
    assert r.status_code == 400 and "not a folder" in r.json()["error"]["message"]
    r = client.post("/v1/adapters", json={"name": "x", "base_model": "tiny-qwen3", "path": str(trained["v1"])})
    assert r.status_code == 403


def test_registration_reads_only_the_adapter_roots_and_says_nothing_of_other_paths(admin, trained):
    """A path outside server.adapter_roots gets the same answer whether it exists or not."""
    answers = set()
    for path in ("/etc", "/nope", f"{trained['v1']}/../../../../etc", "relative/folder"):
        r = admin.post("/v1/adapters", json={"name": "probe", "base_model": "tiny-qwen3", "path": path})
        assert r.status_code == 400 and r.json()["error"]["param"] == "path", r.text
        answers.add(r.json()["error"]["message"].split(";")[0].split(" (request id")[0])
    assert len(answers) == 2  # "must be absolute", and one answer for every path outside the roots
    assert admin.get("/v1/adapters/probe").status_code == 404


def test_user_keys_see_no_paths_and_versions_get_their_own_engine_ids(admin, client, trained):
    first, second = (admin.post("/v1/adapters", json={"name": "seen", "base_model": "tiny-qwen3",
                                                     "path": str(trained[v])}) for v in ("v1", "v2"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["lora_id"] != second.json()["lora_id"]  # a counter: two versions never share an id
    assert first.json()["digest"] != second.json()["digest"]
    # The same content again (v1, now under stable's v2) is a no-op that says so: no third version, no new id.
    again = admin.post("/v1/adapters", json={"name": "seen", "base_model": "tiny-qwen3", "path": str(trained["v1"])})
    assert again.status_code == 200 and again.json()["unchanged"] is True
    assert (again.json()["version"], again.json()["lora_id"]) == (first.json()["version"], first.json()["lora_id"])
    as_admin = admin.get("/v1/adapters/seen").json()
    as_user = client.get("/v1/adapters/seen").json()
    assert as_admin["path"] == str(trained["v2"].resolve()) and "manifest" in as_admin
    assert as_admin["aliases"] == {"stable": second.json()["version"]} and len(as_admin["versions"]) == 2
    assert {"path", "manifest", "lora_id"}.isdisjoint(as_user) and as_user["version"] == as_admin["version"]
    assert all({"path", "lora_id"}.isdisjoint(v) for v in as_user["versions"])
    listed = next(a for a in client.get("/v1/adapters").json()["data"] if a["name"] == "seen")
    assert "path" not in listed


def test_an_adapter_a_live_route_serves_cannot_be_deleted(admin, client, trained):
    assert admin.post("/v1/adapters", json={"name": "routed", "base_model": "tiny-qwen3",
                                            "path": str(trained["v1"])}).status_code == 201
    assert admin.put("/v1/routes/finance", json={"model": "tiny-qwen3", "adapter": "routed"}).status_code == 200
    try:
        r = admin.delete("/v1/adapters/routed")
        assert r.status_code == 409 and "route finance" in r.json()["error"]["message"]
        assert client.post("/v1/copy", json={**PROMPT, "max_tokens": 2, "cache": False}).status_code == 200
    finally:
        admin.delete("/v1/routes/finance")
    assert admin.delete("/v1/adapters/routed").json()["deleted"] is True


def test_adapter_broken_after_registration_fails_only_its_requests(admin, client, trained, tmp_path):
    path = tmp_path / "fragile"
    shutil.copytree(trained["v1"], path)
    assert admin.post("/v1/adapters", json={"name": "fragile", "base_model": "tiny-qwen3",
                                            "path": str(path)}).status_code == 201
    (path / "adapter_model.safetensors").write_bytes(b"broken later")
    r = client.post("/v1/copy", json={**PROMPT, "adapter": "fragile", "cache": False})
    assert r.status_code == 400 and "could not be loaded" in r.json()["error"]["message"]
    assert client.post("/v1/copy", json={**PROMPT, "cache": False}).status_code == 200
    health = client.get("/healthz").json()
    assert health["models"]["tiny-qwen3"]["status"] == "ok"


def test_live_route_ab_split_follows_weights(admin, client, trained):
    assert admin.post("/v1/adapters", json={"name": "ab", "base_model": "tiny-qwen3",
                                            "path": str(trained["v1"])}).status_code == 201
    split = {"variants": [{"name": "A", "model": "tiny-qwen3", "weight": 1},
                          {"name": "B", "model": "tiny-qwen3", "adapter": "ab", "weight": 3}]}
    assert client.put("/v1/routes/finance", json=split).status_code == 403  # admin only
    assert admin.put("/v1/routes/finance", json=split).status_code == 200
    routes = {r["industry"]: r for r in client.get("/v1/routes").json()["data"]}
    assert routes["finance"]["source"] == "live" and len(routes["finance"]["variants"]) == 2
    served = [client.post("/v1/copy", json={**PROMPT, "max_tokens": 1, "cache": False}).json() for _ in range(40)]
    b = [s for s in served if s["variant"] == "B"]
    assert 22 <= len(b) <= 38, len(b)  # expected 30 of 40 (binomial sd 2.7)
    assert all(s["adapter"].startswith("ab@v") for s in b)
    assert all(s["adapter"] is None for s in served if s["variant"] == "A")
    assert admin.delete("/v1/routes/finance").json()["reset"] is True
    assert client.post("/v1/copy", json={**PROMPT, "max_tokens": 1}).json()["variant"] is None


@pytest.mark.parametrize("industry, body, status, says", [
    ("no-such-industry", {"model": "tiny-qwen3"}, 404, "no route"),
    ("finance", {"model": "no-such-model"}, 400, "no model"),
    ("finance", {"model": "tiny-qwen3", "adapter": "not-registered"}, 404, "not registered"),
    ("finance", {"model": "tiny-qwen3", "variants": [{"name": "x", "model": "tiny-qwen3"}]}, 400, "either"),
    ("finance", {"variants": [{"name": "x", "model": "tiny-qwen3", "weight": 0}]}, 400, "weight"),
])
def test_bad_route_updates_are_refused(admin, client, industry, body, status, says):
    r = admin.put(f"/v1/routes/{industry}", json=body)
    assert r.status_code == status and says in r.json()["error"]["message"], r.text
    routes = {r["industry"]: r for r in client.get("/v1/routes").json()["data"]}
    assert routes["finance"]["source"] == "config"  # nothing stored
