"""Cookie-session dependencies, CSRF checking and page rendering for the web UI."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from orchestrator.api.deps import RuntimeDep
from orchestrator.db import read_session
from orchestrator.errors import BatonError, Forbidden, NotAuthenticated
from orchestrator.models import User
from orchestrator.web import fmt
from orchestrator.web import session as web_session
from orchestrator.web.session import WebSession

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(fmt.FILTERS)

FLASH_COOKIE = "baton_flash"
# Scripts, styles and requests from this origin only; no inline code anywhere in the pages.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


async def get_web_session(request: Request, runtime: RuntimeDep) -> WebSession | None:
    # async: an HMAC check, nothing that blocks (a sync dependency waits for a thread).
    return web_session.decode(runtime.settings, request.cookies.get(web_session.COOKIE))


WebSessionDep = Annotated[WebSession | None, Depends(get_web_session)]


def get_web_user(request: Request, runtime: RuntimeDep, current: WebSessionDep) -> User:
    if current is None or current.user_id is None:
        raise NotAuthenticated("log in first")
    with read_session(runtime.engine) as session:  # its own, like the API's (api/deps.py)
        user = session.get(User, current.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("user not found or disabled")
    request.state.web_session = current
    request.state.web_user = user
    return user


WebUser = Annotated[User, Depends(get_web_user)]


def get_web_admin(user: WebUser) -> User:
    if not user.is_admin:
        raise Forbidden("admins only")
    return user


WebAdmin = Annotated[User, Depends(get_web_admin)]


async def check_csrf(
    runtime: RuntimeDep, current: WebSessionDep, csrf: Annotated[str, Form()] = ""
) -> None:
    """Every form POST carries the session's CSRF token, or it is refused with 403."""
    if not web_session.csrf_ok(runtime.settings, current, csrf):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


CsrfChecked = Depends(check_csrf)


def flash(response: Response, message: str) -> None:
    """A one-time message for the next page (after a POST-redirect-GET)."""
    response.set_cookie(
        FLASH_COOKIE,
        quote(message),
        max_age=60,
        path=web_session.COOKIE_PATH,
        httponly=True,
        samesite="lax",
    )


def redirect(path: str, message: str | None = None) -> RedirectResponse:
    response = RedirectResponse(path, status_code=303)
    if message:
        flash(response, message)
    return response


def context(request: Request, user: User | None, **values: Any) -> dict[str, Any]:
    """What every template gets: the viewer, their CSRF token, the flash message."""
    current: WebSession | None = getattr(request.state, "web_session", None)
    runtime = request.app.state.runtime
    return {
        "user": user,
        "csrf": web_session.csrf_token(runtime.settings, current) if current else "",
        "flash": unquote(request.cookies.get(FLASH_COOKIE, "")),
        **values,
    }


def render(
    request: Request, name: str, ctx: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=web_session.COOKIE_PATH)
    # Pages show per-user data: never from a shared cache, never framed by another site.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    return response


def render_fragment(name: str, ctx: dict[str, Any]) -> str:
    return templates.get_template(name).render(ctx)


class PageRoute(APIRoute):
    """Routes that answer with HTML: errors become a page, a missing login the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except NotAuthenticated:
                target = request.url.path if request.method == "GET" else "/ui"
                return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)
            except BatonError as exc:
                user = getattr(request.state, "web_user", None)
                ctx = context(request, user, status_code=exc.status_code, message=exc.message)
                # Rendering reads templates from disk: not on the event loop.
                return await run_in_threadpool(
                    render, request, "error.html", ctx, status_code=exc.status_code
                )

        return page_handler
