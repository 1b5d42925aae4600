"""Where a CPU engine's model worker runs: vLLM's CPU default (a process of its own beside the engine core)
against inside the engine-core process (``engine.cpu_worker_in_engine_core``, copyserve's default). Each
layout starts in a fresh process with the environment ``engine_env`` gives a replica and the arguments
``engine_args`` gives the engine, alternating, so both see the same machine; no Ray, no HTTP.

    python bench/engine_layout.py                      # configs/local.yaml, its first model, 2 rounds
    python bench/engine_layout.py --rounds 3 --out /tmp/layout.json

Per start: seconds from ``AsyncLLM`` construction to ready, processes and RSS of the tree, tokens/s at
1 / 8 / 16 concurrent requests (64 tokens each, EOS ignored so every request decodes the same count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAYOUTS = {"worker process (vLLM's CPU default)": False, "worker in engine core": True}
CLIENTS = (1, 8, 16)
TOKENS = 64


def measure_one(config_path: Path, model_name: str | None, in_core: bool) -> dict:
    """Runs in a child process: the environment must be set before vLLM reads it."""
    from contracts.config import load_config
    from serve_app.builder import engine_env

    config = load_config(config_path)
    model = config.model(model_name) if model_name else config.models[0]
    model = model.model_copy(update={"engine": model.engine.model_copy(
        update={"cpu_worker_in_engine_core": in_core})})
    os.environ.update(engine_env(model))

    from deployments.engines.vllm_engine import engine_args, engine_core_env

    os.environ.update(engine_core_env(model))  # what a model replica gives its engine core (threads, ...)

    import asyncio
    import time
    import uuid

    import psutil
    from memory import tree_memory
    from vllm import SamplingParams
    from vllm.v1.engine.async_llm import AsyncLLM

    async def run() -> dict:
        started = time.monotonic()
        engine = AsyncLLM.from_engine_args(engine_args(model))
        start_s = time.monotonic() - started
        memory = tree_memory(psutil.Process())

        async def one(max_tokens: int) -> None:
            params = SamplingParams(max_tokens=max_tokens, temperature=0.8, ignore_eos=True)
            request_id = uuid.uuid4().hex
            async for _ in engine.generate(f"Write a product description for item {request_id}", params,
                                           request_id=request_id):
                pass

        await one(8)  # warm-up
        rates = {}  # by client count, as a string: the JSON the parent reads back
        for clients in CLIENTS:
            t = time.monotonic()
            await asyncio.gather(*(one(TOKENS) for _ in range(clients)))
            rates[str(clients)] = clients * TOKENS / (time.monotonic() - t)
        engine.shutdown()
        return {"start_s": start_s, "processes": memory["processes"], "rss_gib": memory["total_gib"],
                "pss_gib": memory["total_pss_gib"], "tokens_per_s": rates}

    return asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--model", help="model name from the config (default: the first)")
    p.add_argument("--rounds", type=int, default=2, help="starts of each layout, alternating")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--one", choices=["process", "core"], help=argparse.SUPPRESS)  # a child's own run
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure_one(args.config, args.model, args.one == "core")), flush=True)
        return

    runs: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
    for r in range(args.rounds):
        for name, in_core in LAYOUTS.items():
            print(f"[layout] round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--config", str(args.config),
                       "--one", "core" if in_core else "process"]
            if args.model:
                command += ["--model", args.model]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{name}: the engine run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(line.removeprefix("RESULT ")))
            print(f"[layout]   started in {runs[name][-1]['start_s']:.1f}s", file=sys.stderr, flush=True)

    def mid(name: str, pick) -> float:
        return median(pick(run) for run in runs[name])

    base, ours = LAYOUTS
    rows = [("engine start, s (median)", lambda x: x["start_s"], ".1f"),
            ("processes", lambda x: x["processes"], ".0f"),
            ("RSS of the tree, GiB", lambda x: x["rss_gib"], ".2f"),
            ("PSS of the tree, GiB", lambda x: x["pss_gib"], ".2f")]
    rows += [(f"tokens/s, {c} concurrent", lambda x, c=c: x["tokens_per_s"][str(c)], ".1f") for c in CLIENTS]
    print(f"\n| figure ({args.rounds} starts each, median) | {base} | {ours} | ratio |")
    print("| --- | --- | --- | --- |")
    for label, pick, spec in rows:
        a, b = mid(base, pick), mid(ours, pick)
        print(f"| {label} | {a:{spec}} | {b:{spec}} | {b / a:.2f}x |")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
