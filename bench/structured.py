"""What a JSON schema costs: the same prompts free and under ``response_format: json_schema``, one run,
against a running copyserve (``make serve`` first). Prints one table of ratios.

    python bench/structured.py --samples 8 --rounds 2 --clients 8 --answers 50

The schema is a search ad's (three headlines, two descriptions, each with a maxLength): vLLM's
structured outputs (xgrammar) mask the logits at every step, so its cost shows in tokens/s and in
the time to the first token (the grammar is compiled when the request arrives).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator
from loadgen import chat_body, closed_loop, progress, streamed
from stats import distribution

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["headlines", "descriptions"],
          "properties": {
              "headlines": {"type": "array", "minItems": 3, "maxItems": 3,
                            "items": {"type": "string", "minLength": 1, "maxLength": 30}},
              "descriptions": {"type": "array", "minItems": 2, "maxItems": 2,
                               "items": {"type": "string", "minLength": 1, "maxLength": 90}}}}


def body(model: str, max_tokens: int, stream: bool, schema: bool) -> dict:
    b = chat_body(model, max_tokens, stream)
    if schema:
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "ad", "schema": SCHEMA}}
        b["messages"][0]["content"] += " Answer as JSON with three headlines and two descriptions."
    return b


def measure(url: str, model: str, args, schema: bool) -> dict:
    label = "json_schema" if schema else "free text"
    print(f"[{label}]", file=sys.stderr, flush=True)
    samples = asyncio.run(streamed(url, "/v1/chat/completions", lambda: body(model, args.max_tokens, True, schema),
                                   args.samples, {}))
    loop = asyncio.run(closed_loop(url, "/v1/chat/completions", lambda: body(model, args.max_tokens, False, schema),
                                   args.clients, args.rounds, {}))
    return {"ttft_ms": distribution([s.ttft_s for s in samples], 1000),
            "decode_tok_per_s": distribution([s.decode_tok_per_s for s in samples]),
            "closed_tok_per_s": loop["tok_per_s"]}


async def validity(url: str, model: str, answers: int, clients: int) -> dict:
    """``answers`` schema-constrained answers with room to finish: how many parse as JSON and hold the schema,
    how many the token budget cut, how many are invalid although finished. The schema's 270 characters can take
    four tokens each (an emoji is spelled in bytes; the small model writes runs of them): ``max_tokens`` 1200."""
    check, sem = Draft202012Validator(SCHEMA), asyncio.Semaphore(clients)
    counts = {"valid": 0, "invalid": 0, "length": 0}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one() -> None:
            async with sem:
                r = await client.post("/v1/chat/completions", json=body(model, 1200, False, True))
            r.raise_for_status()
            choice = r.json()["choices"][0]
            try:
                ok = check.is_valid(json.loads(choice["message"]["content"]))
            except ValueError:
                ok = False
            counts["valid" if ok else "length" if choice["finish_reason"] == "length" else "invalid"] += 1
            progress("json_schema answers checked", sum(counts.values()), answers)

        await asyncio.gather(*(one() for _ in range(answers)))
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--samples", type=int, default=8, help="streamed requests per mode (one client)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="closed-loop requests per client")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--answers", type=int, default=50, help="schema answers checked for valid JSON")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    free, shaped = measure(args.url, args.model, args, False), measure(args.url, args.model, args, True)
    rows = [
        ("1 client streamed: TTFT p50", f"{free['ttft_ms']['p50']:.0f} ms", f"{shaped['ttft_ms']['p50']:.0f} ms",
         f"{shaped['ttft_ms']['p50'] - free['ttft_ms']['p50']:+.0f} ms"),
        ("1 client streamed: decode tokens/s p50", f"{free['decode_tok_per_s']['p50']:.1f}",
         f"{shaped['decode_tok_per_s']['p50']:.1f}",
         f"{shaped['decode_tok_per_s']['p50'] / free['decode_tok_per_s']['p50']:.2f}x"),
        (f"closed loop, {args.clients} clients: tokens/s", f"{free['closed_tok_per_s']:.1f}",
         f"{shaped['closed_tok_per_s']:.1f}", f"{shaped['closed_tok_per_s'] / free['closed_tok_per_s']:.2f}x"),
    ]
    checked = asyncio.run(validity(args.url, args.model, args.answers, args.clients))
    print("| figure | free text | json_schema | ratio / delta |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\njson_schema answers: {checked['valid']} of {args.answers} valid JSON holding the schema, "
          f"{checked['invalid']} invalid, {checked['length']} cut by max_tokens")
    if args.out:
        args.out.write_text(json.dumps({"free": free, "json_schema": shaped, "validity": checked, "args": vars(args)},
                                       default=str, indent=2))


if __name__ == "__main__":
    main()
