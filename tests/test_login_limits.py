"""Login limits through the real app (SQLite, real Redis): throttling per account and per
address answered with 429 + Retry-After before any hashing, the same time for unknown and
known emails, the client address, and a failed login that never takes the writer lock."""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from starlette.requests import Request

from orchestrator.api.deps import client_address
from orchestrator.app import create_app
from orchestrator.login_throttle import LoginThrottle
from orchestrator.settings import Settings
from tests.support.api import create_user, make_settings
from tests.support.stack import free_port
from tests.support.web import csrf_of

EMAIL = "alice@example.com"
PASSWORD = "password123"


@pytest.fixture
def make_client(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(client: tuple[str, int] = ("127.0.0.1", 50000), **env: Any) -> TestClient:
        settings = make_settings(
            database_url=f"sqlite:///{tmp_path / 'baton.db'}",
            redis_url=redis_url,
            data_dir=tmp_path / "data",
            **env,
        )
        create_user(settings, EMAIL)
        test_client = TestClient(create_app(settings), client=client)
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


def _login(client: TestClient, password: str, email: str = EMAIL, **kwargs: Any) -> Any:
    return client.post("/auth/login", data={"username": email, "password": password}, **kwargs)


def test_the_account_is_throttled_before_hashing_and_success_clears_it(make_client: Any) -> None:
    client = make_client(BATON_LOGIN_ACCOUNT_FAILURES=3, BATON_LOGIN_WINDOW_SECONDS=120)
    for _ in range(2):
        assert _login(client, "wrong").status_code == 401
    assert _login(client, PASSWORD).status_code == 200  # clears the count
    assert [_login(client, "wrong").status_code for _ in range(3)] == [401, 401, 401]

    refused = _login(client, PASSWORD)  # even the right password: no hash is computed now
    assert refused.status_code == 429, refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= 120
    body = refused.json()
    assert body["code"] == "too_many_requests"
    assert body["retry_after"] == int(refused.headers["Retry-After"])
    assert body["detail"].startswith("too many login attempts for this account: try again in")
    # Spelled differently, the same account.
    assert _login(client, PASSWORD, email="  ALICE@example.com ").status_code == 429


def test_unknown_emails_are_throttled_like_known_ones(make_client: Any) -> None:
    client = make_client(BATON_LOGIN_ACCOUNT_FAILURES=2)
    codes = [_login(client, "wrong", email="nobody@example.com").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_the_address_is_throttled_across_accounts(make_client: Any) -> None:
    client = make_client(BATON_LOGIN_IP_ATTEMPTS=4)
    codes = [_login(client, "wrong", email=f"user{n}@example.com").status_code for n in range(4)]
    assert codes == [401] * 4
    refused = _login(client, PASSWORD)
    assert refused.status_code == 429
    assert "from your address" in refused.json()["detail"]
    # X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    spoofed = _login(client, PASSWORD, headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status_code == 429


def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(make_client: Any) -> None:
    client = make_client(
        ("10.0.0.2", 40000), BATON_LOGIN_IP_ATTEMPTS=2, BATON_TRUSTED_PROXIES=["10.0.0.0/24"]
    )
    first = {"X-Forwarded-For": "203.0.113.9"}
    assert [_login(client, "wrong", headers=first).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    # Another client behind the same proxy is not held back by the first one's attempts.
    second = {"X-Forwarded-For": "198.51.100.7, 10.0.0.1"}
    assert _login(client, PASSWORD, headers=second).status_code == 200


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),  # direct
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # not a proxy: its header is ignored
        ("127.0.0.1", "1.2.3.4", "1.2.3.4"),  # a trusted proxy names the client
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client's own claim is not believed
        ("127.0.0.1", "1.2.3.4, 10.1.1.1", "1.2.3.4"),  # through two trusted proxies
        ("127.0.0.1", "10.1.1.1", "10.1.1.1"),  # every hop trusted: the first one
        ("127.0.0.1", None, "127.0.0.1"),  # a trusted peer that forwards nothing
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    settings = Settings(BATON_TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8", "::1"])
    assert client_address(_request(peer, forwarded), settings.trusted_proxies) == expected


def test_the_web_form_answers_429_with_retry_after(make_client: Any) -> None:
    client = make_client(BATON_LOGIN_ACCOUNT_FAILURES=1)
    csrf = csrf_of(client.get("/ui/login").text)
    form = {"email": EMAIL, "password": "wrong", "csrf": csrf}
    assert client.post("/ui/login", data=form).status_code == 401
    page = client.post("/ui/login", data={**form, "password": PASSWORD})
    assert page.status_code == 429
    assert int(page.headers["Retry-After"]) > 0
    assert "Too many login attempts: try again in" in page.text
    assert 'name="password"' in page.text  # the form again, to try later


def _timed_login(client: TestClient, email: str) -> float:
    started = time.perf_counter()
    assert _login(client, "wrong-password", email=email).status_code == 401
    return time.perf_counter() - started


def _trimmed_mean(values: list[float]) -> float:
    return statistics.mean(sorted(values)[1:-1])


def test_unknown_and_known_emails_take_the_same_time(make_client: Any) -> None:
    client = make_client(BATON_LOGIN_ACCOUNT_FAILURES=100, BATON_LOGIN_IP_ATTEMPTS=100)
    _timed_login(client, "warm-up@example.com")
    known: list[float] = []
    unknown: list[float] = []
    for n in range(8):  # interleaved, so a busy moment of the machine hits both alike
        known.append(_timed_login(client, EMAIL))
        unknown.append(_timed_login(client, f"nobody{n}@example.com"))
    ratio = _trimmed_mean(unknown) / _trimmed_mean(known)
    assert 1 / 1.3 < ratio < 1.3, (known, unknown)


def test_a_failed_login_does_not_wait_for_the_sqlite_writer_lock(
    make_client: Any, tmp_path: Path
) -> None:
    client = make_client()
    holder = sqlite3.connect(tmp_path / "baton.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing (for up to 30 s)
    try:
        started = time.monotonic()
        assert _login(client, "wrong").status_code == 401
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _login(client, PASSWORD).status_code == 200


def test_without_redis_logins_go_on_unthrottled() -> None:
    throttle = LoginThrottle(
        Redis(port=free_port(), socket_connect_timeout=1),
        window_seconds=60,
        account_failures=1,
        ip_attempts=1,
    )
    for _ in range(3):
        throttle.admit(address="127.0.0.1", email=EMAIL)
    throttle.succeeded(EMAIL)
