"""Channel copy against a running copyserve (``make serve`` first): are the platforms' limits held,
and where does each field end? Prints one row per channel and the totals.

    python bench/channels.py --per-channel 50      # the issue's figure: 50 generations a channel
    python bench/channels.py --per-channel 6       # a quick look

Generations go round the channel's languages, the three industries and seeds (streamed, uncached).
For every field of every answer: within its limit in the platform's unit, non-empty, and where it
ends. The stream's deltas are the JSON as the engine wrote it, so each fitted field is compared with
what the model wrote: "model" (the model closed the field itself and it fits as written), "cut at a
boundary" (it reached its ceiling and was cut back to a clause end or a whole word), "mid-word" (the
field stops inside a word the model was writing, or on a word no sentence ends on: a failure).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.text.channels import CLAUSE_END, DANGLING, measure  # noqa: E402

PRODUCTS = {"en": ["insulated steel water bottle", "noise-cancelling earbuds", "index fund for beginners",
                   "online algebra course"],
            "zh": ["保温不锈钢水杯", "降噪蓝牙耳机", "新手指数基金", "在线代数课程"]}
INDUSTRIES = ["ecommerce", "finance", "education"]


def ending(final: str, written: str, language: str) -> str:
    """Where a fitted field ends, compared with what the model wrote for it."""
    final, written = " ".join(final.split()), " ".join(written.split())
    last_word = final.rsplit(" ", 1)[-1].lower().strip(",;:-–—/(&")
    if language != "zh" and last_word in DANGLING:
        return "mid-word"
    if final == written or final.endswith(tuple(CLAUSE_END)):
        return "model" if final == written else "cut at a boundary"
    if written.startswith(final):
        after = written[len(final)]
        if language == "zh":
            return "cut at a boundary" if after in CLAUSE_END else "mid-word"
        return "cut at a boundary" if not after.isalnum() else "mid-word"
    return "cut at a boundary"  # polish edited it; the fitter cut on its own boundaries


def one(client: httpx.Client, body: dict) -> tuple[dict | None, list[dict], str | None]:
    """(fields as fitted, each attempt's fields as the model wrote them, refusal) of one streamed copy."""
    with client.stream("POST", "/v1/copy", json=body) as r:
        if r.status_code != 200:
            return None, [], f"HTTP {r.status_code}: {json.loads(r.read())['error']['message'][:80]}"
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    final = events[-1]
    if final["type"] != "final":
        return None, [], f"stream ended with {final['type']}: {final.get('error', {}).get('message', '')[:120]}"
    raws = []  # the quality gate may write again: each attempt's JSON (the answer is the best attempt's)
    for attempt in range(1, final["attempts"] + 1):
        written = "".join(e["text"] for e in events if e["type"] == "delta" and e["attempt"] == attempt
                          and e["index"] == 0)
        try:
            raws.append(json.loads(written))
        except ValueError:
            pass
    return final["fields"], raws, None


def written_for(value: str, raws: list[dict], name: str, j: int) -> str:
    """What the model wrote for this field in the attempt it came from (the longest common start)."""
    def said(raw: dict) -> str:
        v = raw.get(name, [])
        v = v if isinstance(v, list) else [v]
        return v[j] if j < len(v) and isinstance(v[j], str) else ""

    def common(a: str) -> int:
        a, b = " ".join(a.split()), " ".join(value.split())
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    return max((said(raw) for raw in raws), key=common, default="")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="")
    p.add_argument("--per-channel", type=int, default=50)
    p.add_argument("--channels", nargs="*", help="ids (default: every channel)")
    p.add_argument("--concurrency", type=int, default=8, help="generations in flight at once")
    p.add_argument("--show-failures", action="store_true", help="print each mid-word or empty field")
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    run = uuid.uuid4().hex[:4]
    totals: Counter = Counter()
    print(f"{'channel':<18} {'gens':>4} {'fields':>6} {'in limit':>8} {'non-empty':>9} {'model':>6} "
          f"{'cut':>5} {'mid-word':>8} {'refused':>7}")
    with httpx.Client(base_url=args.url, timeout=600, headers=headers,
                      limits=httpx.Limits(max_connections=args.concurrency)) as client, \
            ThreadPoolExecutor(args.concurrency) as pool:
        channels = client.get("/v1/channels").json()["data"]
        for channel in channels:
            if args.channels and channel["id"] not in args.channels:
                continue
            bodies = []
            for i in range(args.per_channel):
                language = channel["languages"][i % len(channel["languages"])]
                industry = INDUSTRIES[i % len(INDUSTRIES)]
                product = PRODUCTS[language][i % len(PRODUCTS[language])]
                bodies.append({"industry": industry, "product": f"{product} {run}", "language": language,
                               "channel": channel["id"], "seed": i, "temperature": 1.0, "cache": False,
                               "stream": True})
            row: Counter = Counter()
            # Several clients keep the engine's batch full, as a catalogue job would; answers are judged alike.
            for done, (body, (fields, raws, refused)) in enumerate(
                    zip(bodies, pool.map(lambda b: one(client, b), bodies), strict=True), 1):
                print(f"\r  {channel['id']}: {done}/{args.per_channel}", end="", file=sys.stderr, flush=True)
                if refused:
                    row["refused"] += 1
                    print(f"\n  {channel['id']} {body['language']} {body['industry']}: {refused}", file=sys.stderr)
                    continue
                row["gens"] += 1
                for f in channel["fields"]:
                    values = fields[f["name"]] if isinstance(fields[f["name"]], list) else [fields[f["name"]]]
                    for j, value in enumerate(values):
                        row["fields"] += 1
                        row["in limit"] += measure(value, f["unit"]) <= f["limit"]
                        row["non-empty"] += bool(value.strip())
                        said = written_for(value, raws, f["name"], j)
                        end = ending(value, said, body["language"])
                        row[end] += 1 if value.strip() else 0
                        if args.show_failures and (end == "mid-word" or not value.strip()):
                            print(f"\n  {end}: {channel['id']}.{f['name']} {value!r} (written: {said!r})",
                                  file=sys.stderr)
            print(file=sys.stderr)
            n = max(row["fields"], 1)
            print(f"{channel['id']:<18} {row['gens']:>4} {row['fields']:>6} {row['in limit'] / n:>8.0%} "
                  f"{row['non-empty'] / n:>9.0%} {row['model'] / n:>6.0%} {row['cut at a boundary'] / n:>5.0%} "
                  f"{row['mid-word'] / n:>8.0%} {row['refused']:>7}", flush=True)
            totals.update(row)
    n = max(totals["fields"], 1)
    print(f"{'all':<18} {totals['gens']:>4} {totals['fields']:>6} {totals['in limit'] / n:>8.0%} "
          f"{totals['non-empty'] / n:>9.0%} {totals['model'] / n:>6.0%} {totals['cut at a boundary'] / n:>5.0%} "
          f"{totals['mid-word'] / n:>8.0%} {totals['refused']:>7}")
    print(f"fields ending on a word or clause boundary: {(n - totals['mid-word']) / n:.1%} "
          f"({totals['gens']} generations, {totals['refused']} refused)")


if __name__ == "__main__":
    main()
