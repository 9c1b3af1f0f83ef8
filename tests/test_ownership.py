"""Workers belong to people: per-user worker tokens, pools, routing by owner, lease checks,
per-user secrets. The real app in-process, on SQLite and Postgres, with real Redis."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from orchestrator.db import make_engine
from orchestrator.secretbox import SecretBox
from orchestrator.services import user_secrets
from orchestrator.settings import Settings
from tests.support.api import create_user, login
from tests.support.experiments import submit
from tests.support.workers import bearer, claim, forged_lease_calls, register

ALICE, BOB, ADMIN = "alice@example.com", "bob@example.com", "admin@example.com"
BOB_SECRET = "hf_bob-s-very-own-token-4242"


@dataclass
class Person:
    id: int
    headers: dict[str, str]

    def token(self, client: TestClient, name: str = "mine") -> tuple[int, str]:
        reply = client.post("/api/v1/worker-tokens", json={"name": name}, headers=self.headers)
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["owner_id"] == self.id and body["token"].startswith("bwt_")
        return body["id"], body["token"]


@pytest.fixture
def people(client: TestClient, settings: Settings) -> dict[str, Person]:
    ids = {
        ALICE: create_user(settings, ALICE),
        BOB: create_user(settings, BOB),
        ADMIN: create_user(settings, ADMIN, admin=True),
    }
    return {email: Person(ids[email], login(client, email)) for email in ids}


def _put_secret(client: TestClient, person: Person, name: str, value: str) -> None:
    reply = client.put(f"/api/v1/secrets/{name}", json={"value": value}, headers=person.headers)
    assert reply.status_code == 200, reply.text
    assert value not in reply.text and set(reply.json()) == {"name", "created_at", "updated_at"}


def test_users_make_list_and_revoke_their_own_tokens(
    client: TestClient, people: dict[str, Person]
) -> None:
    alice, bob, admin = people[ALICE], people[BOB], people[ADMIN]
    alice_id, alice_token = alice.token(client, "alice-kaggle")
    bob_id, _ = bob.token(client, "bob-colab")

    listed = client.get("/api/v1/worker-tokens", headers=alice.headers).json()
    assert [t["id"] for t in listed] == [alice_id] and "token" not in listed[0]
    everyone = client.get("/api/v1/worker-tokens", headers=admin.headers).json()
    assert {t["id"] for t in everyone} == {alice_id, bob_id}, "admins list every token"

    # Bob cannot revoke Alice's token: it reads as missing, and it keeps working.
    refused = client.delete(f"/api/v1/worker-tokens/{alice_id}", headers=bob.headers)
    assert refused.status_code == 404, refused.text
    worker = register(client, alice_token)
    revoked = client.delete(f"/api/v1/worker-tokens/{alice_id}", headers=alice.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    after = client.post(f"/api/v1/workers/{worker}/claim?wait=0", headers=bearer(alice_token))
    assert after.status_code == 401


def test_a_worker_takes_only_its_owners_work(client: TestClient, people: dict[str, Person]) -> None:
    alice, bob = people[ALICE], people[BOB]
    _, alice_token = alice.token(client)
    _, bob_token = bob.token(client)
    bobs = submit(client, bob.headers, "bobs", priority=90)  # more urgent than Alice's
    alices = submit(client, alice.headers, "alices")
    alice_worker, bob_worker = register(client, alice_token), register(client, bob_token)

    grant = claim(client, alice_token, alice_worker)
    assert grant is not None and grant["experiment_id"] == alices
    assert claim(client, alice_token, alice_worker) is None, "Bob's job is not Alice's to take"
    grant = claim(client, bob_token, bob_worker)
    assert grant is not None and grant["experiment_id"] == bobs


def test_a_token_acts_only_on_its_own_workers_leases(
    client: TestClient, people: dict[str, Person]
) -> None:
    alice, bob = people[ALICE], people[BOB]
    _, alice_token = alice.token(client)
    _, bob_token = bob.token(client)
    bobs = submit(client, bob.headers, "bobs")
    grant = claim(client, bob_token, register(client, bob_token))
    assert grant is not None
    before = client.get(f"/api/v1/experiments/{bobs}", headers=bob.headers).json()
    lease = {"lease_token": grant["lease_token"]}
    for verb, body in forged_lease_calls(bobs):
        reply = client.post(
            f"/api/v1/leases/{verb}", json={**lease, **body}, headers=bearer(alice_token)
        )
        assert reply.status_code == 403, (verb, reply.text)
    after = client.get(f"/api/v1/experiments/{bobs}", headers=bob.headers).json()
    assert after == before, "nothing changed"
    logs = client.get(f"/api/v1/experiments/{bobs}/logs", headers=bob.headers).json()
    assert logs["text"] == ""


def test_secrets_are_stored_encrypted_and_never_shown(
    client: TestClient, settings: Settings, people: dict[str, Person]
) -> None:
    bob, alice, admin = people[BOB], people[ALICE], people[ADMIN]
    _put_secret(client, bob, "HF_TOKEN", BOB_SECRET)
    _put_secret(client, bob, "HF_TOKEN", BOB_SECRET + "-v2")  # replace
    listed = client.get("/api/v1/secrets", headers=bob.headers)
    assert [s["name"] for s in listed.json()] == ["HF_TOKEN"] and BOB_SECRET not in listed.text
    assert client.get("/api/v1/secrets", headers=alice.headers).json() == []
    assert client.get("/api/v1/secrets", headers=admin.headers).json() == [], "admins too"

    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        [stored] = conn.execute(text("SELECT ciphertext FROM user_secret")).scalars()
    engine.dispose()
    assert BOB_SECRET not in stored
    assert SecretBox(settings.signing_key).open(stored) == BOB_SECRET + "-v2"

    for name in ("lower", "BATON_CONFIG", "PATH", "9LIVES"):
        reply = client.put(f"/api/v1/secrets/{name}", json={"value": "x"}, headers=bob.headers)
        assert reply.status_code == 422, (name, reply.text)
    assert client.delete("/api/v1/secrets/NOPE", headers=bob.headers).status_code == 404
    # Alice deleting "HF_TOKEN" deletes her own (none): Bob's stays.
    assert client.delete("/api/v1/secrets/HF_TOKEN", headers=alice.headers).status_code == 404
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=bob.headers).json()] == [
        "HF_TOKEN"
    ]


def test_a_job_gets_exactly_the_secrets_it_names(
    client: TestClient, people: dict[str, Person]
) -> None:
    bob = people[BOB]
    _put_secret(client, bob, "HF_TOKEN", BOB_SECRET)
    _put_secret(client, bob, "WANDB_API_KEY", "wandb-bob")
    unknown = client.post(
        "/api/v1/experiments",
        json={"name": "x", "kind": "command", "config": {"command": "true"}, "secrets": ["NOPE"]},
        headers=bob.headers,
    )
    assert unknown.status_code == 422 and "NOPE" in unknown.text, unknown.text

    named = submit(client, bob.headers, "needs-hf", secrets=["HF_TOKEN"])
    detail = client.get(f"/api/v1/experiments/{named}", headers=bob.headers)
    assert detail.json()["secrets"] == ["HF_TOKEN"] and BOB_SECRET not in detail.text
    _, token = bob.token(client)
    grant = claim(client, token, register(client, token))
    assert grant is not None and grant["secrets"] == {"HF_TOKEN": BOB_SECRET}

    deleting = client.delete("/api/v1/secrets/HF_TOKEN", headers=bob.headers)
    assert deleting.status_code == 409 and str(named) in deleting.text, "it is still needed"


def test_a_pool_shares_work_that_names_no_secrets(
    client: TestClient, people: dict[str, Person]
) -> None:
    alice, bob, admin = people[ALICE], people[BOB], people[ADMIN]
    alice_token_id, alice_token = alice.token(client)
    _put_secret(client, bob, "HF_TOKEN", BOB_SECRET)
    private = submit(client, bob.headers, "bob-private", priority=90, secrets=["HF_TOKEN"])
    shareable = submit(client, bob.headers, "bob-shareable")
    worker = register(client, alice_token)
    assert claim(client, alice_token, worker) is None

    pool = client.post("/api/v1/pools", json={"name": "lab"}, headers=admin.headers).json()
    for path in (f"users/{bob.id}", f"tokens/{alice_token_id}"):
        reply = client.put(f"/api/v1/pools/{pool['id']}/{path}", headers=admin.headers)
        assert reply.status_code == 200, reply.text
    assert reply.json()["user_ids"] == [bob.id] and reply.json()["token_ids"] == [alice_token_id]

    grant = claim(client, alice_token, worker)
    assert grant is not None and grant["experiment_id"] == shareable and grant["secrets"] == {}
    assert claim(client, alice_token, worker) is None, "work naming secrets stays Bob's own"
    _, bob_token = bob.token(client)
    grant = claim(client, bob_token, register(client, bob_token))
    assert grant is not None and grant["experiment_id"] == private

    # Out of the pool, Alice's worker takes none of Bob's work again.
    client.delete(f"/api/v1/pools/{pool['id']}/tokens/{alice_token_id}", headers=admin.headers)
    later = submit(client, bob.headers, "bob-later")
    assert claim(client, alice_token, worker) is None
    assert client.delete(f"/api/v1/pools/{pool['id']}", headers=admin.headers).status_code == 204
    assert later


def test_rotate_key_re_encrypts_every_secret(
    client: TestClient, settings: Settings, people: dict[str, Person]
) -> None:
    _put_secret(client, people[BOB], "HF_TOKEN", BOB_SECRET)
    new_key = "a-brand-new-signing-key-" + "y" * 40
    engine = make_engine(settings.resolved_database_url)
    from sqlmodel import Session

    with Session(engine) as session:
        assert user_secrets.rotate_key(session, new_key=new_key, old_key=settings.signing_key) == 1
        session.commit()
    with engine.connect() as conn:
        [stored] = conn.execute(text("SELECT ciphertext FROM user_secret")).scalars()
    engine.dispose()
    assert SecretBox(new_key).open(stored) == BOB_SECRET
    with pytest.raises(Exception, match="does not decrypt"):
        SecretBox(settings.signing_key).open(stored)
