"""`copyserve batch run` on Ray Data against the running service: every catalogue row written once; a
second run skips what is written and adds only the new rows; rows are written as they are answered. The
runs happen on a Ray whose whole CPUs are taken, as the embedded default's engines take them: an
operator of the run that asks for a whole CPU would wait forever."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray


def args_for(source, out, base_url, user_key, batch_size: int = 2) -> list[str]:
    return [str(source), "--out", str(out), "--industry", "finance", "--max-tokens", "4", "--url", base_url,
            "--api-key", user_key, "--concurrency", "2", "--batch-size", str(batch_size), "--timeout", "120"]


@ray.remote
class Holder:
    def ready(self) -> bool:
        return True


@pytest.fixture
def busy_ray(base_url):
    """Hold every whole CPU the session's Ray has free (leaving half of one)."""
    free = ray.available_resources().get("CPU", 0.0)
    holder = Holder.options(num_cpus=free - 0.5).remote() if free > 0.5 else None
    if holder is not None:
        ray.get(holder.ready.remote(), timeout=60)
    yield
    if holder is not None:
        ray.kill(holder)


def run_cli(args: list[str], timeout_s: float = 300) -> tuple[int, dict]:
    """`copyserve batch run` as an operator runs it: a process of its own (so a Ray job of its own, not the
    serving job whose workers leave Ray Data's libraries out) on the session's Ray, with a deadline: a run whose
    operators cannot be scheduled fails here, not hangs. Its exit status and its JSON summary (the last thing it
    prints; Ray may print its own lines before it)."""
    command = [str(Path(sys.executable).parent / "copyserve"), "batch", "run", *args,
               "--address", ray.get_runtime_context().gcs_address]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"copyserve batch run did not finish in {timeout_s}s (an operator waiting for a whole CPU?)")
    assert '{\n  "rows"' in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout[done.stdout.rindex('{\n  "rows"'):])


def test_a_catalogue_is_written_once_and_a_rerun_only_adds_new_rows(tmp_path, base_url, user_key, busy_ray):
    source, out = tmp_path / "catalogue.csv", tmp_path / "copy.jsonl"
    source.write_text("sku,product_name,keywords\nA-1,steel bottle,cold|light\nA-2,wool socks,warm\n"
                      "A-3,desk lamp,bright\n")
    status, summary = run_cli(args_for(source, out, base_url, user_key))
    assert status == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["A-1", "A-2", "A-3"]
    assert summary["written"] == 3 and summary["failed"] == 0 and summary["tokens"] > 0
    by_id = {r["id"]: r for r in rows}
    assert by_id["A-1"]["request"]["keywords"] == ["cold", "light"] and by_id["A-1"]["copy"]["industry"] == "finance"

    source.write_text(source.read_text() + "A-4,tea set,calm\n")
    status, summary = run_cli(args_for(source, out, base_url, user_key))
    assert status == 0 and summary["skipped_as_done"] == 3 and summary["written"] == 1
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["A-1", "A-2", "A-3", "A-4"]


def test_rows_the_service_refuses_are_reported_not_written(tmp_path, base_url, user_key):
    source, out = tmp_path / "bad.jsonl", tmp_path / "copy.jsonl"
    source.write_text(json.dumps({"sku": "B-1", "product_name": "x", "industry": "astrology"}) + "\n")
    status, summary = run_cli(args_for(source, out, base_url, user_key))
    assert status == 1 and summary["failed"] == 1 and "unknown industry" in summary["failures"][0]["reason"]
    assert out.read_text() == ""


def test_rows_are_written_as_they_are_answered_not_at_the_end(tmp_path, base_url, user_key, busy_ray):
    """What makes a stopped run resumable: the file grows while the run goes on (a catalogue read as one block
    must not come back as one block at the end)."""
    rows = 64
    source, out = tmp_path / "catalogue.csv", tmp_path / "copy.jsonl"
    source.write_text("sku,product_name,keywords\n" + "".join(f"C-{i},cushion {i},soft\n" for i in range(rows)))
    seen, done = [], threading.Event()  # (seconds, rows in the file)

    def watch():
        while not done.is_set():
            seen.append((time.monotonic(), len(out.read_text().splitlines()) if out.exists() else 0))
            done.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        status, summary = run_cli(args_for(source, out, base_url, user_key, batch_size=8))
    finally:
        done.set()
        watcher.join()
    assert status == 0 and summary["written"] == rows
    # Part of the catalogue stayed on disk while the rest was asked for: rows that came back in one piece at
    # the end would be written within milliseconds of each other.
    partial = [t for t, n in seen if 0 < n < rows]
    assert partial and max(partial) - min(partial) >= 1.0, seen
