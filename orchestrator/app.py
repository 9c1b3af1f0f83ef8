"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import metrics, web
from orchestrator.api import (
    admin,
    auth,
    bundles,
    checkpoints,
    experiments,
    groups,
    logs,
    platforms,
    secrets,
    store,
    tokens,
    workers,
)
from orchestrator.errors import ANY_ROUTE, Invalid, install_error_handler
from orchestrator.migrate import ensure_schema
from orchestrator.presence import Presence
from orchestrator.runtime import Runtime
from orchestrator.services.maintenance import reconcile
from orchestrator.settings import Settings
from orchestrator.storage.signing import STORE_PATH
from orchestrator.wakeup import Wakeup, WakeupListener

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
# Uploads that stream to disk and enforce a cap of their own (BATON_BUNDLE_MAX_MB)...
OWN_BODY_CAP = ("/api/v1/bundles",)
# ... and the blob store, whose signed URLs bound each body (a declared size).
OWN_BODY_CAP_PREFIXES = (f"{STORE_PATH}/",)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            # loc is ("body", <character offset>): the offset is not a field name.
            parts.append(f"body: malformed JSON ({error.get('msg')} at character {loc[-1]})")
            continue
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
        parts.append(f"{field or 'body'}: {error.get('msg')}")
    return "; ".join(parts)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    error = Invalid(_validation_message(errors), errors=errors)
    return JSONResponse(
        {"detail": error.message, "code": error.code, "errors": errors}, status_code=422
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database did not answer: 503 (worth a retry), and this instance stops vouching for
    heartbeats until its presence check finds the database again (orchestrator/presence.py)."""
    log.warning("database unavailable: %s", exc)
    presence: Presence | None = getattr(request.app.state, "presence", None)
    if presence is not None:
        presence.outage()
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly", "code": "unavailable"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


class LimitBody:
    """413 for a body over MAX_BODY_BYTES (except uploads with a cap of their own).

    A declared length is checked before a byte is read (the server holds the body to it). A
    body without one (``Transfer-Encoding: chunked``) is read here, counted as it arrives, and
    handed on only once it is whole and within the limit.

    Plain ASGI on purpose: behind a BaseHTTPMiddleware (``@app.middleware("http")``),
    ``request.is_disconnected()`` never turns true, so a long-polling claim whose worker hung
    up would still take an experiment and lose it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path or path in OWN_BODY_CAP or path.startswith(OWN_BODY_CAP_PREFIXES):
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                await _too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was whole: no one to answer
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES:
                await _too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    mib = MAX_BODY_BYTES // (1024 * 1024)
    response = JSONResponse(
        {"detail": f"request body over {mib} MiB ({MAX_BODY_BYTES} bytes)", "code": "too_large"},
        status_code=413,
    )
    await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands over ``body`` whole first, then what the server sends next
    (a disconnect, which long polls watch for)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.from_settings(settings)
        ensure_schema(runtime.engine, auto_migrate=settings.auto_migrate)
        presence = Presence(runtime.dispatcher, runtime.engine)
        presence.announce()
        # Rebuild Redis from the database: it may have restarted empty while we were down.
        reconcile(runtime)
        wakeup = Wakeup(asyncio.get_running_loop())
        listener = WakeupListener(runtime.redis, wakeup)
        presence.start()
        listener.start()
        app.state.runtime = runtime
        app.state.wakeup = wakeup
        app.state.presence = presence
        try:
            yield
        finally:
            for thread in (listener, presence):
                thread.stop()
            for thread in (listener, presence):
                thread.join(timeout=5)
            runtime.close()

    app = FastAPI(
        title="Baton",
        version="0.1.0",
        summary="One job queue over the free GPU tiers you already have.",
        lifespan=lifespan,
    )
    install_error_handler(app)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(OperationalError, _on_database_error)

    app.add_middleware(LimitBody)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for module in (
        auth,
        experiments,
        groups,
        workers,
        checkpoints,
        store,
        admin,
        tokens,
        secrets,
        logs,
        platforms,
        bundles,
    ):
        app.include_router(module.router, responses=ANY_ROUTE)
    metrics.install(app)
    web.install(app)
    return app
