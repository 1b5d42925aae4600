"""The whole adapter release loop against a running copyserve (``make serve`` first), timed step by step, with
steady traffic on the route throughout so every move is made under load:

    python bench/release_loop.py                 # ~6 minutes on a 2-core CPU box (two trainings of ~2 min)

1. train two versions of an adapter on the sample data (peft, seeds 0 and 1);
2. register the first as ``stable`` and the second as ``canary``;
3. point the industry's route at the adapter and shadow 50% of its traffic with ``@canary``;
4. send ``--requests`` answers through the route and read the evaluation (samples, shadowed pairs, win rate);
5. promote (stable := canary's version), then roll back; after each move, how long until an answer says the
   new version served it.

Prints each step's seconds, the traffic's outcome (requests, failures) and the evaluation, and writes them as JSON.
Needs admin rights: a service with auth off (``configs/local.yaml``) or ``--api-key`` (an admin key).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Traffic:
    """Two clients asking the route for copy until stopped; what each answer's adapter was, and failures."""

    def __init__(self, client: httpx.Client, industry: str):
        self.client, self.industry, self.stop = client, industry, threading.Event()
        self.served: Counter = Counter()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"industry": self.industry, "product": f"release loop lamp {worker}-{n}", "max_tokens": 24,
                    "cache": False}
            try:
                r = self.client.post("/v1/copy", json=body)
                if r.status_code == 200:
                    self.served[r.json()["adapter"]] += 1
                else:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))

    @property
    def total(self) -> int:
        return sum(self.served.values()) + len(self.failures)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)


def step(name: str, timings: dict):
    """A context that times one step of the loop and shows it on stderr."""
    class Step:
        def __enter__(self):
            print(f"[{len(timings) + 1}] {name} ...", file=sys.stderr, flush=True)
            self.started = time.monotonic()

        def __exit__(self, *exc):
            timings[name] = round(time.monotonic() - self.started, 2)
            print(f"    {timings[name]:.1f}s", file=sys.stderr, flush=True)
    return Step()


def train_versions(args) -> list[Path]:
    from contracts.config import models_home
    from finetune.config import TrainConfig
    from finetune.embedded_models import prepare
    from finetune.train import train

    base = prepare(models_home(), (args.base_model,))[args.base_model]
    folders = []
    for seed in (0, 1):
        out = ROOT / "adapters" / f"{args.name}-v{seed + 1}"
        train(TrainConfig(base_model=base, family=args.family, data=args.data, output=out, industry=args.industry,
                          rank=8, epochs=2, seed=seed), progress=True)
        folders.append(out)
    return folders


def served_by(client: httpx.Client, industry: str, tag: str, timeout_s: float = 30) -> float:
    """Seconds until an answer on the route says ``tag`` served it."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        r = client.post("/v1/copy", json={"industry": industry, "product": "visibility probe", "max_tokens": 2,
                                          "cache": False})
        if r.status_code == 200 and r.json()["adapter"] == tag:
            return round(time.monotonic() - started, 2)
    raise RuntimeError(f"no answer from {tag} within {timeout_s}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", help="an admin key, where the service has auth on")
    p.add_argument("--name", default="release-loop")
    p.add_argument("--industry", default="ecommerce")
    p.add_argument("--base-model", default="smollm2-135m-instruct", help="an embedded model the service serves")
    p.add_argument("--family", default="llama")
    p.add_argument("--data", type=Path, default=ROOT / "finetune" / "samples" / "ecommerce_en.csv")
    p.add_argument("--requests", type=int, default=40, help="answers through the shadowed route")
    p.add_argument("--out", type=Path, default=Path("/tmp/copyserve-release-loop.json"))
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timings: dict[str, float] = {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as client:
        with step("train two versions", timings):
            v1_path, v2_path = train_versions(args)
        with step("register v1 (stable) and v2 (canary)", timings):
            versions = []
            for path, alias in ((v1_path, "stable"), (v2_path, "canary")):
                r = client.post("/v1/adapters", json={"name": args.name, "base_model": args.base_model,
                                                      "path": str(path), "alias": alias})
                r.raise_for_status()
                versions.append(r.json()["version"])
        v1, v2 = versions
        route = {"model": args.base_model, "adapter": args.name,
                 "shadow": {"adapter": f"{args.name}@canary", "share": 0.5}}
        client.put(f"/v1/routes/{args.industry}", json=route).raise_for_status()
        try:
            with Traffic(client, args.industry) as traffic:
                with step(f"{args.requests} answers with 50% shadowed", timings):
                    while traffic.total < args.requests:
                        time.sleep(0.5)
                with step("read the evaluation", timings):
                    time.sleep(3)  # the last shadows finish after their answers
                    evaluation = client.get(f"/v1/adapters/{args.name}/evaluation").json()
                why = {"reason": "release loop"}
                with step("promote", timings):
                    client.post(f"/v1/adapters/{args.name}/promote", json=why).raise_for_status()
                timings["promote visible after"] = served_by(client, args.industry, f"{args.name}@v{v2}")
                with step("roll back", timings):
                    client.post(f"/v1/adapters/{args.name}/rollback", json=why).raise_for_status()
                timings["rollback visible after"] = served_by(client, args.industry, f"{args.name}@v{v1}")
        finally:
            client.delete(f"/v1/routes/{args.industry}")
    canary = next(v for v in evaluation["versions"] if v["version"] == v2)
    result = {"timings_s": timings, "requests": traffic.total, "failed": len(traffic.failures),
              "failures": traffic.failures[:5], "served": dict(traffic.served),
              "canary": {"samples": canary["samples"], "shadow_samples": canary["shadow_samples"],
                         "win_rate": evaluation["compare"].get("canary_vs_stable", {}).get("win_rate")}}
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| step | seconds |\n| --- | --- |")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"\ntraffic: {result['requests']} requests, {result['failed']} failed; served {result['served']}")
    print(f"canary v{v2}: {canary['samples']} answers ({canary['shadow_samples']} shadowed), win rate against "
          f"stable: {json.dumps(result['canary']['win_rate'])}")
    print(f"(written to {args.out})")
    return 1 if traffic.failures else 0


if __name__ == "__main__":
    sys.exit(main())
