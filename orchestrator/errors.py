"""One error family for the control plane, turned into HTTP responses by one handler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


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


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BatonError)
    body = {"detail": exc.message, "code": exc.code, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def install_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(BatonError, _handle)
