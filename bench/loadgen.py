"""HTTP load for the benchmarks: streamed samples (time to first token, decode rate), closed-loop
throughput, and the latency of cheap requests. Every prompt is unique, so no cache of any kind
(response cache, vLLM prefix cache past the template) answers for the engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

PRODUCTS = ["insulated water bottle", "wireless earbuds", "standing desk", "running shoes", "espresso machine",
            "backpack with laptop sleeve", "smart thermostat", "yoga mat", "index fund", "language course"]
_serial = itertools.count()


def unique_product() -> str:
    """A product name no earlier request used (the counter) that no later run repeats (the uuid)."""
    n = next(_serial)
    return f"{PRODUCTS[n % len(PRODUCTS)]} model {uuid.uuid4().hex[:8]}"


def chat_body(model: str, max_tokens: int, stream: bool) -> dict:
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0.7, "stream": stream,
            "messages": [{"role": "user", "content": f"Write a short product description for the {unique_product()}."}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


@dataclass
class StreamSample:
    ttft_s: float
    total_s: float
    tokens: int

    @property
    def decode_tok_per_s(self) -> float:
        """Tokens after the first over the time after the first."""
        decode_s = self.total_s - self.ttft_s
        return (self.tokens - 1) / decode_s if self.tokens > 1 and decode_s > 0 else 0.0


async def stream_once(client: httpx.AsyncClient, path: str, body: dict) -> StreamSample:
    """One streamed request (OpenAI chunks or copyserve events). Raises when no token arrives."""
    started = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("type") == "error" or "error" in event and "choices" not in event:
                raise RuntimeError(f"{path}: error event {event}")
            text = _delta_text(event)
            if text and first is None:
                first = time.perf_counter() - started
            usage = event.get("usage")
            if usage:
                tokens = usage["completion_tokens"]
    if first is None:
        raise RuntimeError(f"{path}: the stream ended without a token")
    return StreamSample(first, time.perf_counter() - started, tokens)


def _delta_text(event: dict) -> str:
    if event.get("type") == "delta":
        return event["text"]
    choices = event.get("choices") or []
    return "".join((c.get("delta") or {}).get("content") or c.get("text") or "" for c in choices)


async def streamed(url: str, path: str, make_body: Callable[[], dict], samples: int,
                   headers: dict) -> list[StreamSample]:
    """One client, one request at a time, after one warm-up request."""
    async with httpx.AsyncClient(base_url=url, timeout=600, headers=headers) as client:
        await stream_once(client, path, make_body())
        results = []
        for i in range(samples):
            results.append(await stream_once(client, path, make_body()))
            progress(f"streamed {path}", i + 1, samples)
    return results


async def closed_loop(url: str, path: str, make_body: Callable[[], dict], clients: int, rounds: int,
                      headers: dict) -> dict:
    """``clients`` loops, each sending its next request when the last one answered, ``rounds`` requests
    each, after a warm-up round: completion tokens over the wall time until the last answer. (A fixed
    time window would count whole requests only: at 16 clients one takes ~13 s on this CPU.)"""
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, headers=headers, limits=limits) as client:
        async def one() -> int:
            r = await client.post(path, json=make_body())
            if r.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {r.status_code}: {r.text[:300]}")
            return r.json()["usage"]["completion_tokens"]

        await asyncio.gather(*(one() for _ in range(clients)))  # warm-up: every connection open
        answered: list[int] = []
        started = time.perf_counter()

        async def loop() -> None:
            for _ in range(rounds):
                answered.append(await one())
                progress(f"{clients} clients {path}", len(answered), clients * rounds)

        await asyncio.gather(*(loop() for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(answered), "tokens": sum(answered), "wall_s": wall,
            "tok_per_s": sum(answered) / wall}


async def interleaved_latencies(url: str, paths: dict[str, dict], samples: int) -> dict[str, list[float]]:
    """Seconds per request for each named request, one request at a time, taken in turns (the order rotates
    each round), after five warm-up rounds: a drift of the box over the run (another process waking, the
    allocator, the GC) lands on every path alike instead of on whichever block ran then. Each path has its
    own keep-alive connection. A path is {method, path, headers?, body?, expect?}; a wrong status raises."""
    clients = {name: httpx.AsyncClient(base_url=url, timeout=60, headers=spec.get("headers", {}))
               for name, spec in paths.items()}
    results: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    try:
        for i in range(samples + 5):
            for name in names[i % len(names):] + names[:i % len(names)]:
                spec = paths[name]
                started = time.perf_counter()
                r = await clients[name].request(spec["method"], spec["path"], json=spec.get("body"))
                elapsed = time.perf_counter() - started
                if r.status_code != spec.get("expect", 200):
                    raise RuntimeError(f"{spec['method']} {spec['path']}: HTTP {r.status_code} "
                                       f"(expected {spec.get('expect', 200)}): {r.text[:300]}")
                if i >= 5:
                    results[name].append(elapsed)
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def progress(what: str, done: float, total: float) -> None:
    print(f"\r  {what}: {done:.0f}/{total:.0f}   ", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)
