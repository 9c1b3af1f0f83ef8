"""What can go wrong talking to Baton: the server is unreachable, or it said no."""

from __future__ import annotations

from typing import Any

import httpx


class BatonError(Exception):
    """Base of every error the client raises."""


class Unreachable(BatonError):
    """No answer from the server: it is down, the URL is wrong, or the network is."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach Baton at {url}: {reason}")
        self.url = url
        self.reason = reason


class BundleTooLarge(BatonError):
    """A packed working directory is over the cap; the message names its largest files."""


class ApiError(BatonError):
    """The server answered with an error; ``detail`` is its own explanation."""

    def __init__(
        self, status: int, detail: str, *, code: str | None = None, body: Any = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.body = body


class AuthenticationError(ApiError):
    """401: not logged in, wrong password, or the session expired."""


class PermissionDenied(ApiError):
    """403."""


class NotFound(ApiError):
    """404 (also what you get for someone else's experiment)."""


class Conflict(ApiError):
    """409: the experiment is not in a state that allows this."""


class InvalidRequest(ApiError):
    """422: a field is wrong; ``detail`` names it."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


def error_for(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail, code = str(body["detail"]), body.get("code")
    else:
        detail, code = response.text[:500] or response.reason_phrase, None
    kind = _BY_STATUS.get(response.status_code, ApiError)
    return kind(response.status_code, detail, code=code, body=body)
