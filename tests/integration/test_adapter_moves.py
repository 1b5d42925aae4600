"""Alias moves on the real engine: under steady load no request fails while `stable` flips between two versions,
and the next request after a move is served by the new version; a new version under an old name never reuses
the old version's prefix cache (the way vLLM issue 42125 reproduces it: same name, same prompt, new weights)."""

import time

from tests.integration.helpers import SteadyLoad

PROMPT = {"industry": "finance", "product": "Ceramic teapot", "temperature": 0, "max_tokens": 12,
          "postprocess": False, "cache": False}


def register(admin, name: str, path, alias: str | None = "stable") -> int:
    r = admin.post("/v1/adapters", json={"name": name, "base_model": "tiny-qwen3", "path": str(path), "alias": alias})
    assert r.status_code == 201, r.text
    return r.json()["version"]


def test_alias_moves_under_load_fail_nothing_and_apply_from_the_next_request(admin, client, trained):
    v1, v2 = register(admin, "mv", trained["v1"]), register(admin, "mv", trained["v2"], alias=None)
    body = {**PROMPT, "adapter": "mv", "max_tokens": 4}
    lag = []
    with SteadyLoad(client, body, clients=2, pause_s=0.05) as load:
        for target in (v2, v1) * 4:
            moved = admin.put("/v1/adapters/mv/aliases/stable", json={"version": target, "reason": "flip"})
            assert moved.status_code == 200, moved.text
            since = time.monotonic()
            served = client.post("/v1/copy", json=body).json()["adapter"]
            lag.append(time.monotonic() - since)
            assert served == f"mv@v{target}", (served, target)  # the move is read by the very next request
            assert load.grows_by(2, 60), load.outcomes
    print(f"\n[alias moves] 8 moves under load: {load.total} requests, failures {load.failures[:2]}, "
          f"next request after a move answered in {max(lag):.2f}s at most")
    assert load.total >= 16 and load.failed("whole") + load.failed("stream") == 0, load.failures[:3]
    assert {a["answer"]["adapter"] for a in load.answers} <= {f"mv@v{v1}", f"mv@v{v2}"}
    assert admin.delete("/v1/adapters/mv").status_code == 200


def test_a_new_version_under_the_same_name_never_reads_the_old_versions_prefix_cache(admin, client, trained):
    ask = lambda adapter: client.post("/v1/copy", json={**PROMPT, "adapter": adapter}).json()["raw_text"]  # noqa: E731
    register(admin, "px", trained["v1"])
    old = ask("px")  # v1's KV blocks for this prompt are now in the engine's prefix cache
    register(admin, "px", trained["v2"])  # stable moves: same name, same prompt, new weights
    new = ask("px")
    register(admin, "px-fresh", trained["v2"])  # v2's content under a name the engine has never seen
    fresh = ask("px-fresh")
    assert new == fresh != old, (old, new, fresh)
    for name in ("px", "px-fresh"):
        assert admin.delete(f"/v1/adapters/{name}").status_code == 200
