"""The ceiling of one ingress replica on a GPU-speed engine: the graph with a paced synthetic engine
(``bench/paced_engine.py``, injected through the builder's engine class; never the product's default),
64 concurrent streams on the OpenAI chat endpoint, rising token rates per stream.

    python bench/ceiling.py                          # ~3 minutes
    python bench/ceiling.py --streams 64 --rates 100 160 250 --stream-interval-ms 30

For each offered rate: tokens/s delivered to the clients over the whole run (from the burst of 64
requests to the last token: admission included), tokens/s while streaming (each stream's pace from its
first token to its last, summed: what the replica keeps up once the streams run), the p50/p99 gap
between chunks a client receives, time to first token (admission). "Sustained" means >= 95% of the
offered rate while streaming with a p99 gap of at most 100 ms. The model's ``stream_interval_ms``
(coalescing) is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
from loadgen import chat_body
from stats import percentile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENGINE = "paced_engine:PacedEngine"  # bench/ is on the workers' path: Ray gives them the driver's


async def one_stream(client: httpx.AsyncClient, body: dict) -> tuple[float, list[float], int]:
    started = time.perf_counter()
    arrivals, tokens = [], 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif any((c.get("delta") or {}).get("content") for c in event.get("choices", [])):
                arrivals.append(time.perf_counter())
    if not arrivals:
        raise RuntimeError("a stream ended without a token")
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    streaming_s = arrivals[-1] - arrivals[0]  # its pace once admitted: the first token's wait is TTFT's
    return arrivals[0] - started, gaps, tokens, (tokens - 1) / streaming_s if streaming_s > 0 else 0.0


async def level(url: str, model: str, streams: int, tokens: int) -> dict:
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await asyncio.gather(*(one_stream(client, chat_body(model, 4, True)) for _ in range(streams)))  # warm-up
        started = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, chat_body(model, tokens, True)) for _ in range(streams)))
        wall = time.perf_counter() - started
    ttfts = [r[0] for r in results]
    gaps = [g for r in results for g in r[1]]
    return {"delivered_tok_per_s": sum(r[2] for r in results) / wall, "streaming_tok_per_s": sum(r[3] for r in results),
            "gap_p50_ms": percentile(gaps, 0.5) * 1000,
            "gap_p99_ms": percentile(gaps, 0.99) * 1000, "ttft_p50_ms": percentile(ttfts, 0.5) * 1000,
            "ttft_p90_ms": percentile(ttfts, 0.9) * 1000, "chunks": len(gaps) + len(results)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--streams", type=int, default=64)
    p.add_argument("--rates", type=float, nargs="+", default=[50, 100, 160, 250],
                   help="tokens/s per stream to offer, one level each")
    p.add_argument("--seconds", type=float, default=20,
                   help="length of each stream at its rate (64 streams arriving at once take ~1 s to admit)")
    p.add_argument("--stream-interval-ms", type=float, help="override the model's coalescing interval")
    args = p.parse_args()

    import ray
    from ray import serve

    from contracts.config import load_config
    from serve_app.builder import build_app, local_ray_env

    base = load_config(args.config)
    # Room for every stream at once: queueing in front of the replicas is not what is measured here.
    room = {"max_ongoing_requests": 2 * args.streams}
    server = base.server.model_copy(update={"ingress": base.server.ingress.model_copy(update=room)})
    base = base.model_copy(update={"server": server})
    model = base.models[0]
    model = model.model_copy(update={"deployment": model.deployment.model_copy(update=room)})
    if args.stream_interval_ms is not None:
        model = model.model_copy(update={"stream_interval_ms": args.stream_interval_ms})
    os.environ.update(local_ray_env(base))  # as `copyserve serve` starts its Ray
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    url = f"http://127.0.0.1:{args.port}"
    rows = []
    try:
        for rate in args.rates:
            engine = model.engine.model_copy(update={"engine_kwargs": {"tokens_per_s": rate}})
            config = base.model_copy(update={"models": [model.model_copy(update={"engine": engine})]})
            serve.run(build_app(config, engine_cls=ENGINE), name=config.server.app_name, route_prefix="/")
            offered = rate * args.streams
            print(f"  offering {offered:,.0f} tokens/s ({args.streams} streams x {rate:g}) ...", file=sys.stderr)
            result = asyncio.run(level(url, model.name, args.streams, int(rate * args.seconds)))
            sustained = result["streaming_tok_per_s"] >= 0.95 * offered and result["gap_p99_ms"] <= 100
            rows.append({"offered_tok_per_s": offered, **result, "sustained": sustained})
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"\nstreams: {args.streams}; coalescing interval: {model.stream_interval_ms:g} ms; config {args.config}")
    print("| offered tok/s | delivered tok/s (whole run) | streaming tok/s | gap p50 | gap p99 | TTFT p50 | TTFT p90 "
          "| sustained |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['offered_tok_per_s']:,.0f} | {r['delivered_tok_per_s']:,.0f} | {r['streaming_tok_per_s']:,.0f} | "
              f"{r['gap_p50_ms']:.0f} ms | {r['gap_p99_ms']:.0f} ms | {r['ttft_p50_ms']:.0f} ms | "
              f"{r['ttft_p90_ms']:.0f} ms | "
              f"{'yes' if r['sustained'] else 'no'} |")
    best = max((r["offered_tok_per_s"] for r in rows if r["sustained"]), default=0)
    print(f"\nhighest sustained offered rate: {best:,.0f} tokens/s")


if __name__ == "__main__":
    main()
