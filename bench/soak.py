"""Soak a running copyserve (``make serve`` first) with mixed traffic and watch for errors and leaks.

    python bench/soak.py --requests 10000 --concurrency 8 [--key cs-...]

The mix, by weight: cache hits of /v1/copy, short generations (copy and chat), streams cut off after
their first event, bad inputs (unknown industry, bad JSON, wrong types, unknown paths), /v1/models and
/healthz. Prints requests and errors by status, each Ray worker's RSS at start, after warm-up, half-way and
at the end, the growth after warm-up and in the second half alone (a leak grows in both halves alike; a
cache filling up does not). Goal (issue 13): 0 × 5xx, RSS growth < 5% after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter

import httpx
import psutil

INDUSTRIES = ["ecommerce", "finance", "education"]


def ray_workers() -> dict[int, tuple[str, int]]:
    """pid → (name, RSS bytes) of the service's processes (Serve replicas and their engines)."""
    found = {}
    for p in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["memory_info"] and ("ray::ServeReplica" in cmd or "ray::ProxyActor" in cmd or "VLLM" in cmd):
            name = cmd.split(":")[-1] if "ServeReplica" in cmd else cmd.split()[0]
            found[p.info["pid"]] = (name.strip()[:48], p.info["memory_info"].rss)
    return found


async def one(client: httpx.AsyncClient, rng: random.Random) -> int:
    kind = rng.choices(["hit", "generate", "chat", "cut", "bad", "cheap"], weights=[40, 6, 4, 5, 30, 15])[0]
    if kind == "hit":  # a handful of products: after the first request of each, cache hits
        body = {"industry": rng.choice(INDUSTRIES), "product": f"soak product {rng.randrange(5)}",
                "temperature": 0, "max_tokens": 8}
        return (await client.post("/v1/copy", json=body)).status_code
    if kind == "generate":
        body = {"industry": rng.choice(INDUSTRIES), "product": f"soak {rng.random()}", "max_tokens": 8,
                "cache": False, "postprocess": rng.random() < 0.5}
        return (await client.post("/v1/copy", json=body)).status_code
    if kind == "chat":
        body = {"model": rng.choice(INDUSTRIES), "max_tokens": 8,
                "messages": [{"role": "user", "content": f"slogan for item {rng.random()}"}]}
        return (await client.post("/v1/chat/completions", json=body)).status_code
    if kind == "cut":  # the client goes away after the first event
        body = {"industry": rng.choice(INDUSTRIES), "product": f"cut {rng.random()}", "max_tokens": 32,
                "cache": False, "stream": True}
        async with client.stream("POST", "/v1/copy", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break
            return r.status_code
    if kind == "bad":
        case = rng.randrange(5)
        if case == 0:
            r = await client.post("/v1/copy", json={"industry": "automotive", "product": "x"})
        elif case == 1:
            r = await client.post("/v1/copy", content=b'{"industry": ', headers={"content-type": "application/json"})
        elif case == 2:
            r = await client.post("/v1/chat/completions", json={"model": "finance", "messages": "hi", "n": 99})
        elif case == 3:
            r = await client.get(f"/v1/no-such-path/{rng.random()}")
        else:
            r = await client.post("/v1/copy", json={"industry": "finance", "product": "x", "seed": 2**70})
        return r.status_code
    r = await client.get(rng.choice(["/v1/models", "/healthz"]))
    return r.status_code


async def soak(url: str, requests: int, concurrency: int, headers: dict, seed: int) -> Counter:
    statuses: Counter = Counter()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=headers, limits=limits) as client:
        counter = iter(range(requests))
        started = time.monotonic()

        async def worker(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            for _ in counter:
                try:
                    statuses[await one(client, rng)] += 1
                except httpx.HTTPError as err:  # a dropped connection or a timeout counts as a failure
                    statuses[type(err).__name__] += 1
                done = sum(statuses.values())
                if done % 100 == 0:
                    rate = done / (time.monotonic() - started)
                    print(f"\r  {done}/{requests} requests, {rate:.0f}/s   ", end="", file=sys.stderr, flush=True)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        print(file=sys.stderr)
    return statuses


def rss_table(start: dict, warm: dict, mid: dict, end: dict) -> tuple[list[str], dict[str, float]]:
    lines, totals = [], dict.fromkeys(("warm", "mid", "end"), 0.0)
    for pid, (name, rss) in sorted(end.items(), key=lambda kv: -kv[1][1]):
        if pid not in warm or pid not in mid:
            continue  # a process that came later (a replaced replica) has no warm figure
        w, m = warm[pid][1], mid[pid][1]
        s = start.get(pid, (name, w))[1]
        for k, v in (("warm", w), ("mid", m), ("end", rss)):
            totals[k] += v
        mib = [f"{v / 2**20:.0f}" for v in (s, w, m, rss)]
        lines.append(f"| {name} | {' | '.join(mib)} | {(rss - w) / w * 100:+.1f}% | {(rss - m) / m * 100:+.1f}% |")
    return lines, totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--warmup", type=int, default=500, help="requests before the warm RSS is taken")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--key", help="API key (not needed when auth is off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}

    start = ray_workers()
    if not start:
        sys.exit("no copyserve processes found: start the service first (make serve)")
    print(f"[soak] warm-up: {args.warmup} requests", file=sys.stderr)
    warm_statuses = asyncio.run(soak(args.url, args.warmup, args.concurrency, headers, args.seed))
    warm = ray_workers()
    print(f"[soak] {args.requests} requests, {args.concurrency} clients", file=sys.stderr)
    began, half = time.monotonic(), args.requests // 2
    statuses = asyncio.run(soak(args.url, half, args.concurrency, headers, args.seed + 1))
    mid = ray_workers()
    statuses += asyncio.run(soak(args.url, args.requests - half, args.concurrency, headers, args.seed + 2))
    elapsed = time.monotonic() - began
    end = ray_workers()

    server_errors = sum(n for s, n in statuses.items() if not isinstance(s, int) or s >= 500)
    lines, totals = rss_table(start, warm, mid, end)
    growth = (totals["end"] - totals["warm"]) / totals["warm"] * 100
    second_half = (totals["end"] - totals["mid"]) / totals["mid"] * 100
    print(f"\n{sum(statuses.values())} requests in {elapsed:.0f}s ({sum(statuses.values()) / elapsed:.0f}/s), "
          f"by status: {dict(sorted(statuses.items(), key=str))}; 5xx or dropped: {server_errors}")
    print("\n| process | RSS start MiB | after warm-up | half-way | end | growth after warm-up | in the 2nd half |"
          "\n| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(lines))
    print(f"| total | | {totals['warm'] / 2**20:.0f} | {totals['mid'] / 2**20:.0f} | {totals['end'] / 2**20:.0f} "
          f"| {growth:+.1f}% | {second_half:+.1f}% |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"statuses": {str(k): v for k, v in statuses.items()}, "warmup_statuses":
                       {str(k): v for k, v in warm_statuses.items()}, "elapsed_s": elapsed,
                       "server_errors": server_errors, "rss_growth_pct": growth,
                       "rss_growth_second_half_pct": second_half}, f, indent=2)


if __name__ == "__main__":
    main()
