"""How long a full garbage collection stops a model replica, with and without its start-up heap frozen.

    python bench/gc_pause.py        # ~1 minute: imports what a model replica holds, then times collections

A model replica's process holds Ray, Serve, torch, transformers and vLLM. Python's oldest-generation
collection walks every tracked object, and every stream the replica serves waits meanwhile. Replicas call
``contracts.process.freeze_startup_heap`` once started (as vLLM's API server does); this prints the pause
of a full collection before and after that call, and how many objects it walks.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pause_ms(rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    print("importing what a model replica holds (ray.serve, vllm, torch, transformers) ...", file=sys.stderr)
    import ray.serve  # noqa: F401
    import transformers  # noqa: F401
    from vllm.v1.engine.async_llm import AsyncLLM  # noqa: F401

    import deployments.model_server  # noqa: F401
    from contracts.process import freeze_startup_heap

    gc.collect()
    tracked = len(gc.get_objects())
    before = pause_ms()
    freeze_startup_heap()
    after = pause_ms()
    print(f"objects tracked after start-up: {tracked:,}")
    print(f"full collection pause p50: {before:.1f} ms before the freeze, {after:.2f} ms after "
          f"({gc.get_freeze_count():,} objects frozen)")


if __name__ == "__main__":
    main()
