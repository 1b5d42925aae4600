"""The web studio in headless Chromium (Debian's `chromium`, driven by Playwright) against the real
app: generate with streaming, sentiment and edits, history, revise, themes, phone width, errors.
Screenshots of the run go to a temporary folder; `COPYSERVE_SCREENSHOTS=web/screenshots` refreshes the
ones the README links (a plain test run leaves the checkout as it was)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

SCREENSHOTS = Path(os.environ.get("COPYSERVE_SCREENSHOTS") or tempfile.mkdtemp(prefix="copyserve-screenshots-"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/setup.sh installs it (apt-get chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url, user_key):
    # Playwright's string predicates (wait_for_function) run through eval, which the page's CSP refuses:
    # the functional tests drive the page with CSP bypassed; test_the_page_loads_only_from_its_origin checks it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = context.new_page()
    page.goto(base_url + "/")
    page.fill("#api-key", user_key)
    page.press("#api-key", "Tab")  # change event: the key is saved and the routes load
    page.wait_for_function("document.querySelectorAll('#industry option').length >= 3")
    yield page
    context.close()


def wait_done(page, timeout_ms: int = 120_000):
    page.wait_for_function("['done', 'error', 'stopped'].includes(document.getElementById('state').dataset.state)",
                           timeout=timeout_ms)
    assert page.get_attribute("#state", "data-state") == "done", page.inner_text("#message")


def test_write_stream_history_revise_and_themes(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.select_option("#industry", "ecommerce")
    assert "电商" in page.inner_text("#industry")  # English and Chinese labels
    page.fill("#product", "insulated steel water bottle")
    for word in ("leak-proof", "keeps drinks cold"):
        page.fill("#keyword-input", word)
        page.press("#keyword-input", "Enter")
    assert page.locator(".chip").count() == 2
    page.select_option("#length", "short")
    # Text shows while the request is still streaming, before the final event: recorded by the page itself at
    # each change of the text (polling at animation frames can miss a stream on a busy 2-core box).
    page.evaluate("""() => {
        const t = document.getElementById('copy-text'), seen = window.__streamed = {text: null, done: null};
        new MutationObserver(() => {
            const state = t.dataset.state, now = performance.now();
            if (state === 'streaming' && t.textContent.trim() && seen.text === null) seen.text = now;
            if (state === 'done' && seen.done === null) seen.done = now;
        }).observe(t, {childList: true, subtree: true, characterData: true, attributes: true});
    }""")
    page.click("#generate")
    wait_done(page)
    streamed = page.evaluate("window.__streamed")
    assert streamed["text"] is not None and streamed["done"] - streamed["text"] > 100, streamed
    text = page.inner_text("#copy-text")
    assert len(text.split()) >= 3
    assert re.fullmatch(r"sentiment: (positive|neutral|negative) \d\.\d\d", page.inner_text("#sentiment"))
    assert "smollm2-135m-instruct" in page.inner_text("#served")
    assert re.fullmatch(r"\(\d+\)", page.inner_text("#edit-count"))
    ttft_ms = int(page.get_attribute("#ttft", "data-ms"))
    assert 0 < ttft_ms < 60_000
    print(f"\n[web] time to first streamed token, measured by the page: {ttft_ms} ms")
    page.click("#edits summary")
    page.screenshot(path=SCREENSHOTS / "studio-light.png", full_page=True)

    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 21, 27)"
    page.screenshot(path=SCREENSHOTS / "studio-dark.png", full_page=True)

    page.click("#copy-button")
    assert page.evaluate("navigator.clipboard.readText()") == page.evaluate(
        "JSON.parse(localStorage.getItem('copyserve.history'))[0].response.text")

    # Revise as a follow-up turn of the same session.
    page.click("button[data-instruction='Make it shorter.']")
    wait_done(page)

    # History survives a reload, in newest-first order; reopening shows the copy again.
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"  # the theme is remembered
    page.click("#tab-history")
    entries = page.locator("#history-list button")
    assert entries.count() == 2 and "revised: Make it shorter." in entries.nth(0).inner_text()
    entries.nth(1).click()
    assert page.inner_text("#state") == "From history"
    assert page.inner_text("#copy-text").strip() == text.strip()
    assert page.input_value("#product") == "insulated steel water bottle"


def test_phone_width_templates_and_keyboard(page):
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing overflows sideways
    page.select_option("#industry", "ecommerce")
    page.locator("#template-list button").first.click()  # one click fills the form from the template file
    assert page.input_value("#product") == "Wireless noise-cancelling headphones"
    assert page.locator(".chip").count() == 3
    page.select_option("#length", "short")
    page.focus("#product")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("document.getElementById('state').dataset.state === 'streaming'")
    page.keyboard.press("Escape")  # stops (aborts the request)
    page.wait_for_function("document.getElementById('state').dataset.state !== 'streaming'")
    assert page.get_attribute("#state", "data-state") in ("stopped", "done")
    page.screenshot(path=SCREENSHOTS / "studio-phone.png", full_page=True)


SAMPLES = ["Trail shoes", "双11 sale", "淘宝ABC", "Hello 世界", "café – now", "a" * 161, "€" * 81, "短" * 71,
           "Sale! 🎉"]


def test_a_channel_copy_shows_its_placement_with_counters(page):
    page.wait_for_function("document.querySelectorAll('#channel option').length > 5")
    page.select_option("#industry", "ecommerce")
    page.select_option("#channel", "google-rsa")
    page.select_option("#language", "en")
    page.fill("#product", "insulated steel water bottle")
    # The placement fills in as the fields are written, before the final event: recorded by the page itself.
    page.evaluate("""() => {
        const p = document.getElementById('placement'), s = document.getElementById('state');
        const seen = window.__placement = {live: null, done: null};
        new MutationObserver(() => {
            if (s.dataset.state === 'streaming' && !p.hidden && p.querySelector('.slot') && seen.live === null) {
                seen.live = p.querySelectorAll('.slot').length;
            }
        }).observe(p, {childList: true, subtree: true, attributes: true});
    }""")
    page.click("#generate")
    wait_done(page)
    assert page.evaluate("window.__placement.live") is not None, "no field was shown while the copy streamed"
    slots = page.locator("#placement .slot")
    assert page.get_attribute("#placement", "data-channel") == "google-rsa" and slots.count() == 5  # 3 + 2
    # Above the slots, the copy as the search ad shows it: headlines joined by "|", as Google renders them.
    card = page.locator("#placement .card[data-card='google-rsa']")
    headlines = [t.inner_text() for t in page.locator("#placement .slot-text").all()[:3]]
    assert card.count() == 1 and " | ".join(h for h in headlines if h) in card.inner_text()
    for counter in page.locator("#placement .counter").all():
        used, limit = map(int, re.match(r"(\d+) / (\d+) width", counter.inner_text()).groups())
        assert used <= limit and counter.get_attribute("data-state") == ("full" if used == limit else "ok")
    page.screenshot(path=SCREENSHOTS / "studio-channel.png", full_page=True)
    # The page counts each unit the way the server (and the platform) does.
    from deployments.text.channels import measure

    for unit in ("characters", "width", "gbk_bytes", "x_weighted", "sms_segments"):
        counted = page.evaluate(f"(async () => {{ const m = await import('/web/studio.js'); "
                                f"return {SAMPLES!r}.map((t) => m.measure(t, {unit!r})); }})()")
        assert counted == [measure(t, unit) for t in SAMPLES], unit


def test_api_errors_read_as_sentences(page, user_key):
    page.fill("#product", "")
    page.click("#generate")
    assert "write the product" in page.inner_text("#message")
    page.fill("#api-key", "not-a-key")
    page.press("#api-key", "Tab")
    page.wait_for_selector("#message:not([hidden])")
    page.wait_for_function("document.getElementById('message').textContent.includes('API key')")
    assert page.inner_text("#message").startswith("Your API key was not accepted")
    page.fill("#api-key", user_key)
    page.press("#api-key", "Tab")
    page.wait_for_selector("#message", state="hidden")
    # A page older than the route table: the service's 4xx names the industries it knows.
    page.evaluate("document.getElementById('industry').append(new Option('Cars', 'cars'))")
    page.select_option("#industry", "cars")
    page.fill("#product", "electric hatchback")
    page.click("#generate")
    page.wait_for_selector("#message:not([hidden])")
    message = page.inner_text("#message")
    assert re.match(r"(Not found|The request needs fixing): .*ecommerce", message), message
    assert "request id" not in message and page.get_attribute("#state", "data-state") == "error"
    page.click("#tab-admin")  # the admin tab with a user key: the service says why not
    page.wait_for_function("document.getElementById('message').textContent.startsWith('Not allowed with this key')")


def test_the_page_loads_only_from_its_origin(browser, base_url, user_key):
    """CSP: the studio's own scripts run (theme, app) with no violation; a remote image (a beacon in model
    Markdown) is refused; the page cannot be framed. The API key stays in this tab (sessionStorage)."""
    headers = httpx.get(base_url + "/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    context = browser.new_context()
    page = context.new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(base_url + "/")
    page.fill("#api-key", user_key)
    page.press("#api-key", "Tab")
    page.wait_for_selector("#industry option:nth-child(3)", state="attached")  # no eval: the CSP is on
    assert page.evaluate("document.documentElement.dataset.theme") in ("light", "dark")
    assert violations == []
    blocked = page.evaluate("""() => new Promise(resolve => {
        document.addEventListener("securitypolicyviolation", e => resolve(e.blockedURI), {once: true});
        document.body.insertAdjacentHTML("beforeend", '<img src="http://127.0.0.1:9/beacon.png">');
        setTimeout(() => resolve(null), 5000);
    })""")
    assert blocked and "beacon.png" in blocked
    assert page.evaluate("sessionStorage.getItem('copyserve.apiKey')") == user_key
    assert page.evaluate("localStorage.getItem('copyserve.apiKey')") is None
    context.close()


def test_a_catalogue_runs_as_a_batch_from_the_batches_tab(page, tmp_path):
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text('sku,product_name,keywords\nT-1,"green tea, loose leaf",calm|fresh\nT-2,tea kettle,fast\n')
    page.click("#tab-batches")
    page.select_option("#batch-industry", "finance")
    page.set_input_files("#batch-file", str(catalogue))
    page.click("#batch-start")
    row = page.locator("#batches tbody tr", has_text="catalogue.csv").first
    row.wait_for(timeout=30_000)
    page.wait_for_function("[...document.querySelectorAll('#batches tbody tr')].some((r) => "
                           "r.textContent.includes('catalogue.csv') && r.cells[1].textContent === 'completed')",
                           timeout=180_000)
    assert "2/2" in row.inner_text()
    with page.expect_download() as download:
        row.get_by_role("button", name="Results").click()
    lines = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["T-1", "T-2"]
    assert all(line["response"]["body"]["industry"] == "finance" for line in lines)
    # The CSV's quoted comma stayed inside its field: the page sends the product as one value.
    sent = page.evaluate("(async () => { const m = await import('/web/batches.js'); "
                         "return m.parseCsv('a,b\\n\"x, y\",\"say \"\"hi\"\"\"\\n'); })()")
    assert sent == [{"a": "x, y", "b": 'say "hi"'}]


def test_the_admin_tab_shows_releases_and_promotes_the_canary(page, admin, trained):
    for path, alias in ((trained["v1"], "stable"), (trained["v2"], "canary")):
        r = admin.post("/v1/adapters", json={"name": "studio-rel", "base_model": "tiny-qwen3", "path": str(path),
                                             "alias": alias})
        assert r.status_code == 201, r.text
    versions = [v["version"] for v in admin.get("/v1/adapters/studio-rel").json()["versions"]]
    page.fill("#api-key", admin.headers["authorization"].removeprefix("Bearer "))
    page.press("#api-key", "Tab")
    page.click("#tab-admin")
    row = page.locator("#adapters tbody tr", has_text="studio-rel").first
    row.wait_for(timeout=30_000)
    first, second = versions
    assert f"v{first} stable · v{second} canary" in row.inner_text()
    assert f"v{second}: no answers yet" in row.inner_text()
    row.get_by_role("button", name="promote canary of studio-rel").click()
    # This adapter's row: other tests' adapters may show the same versions and aliases.
    page.wait_for_function("[...document.querySelectorAll('#adapters tbody tr')].some((r) => "
                           "r.textContent.includes('studio-rel') && "
                           f"r.textContent.includes('v{first} · v{second} canary stable'))")
    history = admin.get("/v1/adapters/studio-rel/history").json()["data"][0]
    assert (history["action"], history["to"], history["reason"]) == ("promote", second, "from the studio")
    # The canary's line, from an evaluation as the service answers it.
    line = page.evaluate("""(async () => { const m = await import('/web/releases.js');
        return m.canaryText({aliases: {stable: 1, canary: 2}}, {versions: [{version: 2, samples: 40,
          shadow_samples: 30, error_rate: {mean: 0.025}, metrics: {sentiment: {mean: 0.71}}}],
          compare: {canary_vs_stable: {win_rate: {wins: 12, losses: 8, ties: 10, rate: 0.6}}}}); })()""")
    assert line == "v2: 40 answers, 30 shadowed, errors 2.5%, sentiment 0.71, win rate 60.0% (12–8, 10 ties)"
    assert admin.delete("/v1/adapters/studio-rel").status_code == 200
