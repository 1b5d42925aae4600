"""Shadow traffic and automatic releases over HTTP on the real engine: a route's shadow share is written again by
the canary after each answer (never changing the answer), scored against it, and counted within binomial
bounds; a release policy promotes a canary that holds it and rolls back, at once, one that fails to load."""

import json
import shutil
import time

from tests.integration.helpers import scrape, total, wait_for

NAME = "shd"
ROUTE = {"model": "tiny-qwen3", "adapter": NAME}
SHARE, SHADOWED_REQUESTS = 0.5, 30
OUTCOMES = ("win", "loss", "tie", "error", "busy", "overloaded", "same", "unservable")


def ask(client, i: int) -> dict:
    r = client.post("/v1/copy", json={"industry": "finance", "product": f"Shadowed desk lamp {i}", "temperature": 0,
                                      "max_tokens": 12, "cache": False})
    assert r.status_code == 200, r.text
    return r.json()


def versions(client) -> dict[int, dict]:
    return {v["version"]: v for v in client.get(f"/v1/adapters/{NAME}/evaluation").json()["versions"]}


def shadow_outcomes(app_config) -> dict[str, float]:
    metrics = scrape(app_config)
    return {o: total(metrics, "ray_copyserve_shadow_copies", adapter=NAME, outcome=o) for o in OUTCOMES}


def settled(read, quiet_polls: int = 3, timeout_s: float = 60):
    """``read()`` once it has returned the same value ``quiet_polls`` times in a row (a second apart)."""
    last, same, deadline = None, 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = read()
        same = same + 1 if now == last else 0
        if same >= quiet_polls:
            return now
        last = now
        time.sleep(1)
    raise AssertionError(f"still changing after {timeout_s}s: {last}")


def test_shadow_then_auto_promote_then_auto_rollback_of_a_version_that_fails_to_load(
        admin, client, trained, tmp_path, app_config):
    v1 = admin.post("/v1/adapters", json={"name": NAME, "base_model": "tiny-qwen3", "path": str(trained["v1"])})
    v2 = admin.post("/v1/adapters", json={"name": NAME, "base_model": "tiny-qwen3", "path": str(trained["v2"]),
                                          "alias": "canary"})
    assert (v1.status_code, v2.status_code) == (201, 201), v2.text
    v1, v2 = v1.json()["version"], v2.json()["version"]
    assert admin.put("/v1/routes/finance", json=ROUTE).status_code == 200
    try:
        plain = [ask(client, i) for i in range(6)]
        shadow = {"adapter": f"{NAME}@canary", "share": SHARE}
        put = admin.put("/v1/routes/finance", json={**ROUTE, "shadow": shadow})
        assert put.status_code == 200, put.text
        listed = {r["industry"]: r for r in client.get("/v1/routes").json()["data"]}["finance"]
        assert listed["shadow"] == shadow, listed

        # The answer is the one the route gives without a shadow, from the stable version, word for word.
        answers = [ask(client, i) for i in range(SHADOWED_REQUESTS)]
        for before, after in zip(plain, answers, strict=False):
            assert after["adapter"] == before["adapter"] == f"{NAME}@v{v1}"
            assert (after["raw_text"], after["text"]) == (before["raw_text"], before["text"])

        # Each answer drew the share once: outcomes (metric) count the draws that fell in it; the scored ones
        # are the canary's shadow samples, each paired with the stable answer it shadowed.
        canary = settled(lambda: versions(client).get(v2, {}).get("shadow_samples", 0))

        def exported():  # the metric reaches Prometheus some seconds after the write
            outcomes = shadow_outcomes(app_config)
            return outcomes if outcomes["win"] + outcomes["loss"] + outcomes["tie"] == canary else None

        counted = wait_for(exported, 60, every_s=2)
        assert counted, (shadow_outcomes(app_config), canary)
        drawn = sum(counted.values())
        print(f"\n[shadow] {SHADOWED_REQUESTS} answers, share {SHARE}: {drawn:.0f} drawn, outcomes {counted}")
        assert 6 <= drawn <= 24, counted  # Binomial(30, 0.5): outside [6, 24] with p < 0.002
        assert canary >= 1 and counted["error"] == 0, counted
        report = client.get(f"/v1/adapters/{NAME}/evaluation").json()
        paired = next(v for v in report["versions"] if v["version"] == v2)["pairs"][f"{NAME}@v{v1}"]
        assert (paired["wins"], paired["losses"], paired["ties"]) == (counted["win"], counted["loss"],
                                                                     counted["tie"]), (paired, counted)
        assert report["compare"]["canary_vs_stable"]["win_rate"] == paired
        if paired["wins"] + paired["losses"]:
            assert 0 <= paired["rate"] <= 1 and paired["ci95"][0] <= paired["rate"] <= paired["ci95"][1], paired

        # A policy the canary holds promotes it at once (setting a policy judges), "auto" in the history.
        policy = {"auto_promote": True, "auto_rollback": False, "min_samples": int(canary), "rollback_min_samples": 1}
        assert admin.put(f"/v1/adapters/{NAME}/policy", json=policy).status_code == 200
        aliases = wait_for(lambda: (a if (a := admin.get(f"/v1/adapters/{NAME}").json()["aliases"])["stable"] == v2
                                    else None), 10, every_s=0.2)
        assert aliases, admin.get(f"/v1/adapters/{NAME}").json()
        promoted = admin.get(f"/v1/adapters/{NAME}/history").json()["data"][0]
        assert (promoted["who"], promoted["action"], promoted["to"]) == ("auto", "promote", v2), promoted
        assert "auto promote" in promoted["reason"], promoted

        # A canary that cannot load fails its requests; the autopilot moves canary back onto stable's version.
        broken = tmp_path / "broken"
        shutil.copytree(trained["v1"], broken)
        config = json.loads((broken / "adapter_config.json").read_text())
        (broken / "adapter_config.json").write_text(json.dumps({**config, "revision": "broken"}))  # new content
        v3 = admin.post("/v1/adapters", json={"name": NAME, "base_model": "tiny-qwen3", "path": str(broken),
                                              "alias": "canary"})
        assert v3.status_code == 201 and v3.json()["version"] not in (v1, v2), v3.text
        v3 = v3.json()["version"]
        (broken / "adapter_model.safetensors").write_bytes(b"broken after registration")
        policy = {"auto_rollback": True, "max_error_rate": 0.2, "rollback_min_samples": 3, "min_samples": 1000}
        assert admin.put(f"/v1/adapters/{NAME}/policy", json=policy).status_code == 200
        canary_body = {"industry": "finance", "product": "Lamp", "adapter": f"{NAME}@canary", "max_tokens": 4,
                       "cache": False}
        for _ in range(3):
            r = client.post("/v1/copy", json=canary_body)
            assert r.status_code == 400 and "could not be loaded" in r.json()["error"]["message"], r.text
        moved = wait_for(lambda: (a if (a := admin.get(f"/v1/adapters/{NAME}").json()["aliases"])["canary"] == v2
                                  else None), 10, every_s=0.2)
        assert moved, admin.get(f"/v1/adapters/{NAME}").json()
        rolled = admin.get(f"/v1/adapters/{NAME}/history").json()["data"][0]
        assert (rolled["who"], rolled["action"], rolled["from"], rolled["to"]) == ("auto", "rollback", v3, v2), rolled
        assert "error rate 100.0% (3 of 3)" in rolled["reason"], rolled
        after = client.post("/v1/copy", json=canary_body)
        assert after.status_code == 200 and after.json()["adapter"] == f"{NAME}@v{v2}", after.text
    finally:
        admin.delete("/v1/routes/finance")
        admin.delete(f"/v1/adapters/{NAME}/policy")
