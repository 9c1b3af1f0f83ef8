"""The web UI in-process against the real app (SQLite and Postgres, real Redis): sessions,
CSRF, who sees what, and the admin actions on workers."""

from __future__ import annotations

from fastapi import Response
from fastapi.testclient import TestClient

from orchestrator.settings import Settings
from orchestrator.web import session as web_session
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import submit
from tests.support.web import csrf_of, web_login
from tests.support.workers import bearer, claim, register

ADMIN, USER, OTHER = "admin@example.com", "user@example.com", "other@example.com"


def _heartbeat(client: TestClient, token: str, grant: dict[str, object], **report: object) -> None:
    body = {"lease_token": grant["lease_token"], **report}
    reply = client.post("/api/v1/leases/heartbeat", json=body, headers=bearer(token))
    assert reply.status_code == 200, reply.text


def _status(client: TestClient, api: dict[str, str], experiment_id: int) -> str:
    status: str = client.get(f"/api/v1/experiments/{experiment_id}", headers=api).json()["status"]
    return status


def test_login_sets_a_hardened_session_cookie(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    form = client.get("/ui/login")
    reply = client.post(
        "/ui/login",
        data={"email": USER, "password": "password123", "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/ui"
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie, "Secure only when BATON_PUBLIC_URL is https"
    page = client.get("/ui")
    assert page.status_code == 200 and USER in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_cookie_is_secure_behind_https(settings: Settings) -> None:
    response = Response()
    https = settings.model_copy(update={"public_url": "https://baton.example"})
    web_session.set_cookie(response, https, web_session.new_session(1))
    assert "secure" in response.headers["set-cookie"].lower()


def test_wrong_password_is_refused(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    form = client.get("/ui/login")
    reply = client.post(
        "/ui/login", data={"email": USER, "password": "nope-nope", "csrf": csrf_of(form.text)}
    )
    assert reply.status_code == 401 and "Wrong email or password" in reply.text
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_pages_need_a_session(client: TestClient) -> None:
    page = client.get("/ui/experiments/1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login?next=/ui/experiments/1"
    live = client.get("/ui/api/overview")
    assert live.status_code == 401 and live.json()["code"] == "not_authenticated"


def test_forged_or_tampered_cookie_is_no_session(client: TestClient, settings: Settings) -> None:
    user_id = create_user(settings, USER)
    forged = web_session.encode(
        settings.model_copy(update={"secret_key": "another-secret-" + "y" * 40}),
        web_session.new_session(user_id),
    )
    client.cookies.set(web_session.COOKIE, forged, path="/ui")
    assert client.get("/ui", follow_redirects=False).status_code == 303
    genuine = web_session.encode(settings, web_session.new_session(user_id))
    body, mac = genuine.split(".")
    client.cookies.set(web_session.COOKIE, body[:-2] + "xx." + mac, path="/ui")
    assert client.get("/ui", follow_redirects=False).status_code == 303
    client.cookies.set(web_session.COOKIE, genuine, path="/ui")
    assert client.get("/ui", follow_redirects=False).status_code == 200


def test_login_next_stays_inside_the_ui(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    form = client.get("/ui/login", params={"next": "https://evil.example/ui"})
    reply = client.post(
        "/ui/login",
        data={
            "email": USER,
            "password": "password123",
            "csrf": csrf_of(form.text),
            "next": "//evil.example/ui",
        },
        follow_redirects=False,
    )
    assert reply.headers["location"] == "/ui"


def test_posts_without_the_csrf_token_are_refused(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    api = login(client, USER)
    experiment_id = submit(client, api, "victim")
    form = client.get("/ui/login")
    no_token = client.post("/ui/login", data={"email": USER, "password": "password123"})
    assert no_token.status_code == 403, "the login form is CSRF-protected too"
    csrf = web_login(client, USER)
    assert csrf != csrf_of(form.text), "logging in starts a new session"

    for data in ({}, {"csrf": "forged"}, {"csrf": csrf_of(form.text)}):
        reply = client.post(f"/ui/experiments/{experiment_id}/cancel", data=data)
        assert reply.status_code == 403 and "CSRF" in reply.text
    assert _status(client, api, experiment_id) == "queued"

    reply = client.post(f"/ui/experiments/{experiment_id}/cancel", data={"csrf": csrf})
    assert reply.status_code == 200 and "canceled" in reply.text
    assert _status(client, api, experiment_id) == "canceled"


def test_cancel_twice_says_why_and_retry_requeues(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    api = login(client, USER)
    experiment_id = submit(client, api, "again")
    csrf = web_login(client, USER)
    client.post(f"/ui/experiments/{experiment_id}/cancel", data={"csrf": csrf})
    second = client.post(f"/ui/experiments/{experiment_id}/cancel", data={"csrf": csrf})
    assert second.status_code == 200 and "already canceled" in second.text
    retried = client.post(f"/ui/experiments/{experiment_id}/retry", data={"csrf": csrf})
    assert retried.status_code == 200 and "queued again" in retried.text
    assert _status(client, api, experiment_id) == "queued"


def test_users_see_their_own_experiments_admins_all(client: TestClient, settings: Settings) -> None:
    create_user(settings, ADMIN, admin=True)
    create_user(settings, USER)
    create_user(settings, OTHER)
    mine = submit(client, login(client, USER), "mine")
    theirs = submit(client, login(client, OTHER), "theirs-secret")

    csrf = web_login(client, USER)
    assert client.get(f"/ui/experiments/{mine}").status_code == 200
    page = client.get(f"/ui/experiments/{theirs}")
    assert page.status_code == 404 and "theirs-secret" not in page.text
    assert client.get(f"/ui/api/experiments/{theirs}").status_code == 404
    refused = client.post(f"/ui/experiments/{theirs}/cancel", data={"csrf": csrf})
    assert refused.status_code == 404
    listing = client.get("/ui/experiments").text
    assert "mine" in listing and "theirs-secret" not in listing
    assert "theirs-secret" not in client.get("/ui").text

    client.cookies.clear()
    web_login(client, ADMIN)
    assert client.get(f"/ui/experiments/{theirs}").status_code == 200
    assert "theirs-secret" in client.get("/ui/experiments").text


def test_drain_gives_the_worker_nothing_until_undrained(
    client: TestClient, settings: Settings
) -> None:
    create_user(settings, ADMIN, admin=True)
    api = login(client, ADMIN)
    token = create_worker_token(settings)
    worker_id = register(client, token)
    first = submit(client, api, "first")
    second = submit(client, api, "second")
    grant = claim(client, token, worker_id)
    assert grant is not None and grant["experiment_id"] == first

    csrf = web_login(client, ADMIN)
    reply = client.post(f"/ui/workers/{worker_id}/drain", data={"csrf": csrf, "draining": "true"})
    assert reply.status_code == 200 and "takes no more" in reply.text
    assert claim(client, token, worker_id, wait=0.5) is None, "a draining worker gets no new job"
    _heartbeat(client, token, grant, progress_step=1)  # its current job carries on

    client.post(f"/ui/workers/{worker_id}/drain", data={"csrf": csrf, "draining": "false"})
    again = claim(client, token, worker_id)
    assert again is not None and again["experiment_id"] == second


def test_revoke_token_locks_the_worker_out(client: TestClient, settings: Settings) -> None:
    create_user(settings, ADMIN, admin=True)
    token = create_worker_token(settings)
    worker_id = register(client, token)
    csrf = web_login(client, ADMIN)
    reply = client.post(f"/ui/workers/{worker_id}/revoke-token", data={"csrf": csrf})
    assert reply.status_code == 200 and "revoked" in reply.text
    refused = client.post(f"/api/v1/workers/{worker_id}/claim", headers=bearer(token))
    assert refused.status_code == 401


def test_worker_actions_are_for_admins(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    token = create_worker_token(settings)
    worker_id = register(client, token)
    csrf = web_login(client, USER)
    page = client.get(f"/ui/workers/{worker_id}")
    assert page.status_code == 200 and "Revoke token" not in page.text
    for action in ("drain", "revoke-token"):
        reply = client.post(f"/ui/workers/{worker_id}/{action}", data={"csrf": csrf})
        assert reply.status_code == 403
    assert claim(client, token, worker_id) is None  # still allowed in: nothing changed


def test_overview_and_live_json_show_a_running_job(client: TestClient, settings: Settings) -> None:
    create_user(settings, ADMIN, admin=True)
    api = login(client, ADMIN)
    token = create_worker_token(settings)
    worker_id = register(client, token, name="kaggle-1", platform="kaggle", gpu_count=1)
    experiment_id = submit(client, api, "trainer", kind="demo.counter", config={"steps": 40})
    # More urgent, but this worker has too little GPU memory for it: it stays queued.
    submit(client, api, "waiting", priority=7, resources={"min_gpu_memory_gb": 24})
    grant = claim(client, token, worker_id)
    assert grant is not None
    _heartbeat(client, token, grant, progress_step=10, progress_total=40)
    web_login(client, ADMIN)

    live = client.get("/ui/api/overview")
    assert live.status_code == 200 and live.headers["cache-control"] == "no-store"
    sections = live.json()["sections"]
    assert 'aria-valuenow="10"' in sections["running"] and "10 / 40" in sections["running"]
    assert "p7 \N{MULTIPLICATION SIGN} 1" in sections["queue"]
    assert "<code>gpu.mem24576</code>" in sections["queue"]
    assert "kaggle-1" in sections["workers"] and "trainer" in sections["workers"]
    assert "kaggle" in sections["usage"]
    page = client.get("/ui").text
    for html in sections.values():
        assert html in page, "the page and its live twin render the same fragments"
    assert f'href="/ui/experiments/{experiment_id}"' in page


def test_metrics_from_heartbeats_make_a_chart(client: TestClient, settings: Settings) -> None:
    create_user(settings, USER)
    api = login(client, USER)
    token = create_worker_token(settings)
    worker_id = register(client, token)
    experiment_id = submit(client, api, "learner")
    grant = claim(client, token, worker_id)
    assert grant is not None
    for step, loss in ((1, 2.0), (2, 1.0), (2, 1.0), (3, 0.5)):  # the repeat is stored once
        _heartbeat(client, token, grant, progress_step=step, metrics={"loss": loss})
    web_login(client, USER)
    live = client.get(f"/ui/api/experiments/{experiment_id}").json()
    metrics = live["sections"]["metrics"]
    assert "<code>loss</code>" in metrics and "latest 0.5" in metrics
    points = metrics.split('points="')[1].split('"')[0].split()
    assert len(points) == 3
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] < ys[1] < ys[2], "loss falls, so the line goes down the chart (SVG y grows down)"
    assert live["status"] == "running" and live["log"]["attempt"] == 1
