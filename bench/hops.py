"""Where a copy's time outside the engine goes, on a running copyserve (``make serve`` first, on this machine's
Ray; pass --api-key if auth is on).

    python bench/hops.py --samples 100      # ~1 minute

1. A call on Ray's own (a no-op actor) against the same call through Serve handles to the Polish and Sentiment
   deployments: each alone, chained as a copy chains them (Polish's answer straight to Sentiment), and both at
   once. From this driver, with the engine idle.
2. A streamed /v1/copy: the client's time to first token against the model replica's own
   (``timings.first_token_ms``): the difference is the proxy, the ingress and the hops.
3. /v1/copy's time outside generation (``total_ms - generation_ms``) with post-processing off and on,
   interleaved: inside a copy the chain runs right after a generation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
from stats import percentile, show

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def p50_ms(values: list[float]) -> float | None:
    return percentile(values, 0.5)


async def timed(call, samples: int) -> list[float]:
    await call()  # warm-up: handles resolve their replicas on first use
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def handle_calls(app: str, samples: int) -> dict[str, list[float]]:
    import ray
    from ray import serve

    from deployments.text.draft import Draft

    @ray.remote(num_cpus=0)
    class Noop:
        async def echo(self, value):
            return value

    noop = Noop.remote()
    polish = serve.get_deployment_handle("Polish", app_name=app)
    sentiment = serve.get_deployment_handle("Sentiment", app_name=app)
    draft = Draft("Our bottle keeps water cold all day. Leak-proof lid, light steel", "en", "ecommerce")
    calls = {"a Ray actor call (no-op)": lambda: noop.echo.remote(draft),
             "Serve: Polish": lambda: polish.process.remote(draft),
             "Serve: Sentiment": lambda: sentiment.process.remote(draft),
             "Serve: Polish then Sentiment (chained)": lambda: sentiment.process.remote(polish.process.remote(draft)),
             "Serve: Polish and Sentiment at once": lambda: asyncio.gather(polish.process.remote(draft),
                                                                          sentiment.process.remote(draft))}
    return {name: await timed(call, samples) for name, call in calls.items()}


def copy_body(run: str, i: int, **extra) -> dict:
    return {"industry": "finance", "product": f"savings account {run}-{i}", "keywords": ["no fees"],
            "max_tokens": 8, "cache": False, **extra}


def first_tokens(client: httpx.Client, run: str, samples: int) -> tuple[list[float], list[float]]:
    """(client's TTFT, the model replica's) per streamed copy, in ms; the first two warm up."""
    client_ms, replica_ms = [], []
    for i in range(samples + 2):
        started, first, final = time.perf_counter(), None, None
        with client.stream("POST", "/v1/copy", json=copy_body(run, i, stream=True, postprocess=False)) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("type") == "delta" and first is None:
                    first = (time.perf_counter() - started) * 1000
                elif event.get("type") == "final":
                    final = event
        if i >= 2 and first is not None and final is not None:
            client_ms.append(first)
            replica_ms.append(final["timings"]["first_token_ms"])
    return client_ms, replica_ms


def outside_generation(client: httpx.Client, run: str, samples: int) -> dict[bool, list[float]]:
    out: dict[bool, list[float]] = {False: [], True: []}
    for i in range(samples + 1):
        for postprocess in (False, True):
            r = client.post("/v1/copy", json=copy_body(f"{run}-pp", i, postprocess=postprocess))
            r.raise_for_status()
            t = r.json()["timings"]
            if i:
                out[postprocess].append(t["total_ms"] - t["generation_ms"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--app", default="copyserve", help="the Serve application's name (server.app_name)")
    p.add_argument("--samples", type=int, default=100, help="handle calls per kind (a fifth as many copies)")
    p.add_argument("--api-key")
    args = p.parse_args()

    import ray

    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    print("[1/3] handle calls from this driver", file=sys.stderr, flush=True)
    calls = asyncio.run(handle_calls(args.app, args.samples))
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    run, copies = uuid.uuid4().hex[:6], max(10, args.samples // 5)
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
        print("[2/3] streamed copies: first tokens", file=sys.stderr, flush=True)
        client_ms, replica_ms = first_tokens(client, run, copies)
        print("[3/3] copies with post-processing off and on", file=sys.stderr, flush=True)
        outside = outside_generation(client, run, copies)

    print(f"\n{'what':<44} {'p50':>10}")
    for name, values in calls.items():
        print(f"{name:<44} {show(p50_ms(values)):>10}")
    outside_replica = [c - r for c, r in zip(client_ms, replica_ms, strict=True)]
    print(f"{'copy TTFT at the client':<44} {show(p50_ms(client_ms)):>10}")
    print(f"{'copy TTFT in the model replica':<44} {show(p50_ms(replica_ms)):>10}")
    print(f"{'  outside the model replica (per request)':<44} {show(p50_ms(outside_replica)):>10}")
    off, on = p50_ms(outside[False]), p50_ms(outside[True])
    print(f"{'copy outside generation, postprocess off':<44} {show(off):>10}")
    print(f"{'copy outside generation, postprocess on':<44} {show(on):>10}")
    if off is not None and on is not None:
        print(f"{'  post-processing inside a copy':<44} {show(on - off, '+.1f'):>10}")


if __name__ == "__main__":
    main()
