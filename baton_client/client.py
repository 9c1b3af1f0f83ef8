"""A small synchronous client for the Baton API: what the CLI uses, and what a notebook can.

    from baton_client import BatonClient

    with BatonClient("http://127.0.0.1:8000") as baton:
        baton.login(email="me@example.com", password="...")
        experiment = baton.submit(name="run-1", kind="command", config={"command": "python t.py"})
        for chunk in baton.follow_logs(experiment["id"]):
            print(chunk["text"], end="")
        print(baton.wait(experiment["id"])["status"])

``BatonClient.from_config()`` reuses the login saved by `baton login`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx

from baton_client.bundle import Packed, check_size, pack
from baton_client.config import DEFAULT_URL, CredentialStore, resolve_url
from baton_client.errors import AuthenticationError, Unreachable, error_for
from baton_client.types import (
    FINAL_STATUSES,
    Bootstrap,
    Bundle,
    Experiment,
    ExperimentDetail,
    ExperimentPage,
    LogChunk,
    Secret,
    Tokens,
    UsageReport,
    User,
    Worker,
    WorkerToken,
    WorkerTokenCreated,
)

# A follower's long-poll: the server answers as soon as there is output, so this only bounds
# how long a quiet job keeps one request open.
FOLLOW_WAIT_SECONDS = 25.0
# The server's default BATON_BUNDLE_MAX_MB: refuse locally rather than upload in vain.
BUNDLE_MAX_MB = 200

TokenListener = Callable[[Tokens], None]


@dataclass
class LogCursor:
    """Where a reader is in an experiment's output. Unpinned, it moves on to the next attempt
    when one ends and the experiment goes on (a lost or preempted attempt is retried)."""

    attempt: int | None = None
    offset: int = 0
    pinned: bool = False
    done: bool = False

    def advance(self, chunk: LogChunk) -> None:
        if chunk["attempt"] is not None:
            self.attempt, self.offset = chunk["attempt"], chunk["next_offset"]
        if not chunk["eof"]:
            return
        if self.pinned or self.attempt is None or chunk["status"] in FINAL_STATUSES:
            self.done = True
        else:
            self.attempt, self.offset = self.attempt + 1, 0


class BatonClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        on_tokens: TokenListener | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``on_tokens`` is told of every new token pair (login, refresh): refresh tokens
        rotate, so whoever stores them must store the new one."""
        self.url = url.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        self.on_tokens = on_tokens
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "baton-client"},
        )

    @classmethod
    def from_config(
        cls, *, url: str | None = None, store: CredentialStore | None = None, timeout: float = 30.0
    ) -> BatonClient:
        """A client with the login `baton login` saved; ``url`` (or $BATON_URL) picks another
        server, whose requests then go without those tokens."""
        store = store or CredentialStore.default()
        saved = store.load()
        url = resolve_url(url, saved)
        if saved is None or saved.url != url:
            return cls(url, timeout=timeout)
        current = saved

        def keep(tokens: Tokens) -> None:
            nonlocal current
            current = replace(
                current, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
            )
            store.save(current)

        return cls(
            url,
            token=saved.access_token,
            refresh_token=saved.refresh_token,
            on_tokens=keep,
            timeout=timeout,
        )

    # --- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BatonClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise Unreachable(self.url, "no answer in time") from None
        except httpx.TransportError as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None

    def request(self, method: str, path: str, *, authenticated: bool = True, **kwargs: Any) -> Any:
        """Send; on a 401 with a refresh token, refresh once and resend. Returns the JSON body
        (None for an empty one); error answers raise a subclass of ``ApiError``."""
        response = self._send(method, path, authenticated=authenticated, **kwargs)
        if response.status_code == 401 and authenticated and self.refresh_token:
            self.refresh()
            response = self._send(method, path, authenticated=True, **kwargs)
        if response.status_code >= 400:
            raise error_for(response)
        return response.json() if response.content else None

    def _store(self, tokens: Tokens) -> Tokens:
        self.token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
        if self.on_tokens is not None:
            self.on_tokens(tokens)
        return tokens

    # --- accounts -------------------------------------------------------------------------

    def login(self, *, email: str, password: str) -> Tokens:
        body = {"username": email, "password": password}
        return self._store(
            cast(Tokens, self.request("POST", "/auth/login", json=body, authenticated=False))
        )

    def refresh(self) -> Tokens:
        """New tokens for the refresh token (which is spent: it works once)."""
        if not self.refresh_token:
            raise AuthenticationError(401, "not logged in")
        body = {"refresh_token": self.refresh_token}
        try:
            reply = self.request("POST", "/auth/refresh", json=body, authenticated=False)
        except AuthenticationError as exc:
            self.token = self.refresh_token = None
            raise AuthenticationError(
                401, f"session expired ({exc.detail})", code=exc.code
            ) from None
        return self._store(cast(Tokens, reply))

    def logout(self) -> None:
        """End this login everywhere (every token descended from it)."""
        if self.refresh_token:
            self.request(
                "POST",
                "/auth/logout",
                json={"refresh_token": self.refresh_token},
                authenticated=False,
            )
        self.token = self.refresh_token = None

    def me(self) -> User:
        return cast(User, self.request("GET", "/auth/me"))

    # --- experiments ----------------------------------------------------------------------

    def submit(
        self,
        *,
        name: str,
        kind: str,
        config: Mapping[str, Any] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        tags: list[str] | None = None,
        resources: Mapping[str, Any] | None = None,
        notify: bool | None = None,
        code: Mapping[str, str] | None = None,
        requirements: list[str] | None = None,
        **fields: Any,
    ) -> ExperimentDetail:
        """Submit one experiment; fields left out take the server's defaults. ``code`` is
        ``{"bundle": upload_bundle(dir)}`` or ``{"git": url, "ref": ref}``; ``requirements``
        are pip requirement strings (a relative path names a file in the bundle). ``fields``
        passes anything newer through as is."""
        spec = {
            "name": name,
            "kind": kind,
            "config": config,
            "priority": priority,
            "max_attempts": max_attempts,
            "tags": tags,
            "resources": resources,
            "notify": notify,
            "code": code,
            "requirements": requirements,
            **fields,
        }
        return self.submit_spec({k: v for k, v in spec.items() if v is not None})

    def submit_spec(self, spec: Mapping[str, Any]) -> ExperimentDetail:
        """Submit a spec as the API takes it (what a YAML/JSON spec file holds)."""
        return cast(ExperimentDetail, self.request("POST", "/api/v1/experiments", json=dict(spec)))

    # --- code bundles -----------------------------------------------------------------------

    def upload_bundle(self, source: str | Path, *, max_mb: int = BUNDLE_MAX_MB) -> str:
        """Upload a working directory (packed honouring .gitignore/.batonignore) or a .tar.gz;
        returns its digest (``sha256:<hex>``) for ``code={"bundle": digest}``. A directory
        packed over ``max_mb`` raises BundleTooLarge naming its largest files."""
        source = Path(source)
        if not source.is_dir():
            return self._upload_archive(source)
        with tempfile.TemporaryDirectory(prefix="baton-bundle-") as scratch:
            packed = self.pack(source, Path(scratch) / "bundle.tar.gz", max_mb=max_mb)
            return self._upload_archive(packed.archive)

    @staticmethod
    def pack(directory: Path, archive: Path, *, max_mb: int = BUNDLE_MAX_MB) -> Packed:
        packed = pack(directory, archive)
        check_size(packed, max_mb=max_mb)
        return packed

    def _upload_archive(self, archive: Path) -> str:
        """Stream the file up (never all in memory); one refresh on a 401, with a fresh read."""
        for first in (True, False):
            with archive.open("rb") as body:
                response = self._send(
                    "POST",
                    "/api/v1/bundles",
                    authenticated=True,
                    content=body,
                    headers={"Content-Type": "application/gzip"},
                    timeout=httpx.Timeout(self._http.timeout.connect, read=600.0, write=600.0),
                )
            if response.status_code == 401 and first and self.refresh_token:
                self.refresh()
                continue
            break
        if response.status_code >= 400:
            raise error_for(response)
        return cast(Bundle, response.json())["digest"]

    def list_experiments(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        cursor: int | None = None,
        limit: int = 50,
    ) -> ExperimentPage:
        """One page, newest first; pass its ``next_cursor`` as ``cursor`` for the next."""
        params = {"status": status, "kind": kind, "tag": tag, "cursor": cursor, "limit": limit}
        query = {k: v for k, v in params.items() if v is not None}
        return cast(ExperimentPage, self.request("GET", "/api/v1/experiments", params=query))

    def iter_experiments(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        tag: str | None = None,
        page_size: int = 50,
    ) -> Iterator[Experiment]:
        """Every matching experiment, newest first, fetched a page at a time as you go."""
        cursor: int | None = None
        while True:
            page = self.list_experiments(
                status=status, kind=kind, tag=tag, cursor=cursor, limit=page_size
            )
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def get(self, experiment_id: int) -> ExperimentDetail:
        return cast(ExperimentDetail, self.request("GET", f"/api/v1/experiments/{experiment_id}"))

    def cancel(self, experiment_id: int) -> ExperimentDetail:
        return cast(
            ExperimentDetail, self.request("POST", f"/api/v1/experiments/{experiment_id}/cancel")
        )

    def retry(self, experiment_id: int) -> ExperimentDetail:
        """Run a failed, lost or canceled experiment again, from its latest checkpoint."""
        return cast(
            ExperimentDetail, self.request("POST", f"/api/v1/experiments/{experiment_id}/retry")
        )

    def wait(
        self, experiment_id: int, *, timeout: float | None = None, interval: float = 1.0
    ) -> ExperimentDetail:
        """Poll until the experiment is final; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            detail = self.get(experiment_id)
            if detail["status"] in FINAL_STATUSES:
                return detail
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"experiment {experiment_id} is still {detail['status']} after {timeout}s"
                )
            time.sleep(interval)

    # --- logs -----------------------------------------------------------------------------

    def logs(
        self, experiment_id: int, *, attempt: int | None = None, offset: int = 0, wait: float = 0.0
    ) -> LogChunk:
        """The kept output of an attempt (the latest by default) from ``offset`` on. With
        ``wait``, the server holds the request until there is some (long-poll)."""
        params: dict[str, Any] = {"offset": offset, "wait": wait}
        if attempt is not None:
            params["attempt"] = attempt
        reply = self.request(
            "GET",
            f"/api/v1/experiments/{experiment_id}/logs",
            params=params,
            timeout=self._http.timeout.read + wait if self._http.timeout.read else None,
        )
        return cast(LogChunk, reply)

    def read_logs(self, experiment_id: int, cursor: LogCursor, *, wait: float) -> LogChunk:
        """The next chunk from where ``cursor`` is, moving it on."""
        chunk = self.logs(experiment_id, attempt=cursor.attempt, offset=cursor.offset, wait=wait)
        cursor.advance(chunk)
        return chunk

    def follow_logs(
        self,
        experiment_id: int,
        *,
        attempt: int | None = None,
        offset: int = 0,
        wait: float = FOLLOW_WAIT_SECONDS,
    ) -> Iterator[LogChunk]:
        """Output as it comes, until the experiment ends (or, given ``attempt``, that attempt)."""
        cursor = LogCursor(attempt=attempt, offset=offset, pinned=attempt is not None)
        while not cursor.done:
            chunk = self.read_logs(experiment_id, cursor, wait=wait)
            if chunk["text"] or chunk["truncated"]:
                yield chunk

    # --- workers and platforms ------------------------------------------------------------

    def workers(self) -> list[Worker]:
        return cast(list[Worker], self.request("GET", "/api/v1/workers"))

    def create_worker_token(self, name: str) -> WorkerTokenCreated:
        """A worker token of yours (its workers take your work); ``token`` is shown only here."""
        reply = self.request("POST", "/api/v1/worker-tokens", json={"name": name})
        return cast(WorkerTokenCreated, reply)

    def worker_tokens(self) -> list[WorkerToken]:
        """Your worker tokens (an admin's: all), without their secrets."""
        return cast(list[WorkerToken], self.request("GET", "/api/v1/worker-tokens"))

    def revoke_worker_token(self, token_id: int) -> WorkerToken:
        return cast(WorkerToken, self.request("DELETE", f"/api/v1/worker-tokens/{token_id}"))

    # --- secrets --------------------------------------------------------------------------

    def set_secret(self, name: str, value: str) -> Secret:
        """Store (or replace) a secret; experiments get it by naming it in ``secrets``."""
        return cast(Secret, self.request("PUT", f"/api/v1/secrets/{name}", json={"value": value}))

    def secrets(self) -> list[Secret]:
        """Names and dates of your secrets; values never come back."""
        return cast(list[Secret], self.request("GET", "/api/v1/secrets"))

    def delete_secret(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/secrets/{name}")

    def usage(self, *, week: str | None = None) -> UsageReport:
        """GPU hours per platform account (used, allowed, reset) for an ISO week (this one)."""
        params = {"week": week} if week else None
        return cast(UsageReport, self.request("GET", "/api/v1/platforms/usage", params=params))

    def bootstrap(self, platform: str) -> Bootstrap:
        """A notebook cell (or shell script) that starts a worker on ``platform``."""
        return cast(Bootstrap, self.request("GET", f"/api/v1/bootstrap/{platform}"))
