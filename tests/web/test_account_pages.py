"""The user's own pages: "My worker tokens" (create, shown once; revoke) and "Secrets" (names
only), in-process against the real app (SQLite and Postgres, real Redis)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from orchestrator.settings import Settings
from tests.support.api import create_user, login
from tests.support.web import web_login
from tests.support.workers import bearer

USER, OTHER = "user@example.com", "other@example.com"
VALUE = "wandb-value-never-rendered-5150"


def test_tokens_page_creates_shows_once_and_revokes(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    create_user(settings, OTHER)
    other = client.post(
        "/api/v1/worker-tokens", json={"name": "others-colab"}, headers=login(client, OTHER)
    ).json()
    csrf = web_login(client, USER)

    refused = client.post("/ui/tokens", data={"name": "no-csrf"})
    assert refused.status_code == 403
    made = client.post("/ui/tokens", data={"name": "my-kaggle", "csrf": csrf})
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    token = re.search(r"<code class=\"token\" data-token>(bwt_[^<]+)</code>", made.text)
    assert token is not None, made.text
    secret = token.group(1)
    assert (
        client.post("/api/v1/workers/register", json={}, headers=bearer(secret)).status_code == 201
    )

    page = client.get("/ui/tokens").text
    assert "my-kaggle" in page and secret not in page, "shown once, never again"
    assert "others-colab" not in page
    [token_id] = re.findall(r'action="/ui/tokens/(\d+)/revoke"', page)

    foreign = client.post(f"/ui/tokens/{other['id']}/revoke", data={"csrf": csrf})
    assert foreign.status_code == 404, "another user's token reads as missing"
    revoked = client.post(f"/ui/tokens/{token_id}/revoke", data={"csrf": csrf})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert (
        client.post("/api/v1/workers/register", json={}, headers=bearer(secret)).status_code == 401
    )


def test_secrets_page_sets_lists_names_and_deletes(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    create_user(settings, OTHER)
    csrf = web_login(client, USER)
    stored = client.post(
        "/ui/secrets", data={"name": "WANDB_API_KEY", "value": VALUE, "csrf": csrf}
    )
    assert stored.status_code == 200 and "Secret WANDB_API_KEY set." in stored.text
    page = client.get("/ui/secrets").text
    assert "<code>WANDB_API_KEY</code>" in page and VALUE not in page
    bad = client.post("/ui/secrets", data={"name": "BATON_CONFIG", "value": "x", "csrf": csrf})
    assert "belong to Baton" in bad.text and "BATON_CONFIG</code>" not in bad.text

    api = login(client, USER)
    assert [s["name"] for s in client.get("/api/v1/secrets", headers=api).json()] == [
        "WANDB_API_KEY"
    ]
    client.cookies.clear()
    web_login(client, OTHER)
    assert "WANDB_API_KEY" not in client.get("/ui/secrets").text, "another user's names too"

    client.cookies.clear()
    csrf = web_login(client, USER)
    gone = client.post("/ui/secrets/WANDB_API_KEY/delete", data={"csrf": csrf})
    assert gone.status_code == 200 and "deleted" in gone.text
    assert client.get("/api/v1/secrets", headers=api).json() == []
    for path in ("/ui", "/ui/experiments", "/ui/tokens"):
        assert VALUE not in client.get(path).text, path
