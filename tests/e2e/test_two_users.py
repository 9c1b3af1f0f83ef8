"""Two users sharing one control plane: a real `baton serve`, real Redis, real `baton-worker`
processes. Workers belong to people; secrets reach only the jobs that name them."""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from orchestrator.db import make_engine
from orchestrator.models import Attempt
from tests.e2e.conftest import Baton, ExperimentsClient
from tests.support.api import create_user
from tests.support.stack import SECRET, wait_until
from tests.support.workers import forged_lease_calls

PASSWORD = "password123"
# What the agents' environment holds, as a notebook's or `baton up`'s would: the stack's own
# DATABASE_URL, REDIS_URL and BATON_SECRET_KEY, and the notebook's keys.
NOTEBOOK_KEYS = {
    "WANDB_API_KEY": "notebook-wandb-key-0001",
    "HF_TOKEN": "notebook-hf-token-0002",
    "AWS_SECRET_ACCESS_KEY": "notebook-aws-secret-0003",
    "AWS_EC2_METADATA_DISABLED": "true",
}
B_SECRETS = {
    "HF_TOKEN": "bob-hf-secret-1111",
    "WANDB_API_KEY": "bob-wandb-secret-2222",
    "B_EXTRA": "bob-extra-secret-3333",
}
A_UNUSED = "alice-unnamed-secret-4444"
SHOW_ENV = b'env | sort\nwhile [ ! -e "$RELEASE_FILE" ]; do sleep 0.2; done\necho released\n'


@dataclass
class User(ExperimentsClient):
    email: str
    http: httpx.Client
    token_id: int = 0
    token: str = ""

    def log(self, experiment_id: int) -> str:
        reply = self.http.get(f"/api/v1/experiments/{experiment_id}/logs")
        assert reply.status_code == 200, reply.text
        return str(reply.json()["text"])

    def set_secret(self, name: str, value: str) -> None:
        reply = self.http.put(f"/api/v1/secrets/{name}", json={"value": value})
        assert reply.status_code == 200, reply.text


@pytest.fixture
def two_users(baton_factory: Callable[..., Baton]) -> Iterator[tuple[Baton, User, User]]:
    baton = baton_factory()
    people = []
    for email in ("alice@example.com", "bob@example.com"):
        create_user(baton.settings, email, PASSWORD)
        http = httpx.Client(base_url=baton.stack.url, timeout=30)
        login = http.post("/auth/login", data={"username": email, "password": PASSWORD})
        http.headers["Authorization"] = f"Bearer {login.raise_for_status().json()['access_token']}"
        made = http.post("/api/v1/worker-tokens", json={"name": email.split("@")[0]})
        assert made.status_code == 201, made.text
        people.append(User(email, http, made.json()["id"], made.json()["token"]))
    try:
        yield baton, people[0], people[1]
    finally:
        for person in people:
            person.http.close()


def _start_worker(baton: Baton, name: str, user: User) -> Any:
    env = {**baton.stack.env, **NOTEBOOK_KEYS}
    return baton.stack.start_worker(
        name, user.token, "--platform", "local", env=env, token_in_env=True
    )


def _bundle(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _lease_token(baton: Baton, experiment_id: int) -> str:
    """Read from the database, as if B's lease token had leaked: the check must not rely on
    lease tokens being secret."""
    engine = make_engine(baton.settings.resolved_database_url)
    try:
        with Session(engine) as session:
            attempt = session.exec(
                select(Attempt).where(Attempt.experiment_id == experiment_id)
            ).one()
            return attempt.lease_token
    finally:
        engine.dispose()


def _worker_id(baton: Baton, name: str) -> int:
    workers = baton.http.get("/api/v1/workers").json()
    return next(int(w["id"]) for w in workers if w["name"] == name)


def _credentials_in(text: str) -> list[str]:
    """Every credential of the agent, the control plane or an undeclared secret in ``text``."""
    found = re.findall(r"bwt_[A-Za-z0-9_-]+", text)
    names = ("BATON_WORKER_TOKEN", "BATON_SECRET_KEY", "DATABASE_URL", "REDIS_URL")
    found += [name for name in names if name in text]
    values = [SECRET, A_UNUSED, *NOTEBOOK_KEYS.values(), *B_SECRETS.values()]
    return found + [v for v in values if v != "true" and v in text]


def test_two_users_real_server_real_workers(
    two_users: tuple[Baton, User, User], tmp_path: Path
) -> None:
    baton, alice, bob = two_users
    for name, value in B_SECRETS.items():
        bob.set_secret(name, value)
    alice.set_secret("A_UNUSED", A_UNUSED)
    uploaded = bob.http.post(
        "/api/v1/bundles",
        content=_bundle({"show_env.sh": SHOW_ENV}),
        headers={"Content-Type": "application/gzip"},
    )
    assert uploaded.status_code == 201, uploaded.text
    digest = uploaded.json()["digest"]
    release = tmp_path / "release-bob"
    bobs = bob.submit(
        name="bob-env",
        kind="command",
        priority=90,
        code={"bundle": digest},
        config={"command": "sh show_env.sh", "env": {"RELEASE_FILE": str(release)}},
        secrets=["HF_TOKEN"],
    )
    alices = alice.submit(name="alice-env", kind="command", config={"command": "env | sort"})

    # A's job finds no credential in its environment.
    alice_worker = _start_worker(baton, "alice-worker", alice)
    done = alice.wait_status(alices, "succeeded", "failed", "lost")
    assert done["status"] == "succeeded", done
    alice_log = alice.log(alices)
    assert "BATON_EXPERIMENT_ID=" in alice_log and "PATH=" in alice_log, alice_log
    assert _credentials_in(alice_log) == [], alice_log

    # A's worker never receives B's job, though B's is older and more urgent: a worker that
    # could take it would have taken it first. Idle now, it keeps asking; B's job waits.
    alice_worker_id = _worker_id(baton, "alice-worker")
    time.sleep(3)
    snapshot = bob.get(bobs)
    assert snapshot["status"] == "queued" and snapshot["attempts"] == [], snapshot
    assert alice_worker.alive()
    bob_worker = _start_worker(baton, "bob-worker", bob)
    wait_until(lambda: "HF_TOKEN=" in bob.log(bobs), timeout=90, what="B's job to print its env")
    running = bob.get(bobs)
    assert running["status"] == "running"
    assert [a["worker_id"] for a in running["attempts"]] == [_worker_id(baton, "bob-worker")]

    # A's worker token cannot act on B's lease, whatever it knows of it.
    lease = {"lease_token": _lease_token(baton, bobs)}
    as_alice = {"Authorization": f"Bearer {alice.token}"}
    with httpx.Client(base_url=baton.stack.url, headers=as_alice, timeout=30) as thief:
        for verb, body in forged_lease_calls(bobs):
            reply = thief.post(f"/api/v1/leases/{verb}", json={**lease, **body})
            assert reply.status_code == 403, (verb, reply.text)
        bundle = thief.get(f"/api/v1/bundles/{digest}")
        assert bundle.status_code == 403, bundle.text
    after = bob.get(bobs)
    attempt = after["attempts"][0]
    assert after["status"] == "running" and after["result"] is None and after["error"] is None
    assert attempt["outcome"] is None and attempt["progress_step"] != 99
    assert "forged" not in attempt["metrics"] and "forged" not in bob.log(bobs)

    # A cannot read B's secrets through the API...
    mine = alice.http.get("/api/v1/secrets").json()
    assert [s["name"] for s in mine] == ["A_UNUSED"]
    assert alice.http.get(f"/api/v1/experiments/{bobs}").status_code == 404
    assert alice.http.get(f"/api/v1/experiments/{bobs}/logs").status_code == 404
    # ...nor through the web pages (B's values appear in no HTML A can load).
    with httpx.Client(base_url=baton.stack.url, timeout=30) as browser:
        _web_login(browser, alice.email)
        bob_worker_id = _worker_id(baton, "bob-worker")
        for path in (
            "/ui",
            "/ui/experiments",
            "/ui/secrets",
            "/ui/tokens",
            f"/ui/experiments/{bobs}",
            f"/ui/workers/{bob_worker_id}",
            f"/ui/workers/{alice_worker_id}",
            "/ui/api/overview",
            f"/ui/api/workers/{bob_worker_id}",
        ):
            page = browser.get(path)
            assert not [v for v in B_SECRETS.values() if v in page.text], path
            assert A_UNUSED not in page.text, path
    with httpx.Client(base_url=baton.stack.url, timeout=30) as browser:
        _web_login(browser, bob.email)
        names = browser.get("/ui/secrets").text
        assert "HF_TOKEN" in names and "B_EXTRA" in names
        assert not [v for v in B_SECRETS.values() if v in names], "names only, never values"

    # B's job gets exactly the secrets it named.
    release.touch()
    done = bob.wait_status(bobs, "succeeded", "failed", "lost")
    assert done["status"] == "succeeded", done
    bob_log = bob.log(bobs)
    assert f"HF_TOKEN={B_SECRETS['HF_TOKEN']}" in bob_log, bob_log
    assert f"RELEASE_FILE={release}" in bob_log and "released" in bob_log
    assert _credentials_in(bob_log) == [B_SECRETS["HF_TOKEN"]], bob_log
    assert "WANDB_API_KEY=" not in bob_log and "B_EXTRA=" not in bob_log

    # Nor through logs or grants: no process of the stack wrote a secret value anywhere.
    bob_worker.stop()
    alice_worker.stop()
    written = {p.name: p.output() for p in baton.stack.procs}
    notifications = baton.settings.data_dir / "notifications.log"
    if notifications.exists():
        written["notifications"] = notifications.read_text()
    for name, text in written.items():
        leaked = [v for v in [*B_SECRETS.values(), A_UNUSED] if v in text]
        assert leaked == [], (name, leaked)


def _web_login(browser: httpx.Client, email: str) -> None:
    form = browser.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    reply = browser.post(
        "/ui/login", data={"email": email, "password": PASSWORD, "csrf": csrf.group(1)}
    )
    assert reply.status_code in (200, 303), reply.text


def test_a_pool_lends_a_worker_only_work_that_names_no_secrets(
    two_users: tuple[Baton, User, User],
) -> None:
    baton, alice, bob = two_users
    bob.set_secret("HF_TOKEN", B_SECRETS["HF_TOKEN"])
    private = bob.submit(
        name="bob-private",
        kind="command",
        priority=90,
        config={"command": "true"},
        secrets=["HF_TOKEN"],
    )
    shared = bob.submit(name="bob-shared", kind="command", config={"command": "true"})
    bob_id = bob.http.get("/auth/me").json()["id"]
    pool = baton.http.post("/api/v1/pools", json={"name": "lab"})
    assert pool.status_code == 201, pool.text
    for member in (f"users/{bob_id}", f"tokens/{alice.token_id}"):
        reply = baton.http.put(f"/api/v1/pools/{pool.json()['id']}/{member}")
        assert reply.status_code == 200, reply.text

    _start_worker(baton, "alice-worker", alice)
    done = bob.wait_status(shared, "succeeded", "failed", "lost")
    alice_worker = _worker_id(baton, "alice-worker")
    assert done["status"] == "succeeded" and done["attempts"][0]["worker_id"] == alice_worker
    snapshot = bob.get(private)
    assert snapshot["status"] == "queued" and snapshot["attempts"] == [], snapshot

    _start_worker(baton, "bob-worker", bob)
    done = bob.wait_status(private, "succeeded", "failed", "lost")
    assert done["status"] == "succeeded", done
    assert done["attempts"][0]["worker_id"] == _worker_id(baton, "bob-worker")
