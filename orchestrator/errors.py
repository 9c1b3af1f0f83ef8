"""One error family for the control plane, turned into HTTP responses by one handler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException


class BatonError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        keep_changes: bool = False,
        **extra: Any,
    ):
        super().__init__(message)
        self.message = message
        self.headers = headers
        # The request's unit of work commits what it recorded, and the refusal still stands.
        self.keep_changes = keep_changes
        self.extra = extra


class NotAuthenticated(BatonError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "not authenticated", **extra: Any):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(BatonError):
    status_code = 403
    code = "forbidden"


class NotFound(BatonError):
    status_code = 404
    code = "not_found"


class Conflict(BatonError):
    status_code = 409
    code = "conflict"


class StaleLease(Conflict):
    """A lease token that is no longer the experiment's current one."""

    code = "stale_lease"


class TooLarge(BatonError):
    status_code = 413
    code = "too_large"


class Gone(BatonError):
    status_code = 410
    code = "gone"


class Invalid(BatonError):
    status_code = 422
    code = "invalid"


class TooManyRequests(BatonError):
    """Throttled: ``retry_after`` seconds until the caller may try again (also a header)."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(
            message, headers={"Retry-After": str(retry_after)}, retry_after=retry_after
        )
        self.retry_after = retry_after


class ErrorOut(BaseModel):
    """Every error reply: a sentence for people, a code for programs, and per-error extras
    (``errors`` for a 422's fields, ``outcome`` for a stale lease's attempt)."""

    model_config = ConfigDict(extra="allow")

    detail: str
    code: str


_MEANING = {
    400: "the body could not be parsed (JSON must be UTF-8)",
    401: "no credentials, or unknown, expired or revoked ones",
    403: "the credentials do not allow this (a user's token on the worker API, the other way "
    "round, or a user who is not an admin)",
    404: "no such resource (or not one of yours)",
    409: "the resource is not in a state that allows this (a stale lease: its attempt ended)",
    410: "gone: used or expired",
    413: "request body too large",
    422: "the request is not valid: the message names the field",
    429: "too many attempts: wait the Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors a route can answer, all shaped as :class:`ErrorOut`."""
    return {code: {"model": ErrorOut, "description": _MEANING[code]} for code in codes}


# What any route can answer: an unparseable body, the body limit, request validation.
ANY_ROUTE = error_responses(400, 413, 422)
# A route behind a user's or a worker's bearer token.
AUTHENTICATED = error_responses(401, 403)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BatonError)
    body = {"detail": exc.message, "code": exc.code, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _handle_framework(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's and Starlette's own errors (a body that is not UTF-8 JSON, an unknown route or
    method) in the same shape as ours."""
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    if exc.status_code == 400:
        detail = f"{detail}: send UTF-8 JSON (or the form the route documents)"
    code = _FRAMEWORK_CODES.get(exc.status_code, "error")
    return JSONResponse(
        {"detail": detail, "code": code}, status_code=exc.status_code, headers=exc.headers
    )


_FRAMEWORK_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def install_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(BatonError, _handle)
    app.add_exception_handler(HTTPException, _handle_framework)
