"""`copyserve batch run`: copy for a whole catalogue on Ray Data, against a running service.

Ray Data reads the catalogue (CSV, JSONL or Parquet; the ``finetune`` columns: product_name, keywords,
optionally industry, tone, language, sku/id) and a few HTTP client actors ask the service's /v1/copy
for each row, so the service's cache, adapters, channels, limits and post-processing all apply. The
answers are appended to the output file as they come: a run that stops is started again with the same
command and skips the rows already written (keyed by sku/id, else by the row's content)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from serve_app.batch_retry import retry_after, wait_before_retry

ID_COLUMNS = ("sku", "id", "product_id")
HANDED_BACK_BYTES = 1024   # smaller than any answered batch: each is handed back (and written) as it ends
READ_BLOCKS_PER_ACTOR = 4
READERS = {".csv": "read_csv", ".jsonl": "read_json", ".json": "read_json", ".parquet": "read_parquet"}


def row_id(row: dict) -> str:
    """The row's own id (sku/id column), else a digest of what would be asked: stable across runs."""
    for column in ID_COLUMNS:
        if row.get(column) not in (None, ""):
            return str(row[column])
    material = json.dumps({k: str(v) for k, v in sorted(row.items())}, ensure_ascii=False)
    return "row-" + hashlib.sha256(material.encode()).hexdigest()[:16]


def copy_body(row: dict, defaults: dict) -> dict:
    """A /v1/copy request for one catalogue row; the row's own industry/tone/language/channel win."""
    product = row.get("product_name") or row.get("product")
    keywords = row.get("keywords") or []
    if isinstance(keywords, str):
        keywords = [k.strip() for k in keywords.replace(",", "|").split("|") if k.strip()]
    body = {**defaults, "product": str(product) if product is not None else ""}
    if keywords:
        body["keywords"] = [str(k) for k in keywords]
    for column in ("industry", "tone", "language", "channel", "adapter"):
        if row.get(column) not in (None, ""):
            body[column] = str(row[column])
    return body


def done_ids(out: Path) -> set[str]:
    """Rows already answered in an earlier run (a half-written last line is ignored)."""
    if not out.exists():
        return set()
    ids = set()
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            continue
    return ids


class CopyWriter:
    """A Ray Data actor: asks the service for each row of a batch, one HTTP client per actor."""

    def __init__(self, url: str, api_key: str | None, defaults: dict, timeout_s: float,
                 unavailable_retry_s: float = 600, transport=None):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s, transport=transport)
        self.defaults, self.unavailable_retry_s = defaults, unavailable_retry_s

    def _post(self, body: dict):
        """The service's answer to one row: a 429 waits for the key's window, a 503 is asked again for up to
        ``unavailable_retry_s`` (``serve_app.batch_retry``), as the Batch API's runner does."""
        give_up_at = time.monotonic() + self.unavailable_retry_s
        while True:
            r = self.client.post("/v1/copy", json=body)
            wait_s = wait_before_retry(r.status_code, retry_after(r.headers), give_up_at)
            if wait_s is None:
                return r
            time.sleep(wait_s)

    def __call__(self, rows: dict) -> dict:
        keys = list(rows)
        out: dict[str, list] = {"row": [], "ok": [], "status": [], "answer": [], "error": [], "tokens": []}
        for i in range(len(rows[keys[0]])):
            row = {k: _plain(rows[k][i]) for k in keys}
            body = copy_body(row, self.defaults)
            try:
                r = self._post(body)
                payload = r.json()
                ok, status = r.status_code == 200, r.status_code
            except Exception as err:  # noqa: BLE001 - recorded as the row's failure, the run goes on
                payload, ok, status = {"error": {"message": f"{type(err).__name__}: {err}"}}, False, 0
            out["row"].append(json.dumps({"id": row_id(row), "request": body}, ensure_ascii=False))
            out["ok"].append(ok)
            out["status"].append(status)
            out["answer"].append(json.dumps(payload if ok else None, ensure_ascii=False))
            out["error"].append(None if ok else (payload.get("error") or {}).get("message", str(payload))[:500])
            out["tokens"].append(int(((payload or {}).get("usage") or {}).get("total_tokens", 0)) if ok else 0)
        return out


def _plain(value):
    return value.item() if hasattr(value, "item") else value  # numpy scalars from Arrow columns


def run(args: argparse.Namespace) -> int:
    import ray

    try:
        import ray.data  # noqa: F401
    except ImportError:
        print("copyserve: batch run needs Ray Data: pip install 'copyserve[data]'", file=sys.stderr)
        return 2

    source, out = Path(args.input), Path(args.out)
    reader = READERS.get(source.suffix.lower())
    if reader is None:
        print(f"copyserve: {source.name}: read CSV, JSONL or Parquet (by the file's extension)", file=sys.stderr)
        return 2
    if not source.exists():
        print(f"copyserve: {source}: no such file", file=sys.stderr)
        return 2
    if not ray.is_initialized():
        ray.init(address=args.address, logging_level="WARNING")
    light = 0.1  # CPUs of the HTTP clients and the reader: the CPUs belong to the engines
    # Ray Data gathers a task's output into blocks of up to target_max_block_size (128 MiB) before handing any
    # back, and on a small Ray reads a file as one or two blocks: the answers would all come back at the end,
    # and a run stopped halfway would keep nothing to resume from. Every answered batch is handed back at once,
    # and the catalogue is read in enough blocks to keep every client actor busy.
    ray.data.DataContext.get_current().target_max_block_size = HANDED_BACK_BYTES
    ds = getattr(ray.data, reader)(str(source.resolve()), num_cpus=light,
                                   override_num_blocks=READ_BLOCKS_PER_ACTOR * args.concurrency)
    skip = done_ids(out)
    if skip:
        print(f"resuming: {len(skip)} rows already in {out}", file=sys.stderr)
        ds = ds.filter(lambda row: row_id({k: _plain(v) for k, v in row.items()}) not in skip, num_cpus=light)
    defaults = {k: v for k, v in {"industry": args.industry, "channel": args.channel, "language": args.language,
                                  "max_tokens": args.max_tokens}.items() if v is not None}
    answers = ds.map_batches(CopyWriter, fn_constructor_kwargs={"url": args.url, "api_key": args.api_key,
                                                                "defaults": defaults, "timeout_s": args.timeout,
                                                                "unavailable_retry_s": args.unavailable_retry_s},
                             batch_size=args.batch_size, num_cpus=light,
                             compute=ray.data.ActorPoolStrategy(size=args.concurrency))
    started, counts, tokens, reasons = time.monotonic(), Counter(), 0, Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:
        for r in answers.iter_rows():
            row = json.loads(r["row"])
            if r["ok"]:
                sink.write(json.dumps({"id": row["id"], "request": row["request"], "copy": json.loads(r["answer"])},
                                      ensure_ascii=False) + "\n")
                sink.flush()  # what is written survives a stop: the next run skips it
            else:
                reasons[f"{r['status']}: {r['error']}"] += 1
            counts["ok" if r["ok"] else "failed"] += 1
            tokens += int(r["tokens"])
            print(f"\r{counts['ok']} written, {counts['failed']} failed", end="", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - started
    print(file=sys.stderr)
    summary = {"rows": counts["ok"] + counts["failed"], "written": counts["ok"], "failed": counts["failed"],
               "skipped_as_done": len(skip), "tokens": tokens, "seconds": round(elapsed, 1),
               "failures": [{"reason": k, "rows": v} for k, v in reasons.most_common(10)], "out": str(out)}
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0 if not counts["failed"] else 1


def add_commands(sub) -> None:
    b = sub.add_parser("batch", help="catalogue-scale copy on Ray Data").add_subparsers(dest="action", required=True)
    r = b.add_parser("run", help="copy for every row of a CSV/JSONL/Parquet catalogue, written as JSONL")
    r.add_argument("input", help="catalogue file: product_name, keywords (a|b), optional industry, tone, sku, ...")
    r.add_argument("--out", required=True, help="JSONL output; an existing file is resumed (done rows skipped)")
    r.add_argument("--industry", help="industry for rows without their own")
    r.add_argument("--channel", help="channel id (GET /v1/channels) for every row")
    r.add_argument("--language", choices=["en", "zh"])
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    r.add_argument("--api-key", default=os.environ.get("COPYSERVE_API_KEY"), help="or set COPYSERVE_API_KEY")
    r.add_argument("--address", default=None, help="Ray to run on: a cluster's address, or none for a local Ray")
    r.add_argument("--concurrency", type=int, default=2, help="HTTP client actors (requests in flight)")
    r.add_argument("--batch-size", type=int, default=8, help="rows per Ray Data batch")
    r.add_argument("--timeout", type=float, default=300, help="seconds per request")
    r.add_argument("--unavailable-retry-s", type=float, default=600,
                   help="how long a row the service answers 503 (a replica being replaced, a full queue) is asked "
                        "again before it is reported failed")
    r.set_defaults(func=run)
