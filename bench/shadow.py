"""What a shadow costs the answers it shadows: /v1/copy latency on a route without a shadow and with one, in
alternating rounds of one run, against a running copyserve (``make serve`` first; admin rights: auth off or
``--api-key``):

    python bench/shadow.py --stable adapters/release-loop-v1 --canary adapters/release-loop-v2   # ~6 minutes

(``python bench/release_loop.py`` leaves those two adapter folders.) One client sends sequential requests
(unique products, uncached); with the shadow on, each answer may start a shadow copy by the canary at batch
priority, which shares the engine with the next live request. Prints p50/p90 per arm, the ratio, and how many
shadow copies were written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
from stats import distribution

ROOT = Path(__file__).resolve().parent.parent


def latencies(client: httpx.Client, industry: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.post("/v1/copy", json={"industry": industry, "product": f"shadow bench {uuid.uuid4().hex[:8]}",
                                          "max_tokens": 32, "cache": False})
        r.raise_for_status()
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key")
    p.add_argument("--stable", type=Path, required=True, help="adapter folder served as stable")
    p.add_argument("--canary", type=Path, required=True, help="adapter folder that shadows it")
    p.add_argument("--base-model", default="smollm2-135m-instruct")
    p.add_argument("--industry", default="ecommerce")
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-round", type=int, default=12)
    p.add_argument("--out", type=Path, default=Path("/tmp/copyserve-shadow.json"))
    args = p.parse_args()
    name = "shadow-bench"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    arms: dict[str, list[float]] = {"no shadow": [], f"shadow {args.share:.0%}": []}
    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as client:
        for path, alias in ((args.stable, "stable"), (args.canary, "canary")):
            client.post("/v1/adapters", json={"name": name, "base_model": args.base_model,
                                              "path": str(path.resolve()), "alias": alias}).raise_for_status()
        route = {"model": args.base_model, "adapter": name}
        shadowed = {**route, "shadow": {"adapter": f"{name}@canary", "share": args.share}}
        try:
            latencies(client, args.industry, 3)  # warm-up: the adapter loaded into the engine
            for round_ in range(1, args.rounds + 1):
                for arm, body in zip(arms, (route, shadowed), strict=True):
                    client.put(f"/v1/routes/{args.industry}", json=body).raise_for_status()
                    print(f"round {round_}/{args.rounds}: {arm} ...", file=sys.stderr, flush=True)
                    arms[arm] += latencies(client, args.industry, args.per_round)
                    time.sleep(2)  # the last shadows finish before the next arm
            evaluation = client.get(f"/v1/adapters/{name}/evaluation").json()
        finally:
            client.delete(f"/v1/routes/{args.industry}")
            client.delete(f"/v1/adapters/{name}")
    shadows = sum(v["shadow_samples"] for v in evaluation["versions"])
    stats = {arm: distribution(values) for arm, values in arms.items()}
    base, with_shadow = (stats[arm]["p50"] for arm in arms)
    print("\n| /v1/copy (32 tokens, one client) | p50 | p90 | n |\n| --- | --- | --- | --- |")
    for arm, d in stats.items():
        print(f"| {arm} | {d['p50'] * 1000:.0f} ms | {d['p90'] * 1000:.0f} ms | {d['n']} |")
    print(f"\nshadowed / plain p50: {with_shadow / base:.2f}x; shadow copies written: {shadows}")
    args.out.write_text(json.dumps({"arms": stats, "shadow_copies": shadows, "ratio_p50": with_shadow / base},
                                   indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
