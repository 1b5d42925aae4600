"""A plain (non-editable) install carries the studio: the wheel holds every asset the page loads,
and the ingress finds them under the install prefix when there is no checkout."""

from __future__ import annotations

import re
import shutil
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
    # From a copy of the tracked files: a build in the checkout would reuse (and leave) its build/ folder.
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("copyserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"vendor/marked.esm.js", "vendor/purify.es.js", "studio.css"} <= page_assets()
    assert {DATA + asset for asset in page_assets()} <= names
    assert "serve_app/api_app.py" in names and not any("/screenshots/" in n for n in names)


def test_the_checkout_wins_then_the_install_that_has_the_page(tmp_path):
    venv, user = tmp_path / "venv", tmp_path / "user"
    assert web_dir(ROOT, (str(venv), str(user))) == ROOT / "web"
    assert web_dir(tmp_path, (str(venv), str(user))) == venv / "share/copyserve/web"  # nothing installed yet
    (user / "share/copyserve/web").mkdir(parents=True)
    (user / "share/copyserve/web/index.html").write_text("<!doctype html>")
    assert web_dir(tmp_path, (str(venv), str(user))) == user / "share/copyserve/web"  # pip install --user
