"""Small helpers the integration tests share."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dataset(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A finetune CSV: product_name, keywords ("a|b"), copy_text."""
    path.write_text("product_name,keywords,copy_text\n" + "".join(f'{p},"{k}",{c}\n' for p, k, c in rows))
    return path


def wait_for(predicate, timeout_s: float, every_s: float = 0.5):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout_s`` passes (None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return None


def scrape(app_config) -> dict[str, list]:
    text = httpx.get(f"http://127.0.0.1:{app_config.server.metrics_port}/metrics", timeout=10).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def total(families: dict, name: str, **labels) -> float:
    """A counter's value, or a histogram's count, over the samples whose labels include ``labels``
    (summed over replicas and workers)."""
    return sum(s.value for s in families.get(name, [])
               if s.name in (f"{name}_total", f"{name}_count") and all(s.labels.get(k) == v for k, v in labels.items()))


class SteadyLoad:
    """Clients asking ``/v1/copy`` for whole answers and streams (alternately), until stopped; outcomes by
    kind. ``body`` is one request body, or a function of the request's number that makes one. ``pause_s``
    between a client's requests leaves CPU to what the test waits for (a replica starting on 2 shared cores)."""

    def __init__(self, client: httpx.Client, body, clients: int = 4, pause_s: float = 0.0):
        self.client, self.stop, self.pause_s = client, threading.Event(), pause_s
        self.body = body if callable(body) else (lambda _: body)
        self.outcomes: Counter = Counter()
        self.failures: list[str] = []
        self.failed_from: list[float] = []  # when each failed request was sent (time.monotonic())
        self.answers: list[dict] = []  # every whole answer: its body, the answer and its X-Cache
        self._sent = 0
        self.workers = [threading.Thread(target=self._run, args=(i % 2 == 1,)) for i in range(clients)]

    def _next_body(self) -> dict:
        self._sent += 1
        return self.body(self._sent)

    def _run(self, stream: bool) -> None:
        kind = "stream" if stream else "whole"
        while not self.stop.is_set():
            body, sent = self._next_body(), time.monotonic()
            try:
                if stream:
                    with self.client.stream("POST", "/v1/copy", json={**body, "stream": True}) as r:
                        text = "".join(r.iter_text())
                    types = [json.loads(line[6:]).get("type") for line in text.splitlines()
                             if line.startswith("data: ")]
                    ok = r.status_code == 200 and "final" in types and "error" not in types
                    detail = text[-300:]
                else:
                    r = self.client.post("/v1/copy", json=body)
                    ok, detail = r.status_code == 200, r.text[:300]
                    if ok:
                        self.answers.append({"body": body, "answer": r.json(), "x_cache": r.headers.get("x-cache")})
            except Exception as exc:  # a hang or a dropped connection is a failure too
                ok, detail = False, repr(exc)
            self.outcomes[(kind, ok)] += 1
            if not ok:
                self.failures.append(f"{kind}: {detail}")
                self.failed_from.append(sent)
            self.stop.wait(self.pause_s)

    def __enter__(self):
        for w in self.workers:
            w.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for w in self.workers:
            w.join(timeout=120)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def failed(self, kind: str) -> int:
        return self.outcomes[(kind, False)]

    def grows_by(self, n: int, timeout_s: float) -> bool:
        """Wait until ``n`` more requests have finished (True), or ``timeout_s`` passes (False)."""
        target = self.total + n
        return bool(wait_for(lambda: self.total >= target, timeout_s, every_s=0.2))
