"""The admin web page: server-rendered (Jinja2), made live by one small script."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from orchestrator.web import account, live, pages

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(account.router)
    app.include_router(live.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="web-static")
