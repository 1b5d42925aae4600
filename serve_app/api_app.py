"""The FastAPI app under the Serve ingress: error handlers, request context, the studio's assets.
Route handlers live on the ingress (``ingress.py``) and its admin mixin (``admin_api.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serve_app.http import RequestContextMiddleware, install_error_handlers

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def web_dir(source_root: Path = SOURCE_ROOT, prefix: str = sys.prefix) -> Path:
    """The studio page (plain HTML/JS, no build step): the checkout's web/ in an editable install,
    else the copy a wheel installs under <prefix>/share/copyserve/web (pyproject data-files)."""
    checkout = source_root / "web"
    return checkout if (checkout / "index.html").is_file() else Path(prefix) / "share" / "copyserve" / "web"


WEB_DIR = web_dir()

app = FastAPI(title="copyserve", version="0.1.0", description="Copywriting on Ray Serve and vLLM")
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)
app.mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web")
