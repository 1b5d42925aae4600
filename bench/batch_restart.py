"""`copyserve batch run` on a 1,000-row catalogue, killed halfway and run again: every row written once.

    python bench/batch_restart.py                 # ~15 minutes on 2 cores: 1,000 rows of 16 tokens
    python bench/batch_restart.py --rows 200      # a quicker look

Starts the graph from the config (API keys on, as compare.py does) on a local Ray, writes a catalogue of
``--rows`` products (the finetune samples' products and keywords, each row its own SKU), runs
`copyserve batch run` on the same Ray (``--address``, as on a cluster), kills it with SIGKILL once
``--kill-at`` of the rows are written, runs the same command again, and checks the output: every SKU
exactly once, none missing. Prints the two runs' summaries and writes them as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from compare import bench_config, create_key, running_graph

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_catalogue(path: Path, rows: int) -> list[str]:
    """``rows`` products from the finetune samples (cycled, numbered): sku, product_name, keywords."""
    samples = []
    for source in sorted((ROOT / "finetune" / "samples").glob("*_en.csv")):
        with source.open(encoding="utf-8") as f:
            samples += [(r["product_name"], r["keywords"]) for r in csv.DictReader(f)]
    skus = [f"SKU-{i:05d}" for i in range(rows)]
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["sku", "product_name", "keywords"])
        for i, sku in enumerate(skus):
            name, keywords = samples[i % len(samples)]
            out.writerow([sku, f"{name} {i // len(samples) + 1}", keywords])
    return skus


def written(out: Path) -> int:
    return out.read_text(encoding="utf-8").count("\n") if out.exists() else 0


def batch_command(args, catalogue: Path, out: Path, url: str, key: str, address: str) -> list[str]:
    return [sys.executable, "-m", "serve_app.cli", "batch", "run", str(catalogue), "--industry", args.industry,
            "--out", str(out), "--max-tokens", str(args.max_tokens), "--url", url, "--api-key", key,
            "--address", address, "--concurrency", str(args.concurrency)]


def run_once(command: list[str], out: Path, kill_at: int | None) -> dict:
    """One run of the CLI; with ``kill_at``, SIGKILLed once that many rows are in ``out``."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    killed = False
    while process.poll() is None:
        if kill_at is not None and written(out) >= kill_at:
            os.killpg(process.pid, signal.SIGKILL)  # the CLI and anything it started: no clean-up runs
            killed = True
            break
        print(f"\r  {written(out)} rows written", end="", file=sys.stderr, flush=True)
        time.sleep(0.5)
    stdout = process.communicate()[0]
    print(file=sys.stderr)
    summary = None
    if "{" in stdout and not killed:
        summary = json.loads(stdout[stdout.rindex('{\n  "rows"'):])
    return {"killed": killed, "exit": process.returncode, "seconds": round(time.monotonic() - started, 1),
            "rows_in_out_after": written(out), "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "local.yaml")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=4, help="Ray Data actors (HTTP clients) of the CLI")
    p.add_argument("--kill-at", type=float, default=0.5, help="share of the rows written when the first run is killed")
    p.add_argument("--out", type=Path, default=Path("/tmp/copyserve-batch-restart.json"))
    args = p.parse_args()

    import ray

    config = bench_config(args, None)
    args.industry = next(r.industry for r in config.routes if r.model == config.models[0].name)
    folder = Path(f"/tmp/copyserve-bench-restart-{os.getpid()}")
    folder.mkdir()
    catalogue, out = folder / "catalogue.csv", folder / "copy.jsonl"
    skus = write_catalogue(catalogue, args.rows)
    with running_graph(config, args.port) as url:
        key = create_key(config)
        command = batch_command(args, catalogue, out, url, key, ray.get_runtime_context().gcs_address)
        kill_at = int(args.rows * args.kill_at)
        print(f"[1/2] {args.rows} rows, killed (SIGKILL) at {kill_at} written", file=sys.stderr)
        first = run_once(command, out, kill_at)
        print("[2/2] the same command again", file=sys.stderr)
        second = run_once(command, out, None)

    counts = Counter()
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            counts[json.loads(line)["id"]] += 1
        except (ValueError, KeyError):
            counts["<unreadable line>"] += 1
    check = {"rows": args.rows, "distinct_written": len(set(counts) & set(skus)),
             "missing": len(set(skus) - set(counts)), "written_twice": sum(1 for n in counts.values() if n > 1),
             "unreadable_lines": counts["<unreadable line>"]}
    result = {"config": str(args.config), "max_tokens": args.max_tokens, "first_run": first, "second_run": second,
              "check": check}
    args.out.write_text(json.dumps(result, indent=2))
    s = second["summary"] or {}
    print("\n| run | seconds | rows written to the file | notes |\n| --- | --- | --- | --- |")
    print(f"| 1 (SIGKILL) | {first['seconds']} | {first['rows_in_out_after']} | killed: {first['killed']} |")
    print(f"| 2 (same command) | {second['seconds']} | {second['rows_in_out_after']} | exit {second['exit']}; "
          f"resumed past {s.get('skipped_as_done')}, wrote {s.get('written')}, failed {s.get('failed')}, "
          f"{s.get('tokens')} tokens in {s.get('seconds')} s |")
    print(f"\ncheck: {check['distinct_written']}/{args.rows} SKUs written, {check['missing']} missing, "
          f"{check['written_twice']} written twice, {check['unreadable_lines']} unreadable lines")
    sys.exit(0 if check["missing"] == 0 and check["written_twice"] == 0 else 1)


if __name__ == "__main__":
    main()
