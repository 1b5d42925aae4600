"""Response-cache latency on a running copyserve (``make serve`` first; pass --api-key if auth is on).

    python bench/cache.py --calls 100

Misses: distinct products at temperature 0 (generated, then stored). Hits: the same requests
again. Also reports what Redis itself added to a miss (lookup + store), from the Server-Timing
header the ingress sends.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid

import httpx
from stats import percentile, show


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--api-key")
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    run = uuid.uuid4().hex[:6]
    bodies = [{"industry": "finance", "product": f"savings account {run}-{i}", "temperature": 0,
               "max_tokens": args.max_tokens} for i in range(args.calls)]
    times: dict[str, list[float]] = {"miss": [], "hit": [], "redis on miss": []}
    with httpx.Client(base_url=args.url, timeout=300, headers=headers) as client:
        for phase in ("miss", "hit"):
            for i, body in enumerate(bodies):
                started = time.perf_counter()
                r = client.post("/v1/copy", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                r.raise_for_status()
                assert r.headers["x-cache"] == phase, (phase, r.headers["x-cache"])
                times[phase].append(elapsed)
                if phase == "miss":
                    m = re.search(r"cache;dur=([\d.]+)", r.headers.get("server-timing", ""))
                    times["redis on miss"].append(float(m.group(1)) if m else 0.0)
                print(f"\r{phase}: {i + 1}/{args.calls}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
    print(f"{'':<14} {'p50':>9} {'p99':>9}   ({args.calls} calls each, {args.max_tokens}-token answers)")
    for name, values in times.items():
        p50, tail = show(percentile(values, 0.5), '.2f', 'ms'), show(percentile(values, 0.99), '.2f', 'ms')
        print(f"{name:<14} {p50:>9} {tail:>9}")


if __name__ == "__main__":
    main()
