"""Authentication and authorisation through the real app, on SQLite and Postgres, real Redis.

Bad tokens are built with pyjwt directly (tests/support/tokens.py); each one differs from a
valid token in exactly one respect, and a control case proves the valid one gets in.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from orchestrator.settings import DEFAULT_SECRET, MIN_SECRET_LENGTH, Settings
from tests.support.api import create_user, create_worker_token
from tests.support.experiments import submit
from tests.support.tokens import OMIT, forge_jwt
from tests.support.workers import bearer

PASSWORD = "password123"
USER_ENDPOINT = "/api/v1/experiments"


@dataclass(frozen=True)
class People:
    alice: int
    bob: int
    admin: int


@pytest.fixture
def alice(settings: Settings) -> int:
    # Most tests need one user; password hashing is slow, so only make the others on demand.
    return create_user(settings, "alice@example.com")


@pytest.fixture
def people(settings: Settings, alice: int) -> People:
    return People(
        alice=alice,
        bob=create_user(settings, "bob@example.com"),
        admin=create_user(settings, "admin@example.com", admin=True),
    )


def _login(client: TestClient, email: str) -> dict[str, str]:
    response = client.post("/auth/login", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    pair: dict[str, str] = response.json()
    return pair


def _headers(client: TestClient, email: str) -> dict[str, str]:
    return bearer(_login(client, email)["access_token"])


def _refresh(client: TestClient, refresh_token: str) -> tuple[int, dict[str, str]]:
    response = client.post("/auth/refresh", json={"refresh_token": refresh_token})
    return response.status_code, response.json()


# --- login ------------------------------------------------------------------------------


def test_login_with_form_and_with_json_returns_a_token_pair(client: TestClient, alice: int) -> None:
    form = client.post("/auth/login", data={"username": "alice@example.com", "password": PASSWORD})
    as_json = client.post(
        "/auth/login", json={"username": "alice@example.com", "password": PASSWORD}
    )
    for response in (form, as_json):
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"access_token", "refresh_token", "token_type"} <= body.keys()
        assert body["token_type"] == "bearer"
        me = client.get("/auth/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "alice@example.com" and me.json()["id"] == alice
    # Two logins, two independent sessions.
    assert form.json()["refresh_token"] != as_json.json()["refresh_token"]


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_bad_credentials_are_401_and_say_the_same(
    client: TestClient, alice: int, username: str, password: str
) -> None:
    response = client.post("/auth/login", data={"username": username, "password": password})
    assert response.status_code == 401, response.text
    # One message for both, so the login form does not reveal which emails have accounts.
    assert response.json()["detail"] == "wrong email or password"
    assert response.headers["www-authenticate"] == "Bearer"


def test_login_without_fields_is_422_naming_the_field(client: TestClient, alice: int) -> None:
    response = client.post("/auth/login", json={"username": "alice@example.com"})
    assert response.status_code == 422, response.text
    assert "password" in response.json()["detail"]


# --- access tokens ------------------------------------------------------------------------

_PAST = datetime.now(UTC) - timedelta(hours=1)

# name -> (how to build the token from settings and the user id, what the 401 says)
BAD_ACCESS_TOKENS: dict[str, tuple[Callable[[Settings, int], str], str]] = {
    "expired": (
        lambda s, uid: forge_jwt(
            s, subject=uid, iat=_PAST, nbf=_PAST, exp=_PAST + timedelta(minutes=15)
        ),
        "expired",
    ),
    "wrong-signature": (
        lambda s, uid: forge_jwt(s, subject=uid, key="another-secret-" + "y" * 40),
        "signature",
    ),
    "alg-none": (lambda s, uid: forge_jwt(s, subject=uid, algorithm="none"), "alg"),
    "hs512-with-our-key": (lambda s, uid: forge_jwt(s, subject=uid, algorithm="HS512"), "alg"),
    "wrong-audience": (lambda s, uid: forge_jwt(s, subject=uid, aud="someone-else"), "audience"),
    "wrong-issuer": (lambda s, uid: forge_jwt(s, subject=uid, iss="evil"), "issuer"),
    "no-expiry": (lambda s, uid: forge_jwt(s, subject=uid, exp=OMIT), "exp"),
    "refresh-as-access": (lambda s, uid: forge_jwt(s, subject=uid, typ="refresh"), "access"),
    "unknown-user": (lambda s, uid: forge_jwt(s, subject=uid + 10_000), "user"),
    "garbage": (lambda s, uid: "not.a.jwt", "invalid token"),
}


def test_a_well_formed_forged_token_gets_in(
    client: TestClient, settings: Settings, alice: int
) -> None:
    """The control for the cases below: with nothing wrong, the hand-made token works."""
    response = client.get(USER_ENDPOINT, headers=bearer(forge_jwt(settings, subject=alice)))
    assert response.status_code == 200, response.text


# The HS512 case signs with our (HS256-sized) key on purpose; pyjwt warns about its length.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("case", sorted(BAD_ACCESS_TOKENS))
def test_bad_access_tokens_are_401(
    client: TestClient, settings: Settings, alice: int, case: str
) -> None:
    build, reason = BAD_ACCESS_TOKENS[case]
    response = client.get(USER_ENDPOINT, headers=bearer(build(settings, alice)))
    assert response.status_code == 401, response.text
    assert reason in response.json()["detail"].lower(), response.json()


def test_missing_bearer_is_401(client: TestClient, alice: int) -> None:
    assert client.get(USER_ENDPOINT).status_code == 401
    assert client.post("/api/v1/workers/register", json={"name": "w"}).status_code == 401


# --- refresh tokens -----------------------------------------------------------------------


def test_refresh_rotates_and_the_old_token_is_refused(client: TestClient, alice: int) -> None:
    first = _login(client, "alice@example.com")
    code, second = _refresh(client, first["refresh_token"])
    assert code == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get(USER_ENDPOINT, headers=bearer(second["access_token"])).status_code == 200
    # The rotated token keeps working down the chain ...
    code, third = _refresh(client, second["refresh_token"])
    assert code == 200, third
    # ... and the one it replaced does not.
    code, body = _refresh(client, second["refresh_token"])
    assert code == 401, body


def test_refresh_reuse_revokes_the_whole_family(client: TestClient, alice: int) -> None:
    stolen = _login(client, "alice@example.com")
    other_login = _login(client, "alice@example.com")
    code, newest = _refresh(client, stolen["refresh_token"])
    assert code == 200, newest
    # Someone presents the already-rotated token: it was copied, so the family is burnt.
    code, body = _refresh(client, stolen["refresh_token"])
    assert code == 401 and "reuse" in body["detail"], body
    code, body = _refresh(client, newest["refresh_token"])
    assert code == 401, "the newest token of a family whose member was reused must stop working"
    # Another login of the same user is another family and is untouched.
    code, body = _refresh(client, other_login["refresh_token"])
    assert code == 200, body


def test_access_token_is_not_a_refresh_token(client: TestClient, alice: int) -> None:
    pair = _login(client, "alice@example.com")
    code, body = _refresh(client, pair["access_token"])
    assert code == 401 and "refresh" in body["detail"], body


def test_expired_refresh_token_is_refused(
    client: TestClient, settings: Settings, alice: int
) -> None:
    token = forge_jwt(
        settings,
        subject=alice,
        typ="refresh",
        iat=_PAST,
        nbf=_PAST,
        exp=_PAST + timedelta(seconds=1),
    )
    code, body = _refresh(client, token)
    assert code == 401 and "expired" in body["detail"], body


def test_forged_refresh_token_unknown_to_the_database_is_refused(
    client: TestClient, settings: Settings, alice: int
) -> None:
    # Correctly signed but never issued: the server must check its own record, not only the JWT.
    token = forge_jwt(settings, subject=alice, typ="refresh", fam="f" * 32)
    code, body = _refresh(client, token)
    assert code == 401, body


def test_logout_revokes_the_session(client: TestClient, alice: int) -> None:
    session = _login(client, "alice@example.com")
    other = _login(client, "alice@example.com")
    response = client.post("/auth/logout", json={"refresh_token": session["refresh_token"]})
    assert response.status_code == 204, response.text
    code, body = _refresh(client, session["refresh_token"])
    assert code == 401, body
    code, body = _refresh(client, other["refresh_token"])
    assert code == 200, "logging out one session must not end the others"


def test_logout_also_revokes_tokens_rotated_from_that_login(client: TestClient, alice: int) -> None:
    first = _login(client, "alice@example.com")
    code, rotated = _refresh(client, first["refresh_token"])
    assert code == 200
    assert (
        client.post("/auth/logout", json={"refresh_token": rotated["refresh_token"]}).status_code
        == 204
    )
    code, body = _refresh(client, rotated["refresh_token"])
    assert code == 401, body


# --- user tokens vs worker tokens ---------------------------------------------------------


def test_worker_token_on_user_endpoints_is_403(
    client: TestClient, settings: Settings, alice: int
) -> None:
    worker = bearer(create_worker_token(settings))
    for method, path in [
        ("GET", USER_ENDPOINT),
        ("POST", USER_ENDPOINT),
        ("GET", "/auth/me"),
        ("GET", "/api/v1/workers"),
        ("POST", "/api/v1/worker-tokens"),
    ]:
        response = client.request(method, path, headers=worker, json={"name": "x"})
        assert response.status_code == 403, (method, path, response.text)


def test_user_jwt_on_worker_endpoints_is_403(client: TestClient, people: People) -> None:
    for email in ("alice@example.com", "admin@example.com"):
        headers = _headers(client, email)
        register = client.post("/api/v1/workers/register", json={"name": "w"}, headers=headers)
        assert register.status_code == 403, register.text
        for path in (
            "/api/v1/workers/1/claim?wait=0",
            "/api/v1/leases/heartbeat",
            "/api/v1/leases/complete",
        ):
            response = client.post(path, json={"lease_token": "1-x"}, headers=headers)
            assert response.status_code == 403, (email, path, response.text)


def test_revoked_worker_token_is_401(client: TestClient, people: People) -> None:
    admin = _headers(client, "admin@example.com")
    created = client.post("/api/v1/worker-tokens", json={"name": "colab"}, headers=admin)
    assert created.status_code == 201, created.text
    token = bearer(created.json()["token"])
    before = client.post("/api/v1/workers/register", json={"name": "w"}, headers=token)
    assert before.status_code == 201, before.text

    revoked = client.delete(f"/api/v1/worker-tokens/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None, revoked.text
    after = client.post("/api/v1/workers/register", json={"name": "w"}, headers=token)
    assert after.status_code == 401, after.text
    heartbeat = client.post("/api/v1/leases/heartbeat", json={"lease_token": "1-x"}, headers=token)
    assert heartbeat.status_code == 401, heartbeat.text
    # The secret is only ever shown once and the listing does not leak it.
    listing = client.get("/api/v1/worker-tokens", headers=admin).json()
    assert all("token" not in row for row in listing)


def test_unknown_worker_token_is_401(client: TestClient, alice: int) -> None:
    response = client.post(
        "/api/v1/workers/register", json={"name": "w"}, headers=bearer("bwt_" + "a" * 43)
    )
    assert response.status_code == 401, response.text


# --- who sees what --------------------------------------------------------------------------


def test_other_users_experiment_is_404_but_admin_sees_it(
    client: TestClient, people: People
) -> None:
    alice, bob, admin = (_headers(client, f"{n}@example.com") for n in ("alice", "bob", "admin"))
    experiment = submit(client, alice, "alice-only")
    missing = experiment + 1000

    assert client.get(f"{USER_ENDPOINT}/{experiment}", headers=alice).status_code == 200
    for method, suffix in [("GET", ""), ("POST", "/cancel"), ("POST", "/retry")]:
        theirs = client.request(method, f"{USER_ENDPOINT}/{experiment}{suffix}", headers=bob)
        absent = client.request(method, f"{USER_ENDPOINT}/{missing}{suffix}", headers=bob)
        assert theirs.status_code == 404, (method, suffix, theirs.text)
        # Indistinguishable from an id that does not exist: nothing tells bob it is there.
        assert theirs.json()["detail"] == f"experiment {experiment} not found"
        assert (
            absent.status_code == 404
            and absent.json()["detail"] == f"experiment {missing} not found"
        )
    assert client.get(USER_ENDPOINT, headers=bob).json()["items"] == []

    seen = client.get(f"{USER_ENDPOINT}/{experiment}", headers=admin)
    assert seen.status_code == 200 and seen.json()["owner_id"] == people.alice
    assert [e["id"] for e in client.get(USER_ENDPOINT, headers=admin).json()["items"]] == [
        experiment
    ]
    # bob's cancel must not have touched it.
    assert seen.json()["status"] == "queued"


def test_admin_endpoints_are_403_for_users_and_work_for_admins(
    client: TestClient, people: People
) -> None:
    alice, admin = _headers(client, "alice@example.com"), _headers(client, "admin@example.com")
    new_user = {"email": "carol@example.com", "password": PASSWORD}
    for method, path, body in [
        ("POST", "/api/v1/users", new_user),
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/pools", {"name": "team"}),
        ("GET", "/api/v1/pools", None),
        ("PUT", f"/api/v1/pools/1/users/{people.alice}", None),
        ("DELETE", "/api/v1/pools/1", None),
    ]:
        response = client.request(method, path, json=body, headers=alice)
        assert response.status_code == 403, (method, path, response.text)
    # Nothing was created by the refused calls.
    assert (
        client.post(
            "/auth/login", data={"username": "carol@example.com", "password": PASSWORD}
        ).status_code
        == 401
    )
    assert client.get("/api/v1/pools", headers=admin).json() == []

    created = client.post("/api/v1/users", json=new_user, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "user" and "hashed_password" not in created.json()
    assert _login(client, "carol@example.com")["token_type"] == "bearer"
    pool = client.post("/api/v1/pools", json={"name": "team"}, headers=admin)
    assert pool.status_code == 201 and pool.json()["user_ids"] == [], pool.text


# --- the signing secret (pure settings, no services) ----------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No BATON_* from the caller's shell and no .env file may decide these tests."""
    for name in ("BATON_ENV", "BATON_SECRET_KEY", "BATON_DATA_DIR", "DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("env", ["prod", "test"])
@pytest.mark.parametrize(
    "secret",
    [None, "", DEFAULT_SECRET, "s" * (MIN_SECRET_LENGTH - 1)],
    ids=["missing", "empty", "default", "short"],
)
def test_settings_refuse_a_weak_secret_outside_dev(
    clean_env: Path, env: str, secret: str | None
) -> None:
    values = {"BATON_ENV": env, "BATON_DATA_DIR": clean_env / "data"}
    if secret is not None:
        values["BATON_SECRET_KEY"] = secret
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    message = str(raised.value)
    assert "BATON_SECRET_KEY" in message and str(MIN_SECRET_LENGTH) in message, message
    assert not (clean_env / "data" / "secret_key").exists(), "no key may be generated outside dev"


def test_settings_refuse_a_weak_secret_from_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The way production really sets it: environment variables, not constructor arguments.
    monkeypatch.setenv("BATON_ENV", "prod")
    with pytest.raises(ValidationError, match="BATON_SECRET_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_settings_accept_a_strong_secret_in_prod(clean_env: Path) -> None:
    strong = "k" * MIN_SECRET_LENGTH
    settings = Settings(_env_file=None, BATON_ENV="prod", BATON_SECRET_KEY=strong)  # type: ignore[call-arg]
    assert settings.signing_key == strong


def test_dev_generates_a_secret_once_and_keeps_it_in_the_data_dir(clean_env: Path) -> None:
    data = clean_env / "data"
    first = Settings(_env_file=None, BATON_ENV="dev", BATON_DATA_DIR=data)  # type: ignore[call-arg]
    key = first.signing_key
    path = data / "secret_key"
    assert path.read_text().strip() == key and len(key) >= MIN_SECRET_LENGTH
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the key file must be private"
    # A restart (a new Settings) signs with the same key, so issued tokens stay valid ...
    again = Settings(_env_file=None, BATON_ENV="dev", BATON_DATA_DIR=data)  # type: ignore[call-arg]
    assert again.signing_key == key
    # ... and another data dir is another installation with its own key.
    other = Settings(_env_file=None, BATON_ENV="dev", BATON_DATA_DIR=clean_env / "other")  # type: ignore[call-arg]
    assert other.signing_key != key
    # The placeholder secret counts as no secret in dev too.
    placeholder = Settings(
        _env_file=None,
        BATON_ENV="dev",
        BATON_DATA_DIR=data,
        BATON_SECRET_KEY=DEFAULT_SECRET,  # type: ignore[call-arg]
    )
    assert placeholder.signing_key == key
