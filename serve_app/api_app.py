"""The FastAPI app under the Serve ingress: error handlers, request context, the studio's assets.
Route handlers live on the ingress's mixins, one APIRouter per family carrying who may call it (``access.py``),
included on this app in ``ingress.py``."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serve_app.http import RequestContextMiddleware, install_error_handlers

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def web_dir(source_root: Path = SOURCE_ROOT, data_roots: tuple[str, ...] | None = None) -> Path:
    """The studio page (plain HTML/JS, no build step): the checkout's web/ in an editable install,
    else the copy a wheel installs under <data root>/share/copyserve/web (pyproject data-files):
    the environment's prefix, or the user's for `pip install --user`."""
    checkout = source_root / "web"
    if (checkout / "index.html").is_file():
        return checkout
    roots = data_roots or (sys.prefix, sysconfig.get_path("data", f"{os.name}_user"))
    installed = [Path(root) / "share" / "copyserve" / "web" for root in roots]
    return next((path for path in installed if (path / "index.html").is_file()), installed[0])


WEB_DIR = web_dir()
# The studio page: scripts, styles and requests to this origin only; images also inline (data:), so model
# Markdown cannot load a remote image (a beacon); no framing (clickjacking), no plugins.
STUDIO_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# /openapi.json and /docs are the ingress's own routes: with API keys on, they may need one.
app = FastAPI(title="copyserve", version="0.1.0", description="Copywriting on Ray Serve and vLLM",
              openapi_url=None, docs_url=None, redoc_url=None)
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)
app.mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web")
