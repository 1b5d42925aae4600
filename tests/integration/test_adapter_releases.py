"""Adapter releases over HTTP on the real engine: content-addressed versions, aliases a request can name,
promote and roll back in one call each, the history of every move, and what a user key may see or do."""

from tests.integration.helpers import wait_for

PROMPT = {"industry": "finance", "product": "Travel mug 5", "temperature": 0, "max_tokens": 12,
          "postprocess": False}


def register(admin, path, **extra):
    return admin.post("/v1/adapters", json={"name": "rel", "base_model": "tiny-qwen3", "path": str(path), **extra})


def test_versions_aliases_promote_rollback_and_history(admin, client, trained):
    first, second = register(admin, trained["v1"]), register(admin, trained["v2"], alias="canary")
    assert (first.status_code, second.status_code) == (201, 201), second.text
    v1, v2 = first.json()["version"], second.json()["version"]
    assert len(first.json()["digest"]) == 64 and first.json()["digest"] != second.json()["digest"]

    def served(spec: str, **extra) -> dict:
        r = client.post("/v1/copy", json={**PROMPT, "adapter": spec, "cache": False, **extra})
        assert r.status_code == 200, (spec, r.text)
        return r.json()

    stable = served("rel")
    assert stable["adapter"] == f"rel@v{v1}"  # a bare name is its stable alias: staging v2 moved nothing
    for spec in ("rel@canary", f"rel@v{v2}", f"rel@{second.json()['digest'][:8]}"):
        assert served(spec)["adapter"] == f"rel@v{v2}", spec
    assert served("rel@canary")["raw_text"] != stable["raw_text"]  # two versions, two sets of weights

    # Every answer is evidence for its version (recorded off the response path, so polled).
    def evaluated():
        report = client.get("/v1/adapters/rel/evaluation").json()
        samples = {v["version"]: v["samples"] for v in report["versions"]}
        return report if samples.get(v1) == 1 and samples.get(v2) == 4 else None

    report = wait_for(evaluated, 30)
    assert report, client.get("/v1/adapters/rel/evaluation").text
    canary = next(v for v in report["versions"] if v["version"] == v2)
    assert canary["metrics"]["total_ms"]["n"] == 4 and canary["metrics"]["total_ms"]["mean"] > 0
    assert "sentiment" not in canary["metrics"]  # post-processing off: no score, not a score of 0
    assert "total_ms" in report["compare"]["canary_vs_stable"]

    # A cached answer of the old stable version is never served once stable moves.
    cached = {**PROMPT, "adapter": "rel"}
    client.post("/v1/copy", json=cached)
    assert client.post("/v1/copy", json=cached).headers["x-cache"] == "hit"
    promoted = admin.post("/v1/adapters/rel/promote", json={"reason": "canary reads better"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["from"] == v1 and promoted.json()["to"] == v2
    after = client.post("/v1/copy", json=cached)
    assert after.headers["x-cache"] == "miss" and after.json()["adapter"] == f"rel@v{v2}"

    back = admin.post("/v1/adapters/rel/rollback", json={"reason": "complaints"})
    assert back.status_code == 200 and back.json()["aliases"]["stable"] == v1, back.text
    assert served("rel")["adapter"] == f"rel@v{v1}"
    again = admin.post("/v1/adapters/rel/rollback")
    assert again.status_code == 409 and "no earlier version" in again.json()["error"]["message"]

    history = admin.get("/v1/adapters/rel/history").json()["data"]
    assert [(e["action"], e["alias"], e["from"], e["to"]) for e in history[:2]] == [
        ("rollback", "stable", v2, v1), ("promote", "stable", v1, v2)]
    assert history[0]["reason"] == "complaints" and history[0]["who"]
    admin_ids = {k["id"] for k in admin.get("/v1/keys").json()["data"] if k["role"] == "admin"}
    assert history[0]["who"] in admin_ids

    # Identical content is a no-op; a version an alias holds cannot be deleted; an alias moves by PUT.
    same = register(admin, trained["v2"])
    assert same.status_code == 200 and same.json()["unchanged"] and same.json()["version"] == v2
    held = admin.delete(f"/v1/adapters/rel/versions/v{v2}")
    assert held.status_code == 409 and "canary" in held.text
    moved = admin.put("/v1/adapters/rel/aliases/canary", json={"version": v1, "reason": "retire v2"})
    assert moved.status_code == 200 and moved.json()["aliases"] == {"stable": v1, "canary": v1}
    assert admin.delete(f"/v1/adapters/rel/versions/v{v2}").status_code == 200
    gone = client.post("/v1/copy", json={**PROMPT, "adapter": f"rel@v{v2}"})
    assert gone.status_code == 404 and f"v{v2}" in gone.json()["error"]["message"]

    # A user key serves and reads versions, but neither moves aliases nor reads who moved them.
    assert client.post("/v1/adapters/rel/promote").status_code == 403
    assert client.put("/v1/adapters/rel/aliases/canary", json={"version": v1}).status_code == 403
    assert client.get("/v1/adapters/rel/history").status_code == 403
    seen = client.get("/v1/adapters/rel").json()
    assert seen["aliases"] == {"stable": v1, "canary": v1} and "path" not in seen
    assert admin.delete("/v1/adapters/rel").status_code == 200
