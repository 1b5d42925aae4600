"""The graph against plain vLLM, side by side in one run on this machine; prints one table of ratios.

    python bench/compare.py                       # configs/local.yaml, its first model; ~3-4 minutes
    python bench/compare.py --rounds 5 --samples 20 --out /tmp/compare.json

1. Plain vLLM's own OpenAI server (``bench/plain_vllm.py``: the engine arguments come from the same
   function the graph's engine uses), measured, stopped.
2. The graph from the same config (local Ray, Serve config deploy as ``copyserve serve`` does; API
   keys on, as on every profile but the laptop's), measured on the same OpenAI endpoint, then
   ``/v1/copy`` (post-processing off and on, cache hits), cheap paths, and a Ray Serve no-op app on
   the same proxy.
Each side: streamed single-client time to first token and decode rate, closed-loop tokens/s at 1, 8
and 16 clients (non-streamed, unique prompts, warm-up), and the memory of its whole process tree
(each process's RSS; the RSS and PSS totals: ``bench/memory.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
from fastapi import FastAPI
from loadgen import chat_body, closed_loop, interleaved_latencies, streamed, unique_product
from memory import tree_memory
from ray import serve
from stats import distribution

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

noop_api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(noop_api)
class Noop:
    """What a user would pick instead of our ingress for the cheapest route: a Serve FastAPI no-op."""

    @noop_api.get("/")
    async def ok(self) -> dict:
        return {"ok": True}

    @noop_api.post("/")
    async def read(self, body: dict) -> dict:
        """A POST no-op that reads its JSON body: Serve fetches a body from the proxy in one more actor call."""
        return {"ok": True}


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline, started = time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        print(f"\r  waiting for {url}: {time.monotonic() - started:.0f}s", end="", file=sys.stderr, flush=True)
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer in {timeout_s}s")


def measure_openai(url: str, model: str, args, headers: dict) -> dict:
    """The same measurements on either side, through the OpenAI chat endpoint."""
    path = "/v1/chat/completions"
    samples = asyncio.run(streamed(url, path, lambda: chat_body(model, args.ttft_tokens, True), args.samples, headers))
    result = {"ttft_ms": distribution([s.ttft_s for s in samples], 1000),
              "decode_tok_per_s": distribution([s.decode_tok_per_s for s in samples])}
    for clients in args.clients:
        rounds = args.rounds * 2 if clients == 1 else args.rounds
        result[f"closed_{clients}"] = asyncio.run(closed_loop(
            url, path, lambda: chat_body(model, args.max_tokens, False), clients, rounds, headers))
    return result


def run_plain(args, model_name: str, log: Path) -> dict:
    port = args.port + 100
    print(f"[1/2] plain vLLM ({model_name}), log {log}", flush=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "plain_vllm.py"), "--config", str(args.config),
                                 "--model", model_name, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    try:
        started = time.monotonic()
        wait_http(f"http://127.0.0.1:{port}/health", 600, proc)
        print(f"\n  up in {time.monotonic() - started:.0f}s", file=sys.stderr)
        result = measure_openai(f"http://127.0.0.1:{port}", model_name, args, {})
        result["memory"] = tree_memory(psutil.Process(proc.pid))
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def bench_config(args, model_name: str):
    """The config as given, on the bench's port, keys on, and its own Redis key prefix."""
    from contracts.config import load_config

    config = load_config(args.config)
    server = config.server.model_copy(update={"port": args.port})
    redis = config.redis.model_copy(update={"key_prefix": f"copyserve-bench-{uuid.uuid4().hex[:8]}:"})
    auth = config.auth.model_copy(update={"enabled": True})
    return config.model_copy(update={"server": server, "redis": redis, "auth": auth})


def create_key(config) -> str:
    from deployments.state.keys import KeyStore
    from deployments.state.store import RedisStore

    async def create() -> str:
        store = RedisStore(config.redis)
        try:
            _, secret = await KeyStore(store).create("user", "bench", 10**9, 10**12)
        finally:
            await store.close()
        return secret

    return asyncio.run(create())


def copy_route(config, model_name: str) -> str:
    """A route of the model with no quality gate: one generation per request."""
    return next(r.industry for r in config.routes if r.model == model_name and r.quality.sentiment_floor is None)


def measure_copy(url: str, industry: str, args, headers: dict) -> dict:
    """Server-side time outside generation (total - generation), post-processing off and on, interleaved."""
    overhead = {False: [], True: []}
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        for i in range(args.samples + 1):
            for postprocess in (False, True):
                r = client.post("/v1/copy", json={"industry": industry, "product": unique_product(), "max_tokens": 16,
                                                  "cache": False, "postprocess": postprocess})
                r.raise_for_status()
                t = r.json()["timings"]
                if i:  # the first pair warms up
                    overhead[postprocess].append(t["total_ms"] - t["generation_ms"])
            print(f"\r  /v1/copy postprocess off/on: {i}/{args.samples}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        hit_body = {"industry": industry, "product": "bench cache hit", "max_tokens": 16, "temperature": 0}
        client.post("/v1/copy", json=hit_body).raise_for_status()  # the miss that fills the cache
    return {"copy_overhead_ms_postprocess_off": distribution(overhead[False]),
            "copy_overhead_ms_postprocess_on": distribution(overhead[True]), "hit_body": hit_body}


def measure_cheap_paths(url: str, hit_body: dict, samples: int, headers: dict) -> dict:
    """The cheap paths and the Serve no-op they are held against, taken in turns in the same minutes."""
    cheap = asyncio.run(interleaved_latencies(url, {
        "noop": {"method": "GET", "path": "/noop/"},
        "noop_post": {"method": "POST", "path": "/noop/", "body": hit_body},
        "copy_cache_hit": {"method": "POST", "path": "/v1/copy", "headers": headers, "body": hit_body},
        "models": {"method": "GET", "path": "/v1/models", "headers": headers},
        "unauthorized": {"method": "GET", "path": "/v1/models", "expect": 401},
    }, samples * 5))
    return {name: distribution(values, 1000) for name, values in cheap.items()}


@contextmanager
def running_graph(config, port: int):
    """The graph from ``config`` on a local Ray, started as `copyserve serve` starts it; yields its URL and
    shuts Serve and Ray down after."""
    import ray

    from serve_app import serve_control
    from serve_app.builder import local_ray_env, validate_for_serving
    from serve_app.serve_config import build_serve_config
    from serve_app.worker_setup import serving_runtime_env

    validate_for_serving(config)
    os.environ.update(local_ray_env(config))  # as `copyserve serve` starts its Ray
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", runtime_env=serving_runtime_env())
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve_control.deploy(build_serve_config(config))  # as `copyserve serve` does
        serve_control.wait_until_running(config.server.app_name, 900,
                                         progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def run_graph(args, model_name: str) -> dict:
    config = bench_config(args, model_name)
    print(f"[2/2] the copyserve graph from {args.config} (auth on)", flush=True)
    started = time.monotonic()
    with running_graph(config, args.port) as url:
        serve.run(Noop.bind(), name="noop", route_prefix="/noop")
        print(f"  up in {time.monotonic() - started:.0f}s", file=sys.stderr)
        headers = {"Authorization": f"Bearer {create_key(config)}"}
        result = measure_openai(url, model_name, args, headers)
        copy = measure_copy(url, copy_route(config, model_name), args, headers)
        result.update({k: v for k, v in copy.items() if k != "hit_body"})
        result["cheap_ms"] = measure_cheap_paths(url, copy["hit_body"], args.samples, headers)
        # The no-op app is the yardstick, not part of the graph.
        result["memory"] = tree_memory(psutil.Process(), include_root=False, leave_out="ServeReplica:noop")
        return result


def ratio_rows(plain: dict, graph: dict, clients: list[int]) -> list[tuple[str, str, str, str]]:
    rows = []
    for c in clients:
        p, g = plain[f"closed_{c}"]["tok_per_s"], graph[f"closed_{c}"]["tok_per_s"]
        rows.append((f"closed loop, {c} clients: tokens/s", f"{p:.1f}", f"{g:.1f}", f"{g / p:.2f}x"))
    for q in ("p50", "p90"):
        p, g = plain["ttft_ms"][q], graph["ttft_ms"][q]
        if p is None or g is None:
            continue  # too few samples for this percentile
        rows.append((f"1 client streamed: TTFT {q}", f"{p:.0f} ms", f"{g:.0f} ms", f"{g - p:+.0f} ms"))
    p, g = plain["decode_tok_per_s"]["p50"], graph["decode_tok_per_s"]["p50"]
    rows.append(("1 client streamed: decode tokens/s p50", f"{p:.1f}", f"{g:.1f}", f"{g / p:.2f}x"))
    cheap = graph["cheap_ms"]
    noop = cheap["noop"]["p50"]
    for name, label in (("copy_cache_hit", "/v1/copy cache hit"), ("models", "GET /v1/models"),
                        ("unauthorized", "401 (no key)")):
        rows.append((f"{label} p50 vs Serve no-op", f"{noop:.1f} ms", f"{cheap[name]['p50']:.1f} ms",
                     f"{cheap[name]['p50'] / noop:.2f}x"))
    # A POST's body reaches a Serve replica in one more actor call (the replica asks the proxy for it):
    # the same cost for any Serve app, so the hit is also shown against a no-op that reads the same body.
    post = cheap["noop_post"]["p50"]
    rows.append(("/v1/copy cache hit p50 vs Serve no-op POST (same body)", f"{post:.1f} ms",
                 f"{cheap['copy_cache_hit']['p50']:.1f} ms", f"{cheap['copy_cache_hit']['p50'] / post:.2f}x"))
    off, on = graph["copy_overhead_ms_postprocess_off"]["p50"], graph["copy_overhead_ms_postprocess_on"]["p50"]
    rows.append(("/v1/copy outside generation p50: postprocess off vs on", f"{off:.1f} ms", f"{on:.1f} ms",
                 f"{on - off:+.1f} ms"))
    pm, gm = plain["memory"], graph["memory"]
    rows.append(("RSS of the process tree", f"{pm['total_gib']:.2f} GiB / {pm['processes']} procs",
                 f"{gm['total_gib']:.2f} GiB / {gm['processes']} procs",
                 f"{gm['total_gib'] - pm['total_gib']:+.2f} GiB"))
    rows.append(("PSS of the process tree (shared pages counted once)", f"{pm['total_pss_gib']:.2f} GiB",
                 f"{gm['total_pss_gib']:.2f} GiB", f"{gm['total_pss_gib'] - pm['total_pss_gib']:+.2f} GiB"))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    print("\n| figure | plain vLLM | copyserve graph | ratio / delta |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--model", help="model of the config to compare (default: the first)")
    p.add_argument("--port", type=int, default=8300, help="graph port; plain vLLM listens on port + 100")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--rounds", type=int, default=3, help="closed-loop requests per client and level (x2 for 1 client)")
    p.add_argument("--samples", type=int, default=10, help="streamed requests for TTFT (x5 for cheap paths)")
    p.add_argument("--max-tokens", type=int, default=64, help="answer length in the closed loop")
    p.add_argument("--ttft-tokens", type=int, default=32, help="answer length of the streamed samples")
    p.add_argument("--out", type=Path, default=Path("/tmp/copyserve-compare.json"))
    args = p.parse_args()

    from contracts.config import load_config

    model_name = args.model or load_config(args.config).models[0].name
    started = time.monotonic()
    plain = run_plain(args, model_name, args.out.with_suffix(".plain-vllm.log"))
    graph = run_graph(args, model_name)
    rows = ratio_rows(plain, graph, args.clients)
    print_table(rows)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cores",
              "config": str(args.config), "model": model_name, "args": {k: str(v) for k, v in vars(args).items()},
              "plain_vllm": plain, "graph": graph, "table": rows, "minutes": (time.monotonic() - started) / 60}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.out} ({report['minutes']:.1f} min)")


if __name__ == "__main__":
    main()
