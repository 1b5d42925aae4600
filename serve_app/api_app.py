"""The FastAPI app under the Serve ingress: error handlers, request context, the studio's assets.
Route handlers live on the ingress (``ingress.py``) and its admin mixin (``admin_api.py``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serve_app.http import RequestContextMiddleware, install_error_handlers

WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the studio page: plain HTML/JS, no build step

app = FastAPI(title="copyserve", version="0.1.0", description="Copywriting on Ray Serve and vLLM")
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)
app.mount("/web", StaticFiles(directory=WEB_DIR, check_dir=False), name="web")
