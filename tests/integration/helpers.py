"""Small helpers the integration tests share."""

from __future__ import annotations

import socket
import time
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
