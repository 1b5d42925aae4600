"""A batch beside live traffic, on the embedded default: how much interactive /v1/copy latency a running
batch costs, and how much of the engine the batch gets.

    python bench/batch.py                      # ~8 minutes: 200 lines of 64 tokens
    python bench/batch.py --lines 1000 --batch-concurrency 8

Starts the graph from the config (API keys on, as compare.py does), then in one run:
1. idle: interactive /v1/copy p50 (sequential, unique products, 32 tokens), and the engine's closed-loop
   tokens/s at ``--clients`` clients on the OpenAI chat endpoint;
2. a batch of ``--lines`` chat lines (64 tokens each) uploaded with the openai SDK, and while it runs the
   same interactive /v1/copy requests; the batch's tokens/s is its completion tokens over its run time.
Prints both side by side (ratios to idle) and writes them as JSON.
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
from compare import bench_config, create_key, running_graph
from loadgen import chat_body, closed_loop, unique_product
from stats import distribution

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def interactive(url: str, headers: dict, industry: str, samples: int, until=None) -> list[float]:
    """Seconds per /v1/copy, one at a time: ``samples`` of them, or until ``until()`` is true."""
    out = []
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        while len(out) < samples or (until is not None and not until()):
            started = time.perf_counter()
            r = client.post("/v1/copy", json={"industry": industry, "product": unique_product(), "max_tokens": 32,
                                              "cache": False})
            r.raise_for_status()
            out.append(time.perf_counter() - started)
            if until is not None and until():
                break
    return out


def run_batch(url: str, key: str, model: str, lines: int, industry: str, headers: dict) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=2)
    rows = [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {k: v for k, v in chat_body(model, 64, False).items() if k != "stream"}} for i in range(lines)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    batch = client.batches.create(input_file_id=client.files.create(file=("bench.jsonl", data), purpose="batch").id,
                                  endpoint="/v1/chat/completions", completion_window="24h")
    finished = {"done": False}

    def done() -> bool:
        return finished["done"]

    async def watch() -> object:
        try:
            while True:
                try:
                    b = client.batches.retrieve(batch.id)
                except (openai.APIConnectionError, openai.InternalServerError) as err:
                    # A 503 under this load (Redis slow to answer) is an answer, not the end of the batch: look again.
                    print(f"\n  batch status: {type(err).__name__}; looking again", file=sys.stderr)
                    await asyncio.sleep(1)
                    continue
                counts = b.request_counts
                print(f"\r  batch: {counts.completed + counts.failed}/{counts.total} ({b.status})   ", end="",
                      file=sys.stderr, flush=True)
                if b.status in ("completed", "failed", "cancelled", "expired"):
                    print(file=sys.stderr)
                    return b
                await asyncio.sleep(1)
        finally:
            finished["done"] = True  # the interactive client stops with the watch, however it ends

    async def both():
        live = asyncio.to_thread(interactive, url, headers, industry, 10, done)
        return await asyncio.gather(watch(), live)

    final, live = asyncio.run(both())
    tokens = 0
    if final.output_file_id:
        for line in client.files.content(final.output_file_id).text.splitlines():
            tokens += json.loads(line)["response"]["body"]["usage"]["completion_tokens"]
    run_s = (final.completed_at or time.time()) - (final.in_progress_at or final.created_at)
    return {"status": final.status, "lines": lines, "failed": final.request_counts.failed, "tokens": tokens,
            "run_s": run_s, "tok_per_s": tokens / run_s if run_s > 0 else 0.0, "interactive_s": live}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--lines", type=int, default=200)
    p.add_argument("--batch-concurrency", type=int, help="batch.concurrency (lines in flight per ingress replica)")
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients for the idle engine's tokens/s")
    p.add_argument("--samples", type=int, default=15, help="idle interactive requests")
    p.add_argument("--out", type=Path, default=Path("/tmp/copyserve-batch.json"))
    args = p.parse_args()

    model = None
    config = bench_config(args, model)
    if args.batch_concurrency:
        config = config.model_copy(update={"batch": config.batch.model_copy(
            update={"concurrency": args.batch_concurrency})})
    batch_dir = Path(f"/tmp/copyserve-bench-batch-{os.getpid()}")
    config = config.model_copy(update={"batch": config.batch.model_copy(update={"files_dir": str(batch_dir)})})
    model = config.models[0].name
    industry = next(r.industry for r in config.routes if r.model == model and r.quality.sentiment_floor is None)
    with running_graph(config, args.port) as url:
        key = create_key(config)
        headers = {"Authorization": f"Bearer {key}"}
        print("[1/2] idle: interactive /v1/copy and the engine's closed loop", file=sys.stderr)
        idle_live = interactive(url, headers, industry, args.samples)
        idle = asyncio.run(closed_loop(url, "/v1/chat/completions", lambda: chat_body(model, 64, False),
                                       args.clients, 3, headers))
        print(f"[2/2] a {args.lines}-line batch (concurrency {config.batch.concurrency}) beside the same requests",
              file=sys.stderr)
        batch = run_batch(url, key, model, args.lines, industry, headers)
    live_idle, live_busy = distribution(idle_live, 1000), distribution(batch.pop("interactive_s"), 1000)
    result = {"config": str(args.config), "batch_concurrency": config.batch.concurrency, "idle_closed_loop": idle,
              "batch": batch, "interactive_ms": {"idle": live_idle, "during_batch": live_busy}}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n| figure | idle | during a {args.lines}-line batch | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| interactive /v1/copy p50 (32 tokens) | {live_idle['p50']:.0f} ms | {live_busy['p50']:.0f} ms "
          f"(n={live_busy['n']}) | {live_busy['p50'] / live_idle['p50']:.2f}x |")
    print(f"| engine tokens/s: closed loop at {args.clients} clients vs the batch | {idle['tok_per_s']:.1f} | "
          f"{batch['tok_per_s']:.1f} | {batch['tok_per_s'] / idle['tok_per_s']:.2f}x |")
    print(f"\nbatch {batch['status']}: {batch['lines']} lines, {batch['failed']} failed, {batch['tokens']} tokens in "
          f"{batch['run_s']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main()
