"""Latency and throughput of a running copyserve (``make serve`` first). Prints comparable figures.

    python bench/latency.py --requests 16 --concurrency 1 8 --max-tokens 64

For each concurrency level: streamed /v1/copy requests with a fixed completion budget; reports
time to first token, end-to-end latency (p50/p95) and aggregate completion tokens per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import httpx
from stats import percentile, show

PRODUCTS = ["insulated water bottle", "wireless earbuds", "standing desk", "running shoes", "espresso machine",
            "backpack with laptop sleeve", "smart thermostat", "yoga mat"]



async def one(client: httpx.AsyncClient, i: int, max_tokens: int) -> tuple[float, float, int]:
    # finance has no quality gate in configs/local.yaml: one generation per request. A seeded request
    # is cacheable, and the levels repeat seeds: the engine is measured, not the response cache.
    body = {"industry": "finance", "product": PRODUCTS[i % len(PRODUCTS)], "keywords": ["durable"],
            "max_tokens": max_tokens, "temperature": 0.7, "seed": i, "stream": True, "cache": False}
    started = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/copy", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "delta" and first is None:
                first = time.perf_counter() - started
            elif event["type"] == "final":
                tokens = event["usage"]["completion_tokens"]
            elif event["type"] == "error":
                raise RuntimeError(event["error"]["message"])
    if first is None:
        raise RuntimeError(f"request {i}: the stream ended without a token")
    return first, time.perf_counter() - started, tokens


async def level(url: str, requests: int, concurrency: int, max_tokens: int) -> dict:
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def guarded(i):
            nonlocal done
            async with sem:
                result = await one(client, i, max_tokens)
            done += 1
            print(f"\r  concurrency {concurrency}: {done}/{requests} requests", end="", file=sys.stderr, flush=True)
            return result

        await one(client, 0, 4)  # warm-up
        started = time.perf_counter()
        results = await asyncio.gather(*(guarded(i) for i in range(requests)))
        wall = time.perf_counter() - started
    print(file=sys.stderr)
    ttft, latency, tokens = zip(*results, strict=True)
    return {"concurrency": concurrency, "requests": requests, "ttft_p50_ms": percentile(list(ttft), 0.5) * 1000,
            "latency_p50_s": percentile(list(latency), 0.5), "latency_p95_s": percentile(list(latency), 0.95),
            "tokens": sum(tokens), "tok_per_s": sum(tokens) / wall,
            "tok_per_s_per_stream": statistics.median(t / lat for t, lat in zip(tokens, latency, strict=True))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    rows = [asyncio.run(level(args.url, args.requests, c, args.max_tokens)) for c in args.concurrency]
    print(f"{'conc':>4} {'reqs':>4} {'ttft p50':>9} {'lat p50':>8} {'lat p95':>8} {'tok/s':>7} {'tok/s/stream':>12}")
    for r in rows:
        print(f"{r['concurrency']:>4} {r['requests']:>4} {r['ttft_p50_ms']:>7.0f}ms {r['latency_p50_s']:>7.2f}s "
              f"{show(r['latency_p95_s'], '.2f', 's'):>8} {r['tok_per_s']:>7.1f} {r['tok_per_s_per_stream']:>12.1f}")


if __name__ == "__main__":
    main()
