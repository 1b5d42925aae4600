"""Time to first streamed token as the web studio measures it, in headless Chromium (Debian's
`chromium`, driven by Playwright) against a running copyserve (``make serve`` first).

    python bench/studio.py --runs 10

After one warm-up run, each run fills the form, clicks Generate and reads the page's own measurement (click to first
delta on screen), then the total time until the final event.
"""

from __future__ import annotations

import argparse
import shutil
import time
import uuid

from playwright.sync_api import sync_playwright
from stats import percentile, show


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--api-key", default="")
    p.add_argument("--industry", default="ecommerce")
    args = p.parse_args()
    ttft, total = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(args.url + "/")
        if args.api_key:
            page.fill("#api-key", args.api_key)
            page.press("#api-key", "Tab")
        page.wait_for_function("document.querySelectorAll('#industry option').length > 0")
        page.select_option("#industry", args.industry)
        page.select_option("#length", "short")
        for i in range(-1, args.runs):  # run -1 warms the page, the proxy and the engine; it is not counted
            page.fill("#product", f"insulated water bottle {uuid.uuid4().hex[:6]}")
            started = time.perf_counter()
            page.click("#generate")
            page.wait_for_function("['done', 'error'].includes(document.getElementById('state').dataset.state)",
                                   timeout=300_000)
            elapsed = (time.perf_counter() - started) * 1000
            if page.get_attribute("#state", "data-state") != "done":
                raise SystemExit(f"run {i} failed: {page.inner_text('#message')}")
            if i < 0:
                continue
            total.append(elapsed)
            ttft.append(float(page.get_attribute("#ttft", "data-ms")))
            print(f"[studio] run {i + 1}/{args.runs}: first token {ttft[-1]:.0f} ms, done {total[-1]:.0f} ms",
                  flush=True)
        browser.close()
    print(f"page-measured time to first token: p50 {show(percentile(ttft, 0.5), '.0f')}, "
          f"p95 {show(percentile(ttft, 0.95), '.0f')}; click to final: p50 {show(percentile(total, 0.5), '.0f')} "
          f"({args.runs} runs after one warm-up; a p95 needs 20)")


if __name__ == "__main__":
    main()
