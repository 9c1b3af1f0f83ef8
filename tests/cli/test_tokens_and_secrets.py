"""`baton tokens` and `baton secrets` as real subprocesses against a real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from orchestrator.db import make_engine
from orchestrator.secretbox import SecretBox
from tests.e2e.conftest import ADMIN, Baton
from tests.support.api import create_user
from tests.support.cli import Cli
from tests.support.workers import bearer

pytestmark = pytest.mark.e2e

VALUE = "hf_value-only-the-server-sees-9999"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "config")


def test_a_logged_in_user_makes_lists_and_revokes_their_tokens(
    baton_factory: Callable[..., Baton], cli: Cli
) -> None:
    baton = baton_factory()
    create_user(baton.settings, "carol@example.com", "password123")
    cli.login(baton.stack.url, "carol@example.com", "password123")

    made = cli("tokens", "create", "--name", "carol-colab")
    assert made.code == 0, made
    token = made.stdout.strip()
    assert token.startswith("bwt_") and "\n" not in token, "the token alone, on stdout"
    register = baton.http.post(
        "/api/v1/workers/register", json={"name": "w"}, headers=bearer(token)
    )
    assert register.status_code == 201, register.text

    listed = cli("tokens", "ls", "--json")
    assert listed.code == 0, listed
    (row,) = listed.json()
    me = baton.http.get("/api/v1/users").json()
    carol = next(u["id"] for u in me if u["email"] == "carol@example.com")
    assert (row["name"], row["owner_id"], row["revoked_at"]) == ("carol-colab", carol, None)
    assert token not in listed.stdout

    revoked = cli("tokens", "revoke", str(row["id"]))
    assert revoked.code == 0 and "revoked" in revoked.stderr, revoked
    again = baton.http.post("/api/v1/workers/register", json={"name": "w"}, headers=bearer(token))
    assert again.status_code == 401
    foreign = cli("tokens", "revoke", "1")  # the admin's token, made by the test stack
    assert foreign.code == 1 and "not found" in foreign.stderr, foreign


def test_tokens_create_local_writes_the_database_for_the_first_admin(
    baton_factory: Callable[..., Baton], cli: Cli
) -> None:
    baton = baton_factory()
    env = {
        name: baton.stack.env[name]
        for name in ("DATABASE_URL", "BATON_SECRET_KEY", "BATON_ENV", "BATON_DATA_DIR")
    }
    made = cli("tokens", "create", "--name", "bootstrap", "--local", env=env)
    unknown = cli("tokens", "create", "--name", "x", "--local", "--owner", "nobody@x.org", env=env)
    assert made.code == 0, made
    assert unknown.code == 1 and "no user nobody@x.org" in unknown.stderr, unknown
    tokens = baton.http.get("/api/v1/worker-tokens").json()
    admin = baton.http.get("/auth/me").json()
    assert any(t["name"] == "bootstrap" and t["owner_id"] == admin["id"] for t in tokens)
    assert made.stdout.strip().startswith("bwt_")


def test_secrets_set_reads_stdin_and_the_value_never_comes_back(
    baton_factory: Callable[..., Baton], cli: Cli
) -> None:
    baton = baton_factory()
    cli.login(baton.stack.url, *ADMIN)

    stored = cli("secrets", "set", "HF_TOKEN", input=VALUE + "\n")
    assert stored.code == 0 and "HF_TOKEN set" in stored.stderr, stored
    assert VALUE not in stored.stdout + stored.stderr
    listed = cli("secrets", "ls")
    assert listed.code == 0 and "HF_TOKEN" in listed.stdout and VALUE not in listed.stdout

    nothing = cli("secrets", "set", "EMPTY", input="")
    assert nothing.code == 2 and "no value" in nothing.stderr, nothing
    bad = cli("secrets", "set", "lower-case", input="x")
    assert bad.code == 1 and "invalid" in bad.stderr, bad

    # Stored as given (the one trailing newline a pipe adds dropped), encrypted.
    engine = make_engine(baton.settings.resolved_database_url)
    with engine.connect() as conn:
        [sealed] = conn.execute(text("SELECT ciphertext FROM user_secret")).scalars()
    assert SecretBox(baton.settings.signing_key).open(sealed) == VALUE

    # A new BATON_SECRET_KEY: rotate-key (new key in the environment, old on stdin).
    new_key = "the-next-signing-key-" + "z" * 40
    server = {name: baton.stack.env[name] for name in ("DATABASE_URL", "BATON_ENV")}
    rotated = cli(
        "secrets",
        "rotate-key",
        input=baton.settings.signing_key + "\n",
        env={**server, "BATON_SECRET_KEY": new_key},
    )
    assert rotated.code == 0 and "re-encrypted 1 secret" in rotated.stderr, rotated
    with engine.connect() as conn:
        [resealed] = conn.execute(text("SELECT ciphertext FROM user_secret")).scalars()
    engine.dispose()
    assert SecretBox(new_key).open(resealed) == VALUE
    other = {**server, "BATON_SECRET_KEY": "yet-another-signing-key-" + "w" * 40}
    wrong = cli("secrets", "rotate-key", input="not-the-old-key\n", env=other)
    assert wrong.code == 1 and "nothing was changed" in wrong.stderr, wrong

    removed = cli("secrets", "rm", "HF_TOKEN")
    assert removed.code == 0, removed
    assert cli("secrets", "ls", "--json").json() == []
