"""A plain (non-editable) install carries the studio: the wheel holds every asset the page loads,
and the ingress finds them under the install prefix when there is no checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from serve_app.api_app import web_dir

ROOT = Path(__file__).resolve().parents[2]
DATA = "copyserve-0.1.0.data/data/share/copyserve/web/"


def page_assets() -> set[str]:
    """Files the studio loads: index.html's links and scripts, and the modules studio.js imports."""
    html = (ROOT / "web/index.html").read_text()
    js = (ROOT / "web/studio.js").read_text()
    linked = {p.removeprefix("web/") for p in re.findall(r'(?:src|href)="(web/[^"]+)"', html)}
    imported = {p.removeprefix("./") for p in re.findall(r'from "(\./[^"]+)"', js)}
    return {"index.html"} | linked | imported


def test_the_wheel_carries_every_studio_asset(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("copyserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vendor/marked.esm.js", "vendor/purify.es.js", "studio.css"} <= page_assets()
    assert {DATA + asset for asset in page_assets()} <= names
    assert "serve_app/api_app.py" in names and not any("/screenshots/" in n for n in names)


def test_the_checkout_wins_and_an_install_prefix_is_the_fallback(tmp_path):
    assert web_dir(ROOT, "/nowhere") == ROOT / "web"
    assert web_dir(tmp_path, str(tmp_path / "venv")) == tmp_path / "venv/share/copyserve/web"
