"""The control plane's worker API over HTTP, with retries for a control plane that blinks."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 10.0


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class LeaseLost(ApiError):
    """409: this lease is no longer ours (expired and re-leased, or already ended)."""


class Unavailable(RuntimeError):
    """The control plane could not be reached (or answered 5xx) and we were told not to wait."""


class Stopped(RuntimeError):
    """Retrying was abandoned because the agent is shutting down."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


class WorkerClient:
    def __init__(self, api: str, token: str | None, *, timeout: float = 30.0) -> None:
        """``token`` None: only `enroll` can be called (the code is the credential)."""
        headers = {"User-Agent": "baton-worker"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=api.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        retry_until: threading.Event | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send; on network errors and 5xx, back off and retry (until ``retry_until`` is set).

        4xx answers are the caller's problem and raise at once: ApiError, or LeaseLost on 409.
        """
        delay = 0.5
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                )
                if response.status_code < 500:
                    break
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if not retry:
                raise Unavailable(f"{method} {path}: {problem}")
            log.warning("control plane unavailable (%s); retrying in %.1fs", problem, delay)
            if retry_until is not None and retry_until.wait(delay):
                raise Stopped(f"{method} {path} abandoned during shutdown")
            if retry_until is None:
                threading.Event().wait(delay)
            delay = min(MAX_BACKOFF_SECONDS, delay * 2) * random.uniform(0.8, 1.2)
        if response.status_code == 409:
            raise LeaseLost(409, _detail(response))
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response

    @contextlib.contextmanager
    def stream(self, method: str, url: str) -> Iterator[httpx.Response]:
        """One try, the body left unread for the caller to stream; ApiError for >= 400."""
        with self._http.stream(method, url) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response.status_code, _detail(response))
            yield response

    # --- the worker API -------------------------------------------------------------------

    def enroll(self, code: str) -> dict[str, Any]:
        """Exchange a single-use enrollment code for a worker token: ``{token, expires_at}``.
        Retried while the control plane is unreachable; a refused code raises ApiError."""
        reply: dict[str, Any] = self.request(
            "POST", "/api/v1/workers/enroll", json={"code": code}
        ).json()
        return reply

    def register(self, info: dict[str, Any], *, stop: threading.Event) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/api/v1/workers/register", json=info, retry_until=stop
        ).json()
        return result

    def claim(self, worker_id: int, *, wait: float, stop: threading.Event) -> dict[str, Any] | None:
        response = self.request(
            "POST",
            f"/api/v1/workers/{worker_id}/claim",
            params={"wait": wait},
            timeout=wait + 30,
            retry_until=stop,
        )
        if response.status_code == 204:
            return None
        grant: dict[str, Any] = response.json()
        return grant

    def heartbeat(self, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """One try: the next heartbeat is the retry. Unavailable when there is no answer."""
        reply: dict[str, Any] = self.request(
            "POST", "/api/v1/leases/heartbeat", json=payload, timeout=timeout, retry=False
        ).json()
        return reply

    def finish(
        self, verb: str, payload: dict[str, Any], *, give_up: threading.Event
    ) -> dict[str, Any]:
        """complete / fail / release: retried until the control plane answers."""
        reply: dict[str, Any] = self.request(
            "POST", f"/api/v1/leases/{verb}", json=payload, retry_until=give_up
        ).json()
        return reply
