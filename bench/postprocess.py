"""What post-processing adds to a /v1/copy call on a running copyserve (``make serve`` first).

    python bench/postprocess.py --calls 60

Sends short, sequential requests and reads the response timings: post-processing as the ingress
waited for it (both Serve hops included), the time inside Polish and inside Sentiment, and
end-to-end latency with post-processing on and off. Prints p50/p95 of each.
"""

from __future__ import annotations

import argparse
import sys

import httpx
from stats import percentile, show

PRODUCTS = ["insulated water bottle", "wireless earbuds", "standing desk", "running shoes", "便携咖啡机", "蓝牙音箱"]



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--calls", type=int, default=60)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--industry", default="finance", help="a route without a quality gate keeps attempts at 1")
    args = p.parse_args()
    rows: dict[str, list[float]] = {"postprocess_ms": [], "polish_ms": [], "sentiment_ms": [], "total_ms (on)": [],
                                    "total_ms (off)": []}
    with httpx.Client(base_url=args.url, timeout=300) as client:
        warm_up = {"industry": args.industry, "product": PRODUCTS[0], "max_tokens": 4, "cache": False}
        client.post("/v1/copy", json=warm_up).raise_for_status()
        for i in range(args.calls):
            for postprocess in (True, False):
                # Seeded for comparable answers, and never from the response cache: a rerun within the
                # cache's TTL would otherwise measure cache hits.
                body = {"industry": args.industry, "product": PRODUCTS[i % len(PRODUCTS)], "seed": i,
                        "max_tokens": args.max_tokens, "postprocess": postprocess, "cache": False}
                r = client.post("/v1/copy", json=body)
                r.raise_for_status()
                t = r.json()["timings"]
                if postprocess:
                    rows["postprocess_ms"].append(t["postprocess_ms"])
                    rows["polish_ms"].append(t["polish_ms"])
                    rows["sentiment_ms"].append(t["sentiment_ms"])
                rows[f"total_ms ({'on' if postprocess else 'off'})"].append(t["total_ms"])
            print(f"\r{i + 1}/{args.calls} calls", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"{'step':<16} {'p50':>9} {'p95':>9}   ({args.calls} calls, {args.max_tokens}-token answers)")
    for name, values in rows.items():
        p50, tail = show(percentile(values, 0.5), '.1f', 'ms'), show(percentile(values, 0.95), '.1f', 'ms')
        print(f"{name:<16} {p50:>9} {tail:>9}")


if __name__ == "__main__":
    main()
