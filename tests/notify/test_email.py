"""Emails through a real SMTP server, sent by the RQ job the state machine enqueues."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.results import Result

from orchestrator.background import tasks
from orchestrator.services import maintenance
from tests.notify.conftest import FROM, PUBLIC_URL, SMTP_USER, ControlPlane, StartSmtp, smtp_env
from tests.support.api import create_user, login
from tests.support.experiments import submit
from tests.support.rq import run_jobs
from tests.support.stack import free_port, wait_until
from tests.support.workers import claim, finish, register

METRICS = {"loss": 0.125, "accuracy": 0.93}


def _user(cp: ControlPlane, email: str, **fields: Any) -> dict[str, str]:
    create_user(cp.settings, email, **fields)
    return login(cp.client, email)


def _run(cp: ControlPlane, user: dict[str, str], name: str, *endings: str, **fields: Any) -> int:
    """Submit an experiment and play each attempt's ending as a worker on Kaggle would."""
    experiment_id = submit(cp.client, user, name, max_attempts=len(endings), **fields)
    token = _token(cp, user)
    worker = register(cp.client, token, name="kaggle-t4", platform="kaggle")
    for ending in endings:
        grant = claim(cp.client, token, worker)
        assert grant is not None and grant["experiment_id"] == experiment_id
        finish(cp.client, token, "heartbeat", grant, progress_step=40, metrics=METRICS)
        if ending == "complete":
            finish(cp.client, token, "complete", grant, result={"score": 0.75})
        else:
            finish(cp.client, token, "fail", grant, exit_code=3, reason="exit code 3")
    return experiment_id


def _token(cp: ControlPlane, user: dict[str, str]) -> str:
    """The worker token of the logged-in ``user``: their workers take their work."""
    return cp.worker_token(cp.client.get("/auth/me", headers=user).json()["email"])


def _experiment(cp: ControlPlane, user: dict[str, str], experiment_id: int) -> dict[str, Any]:
    body: dict[str, Any] = cp.client.get(
        f"/api/v1/experiments/{experiment_id}", headers=user
    ).json()
    return body


def test_completion_email_over_starttls_with_login(
    control_plane: Callable[..., ControlPlane], smtp_server: StartSmtp
) -> None:
    smtp = smtp_server("starttls")
    cp = control_plane(**smtp_env(port=smtp.port, security="starttls"))
    user = _user(cp, "ada@example.com")
    experiment_id = _run(cp, user, "train-resnet", "complete")

    run_jobs(cp.runtime)

    assert smtp.mailbox.logins == [SMTP_USER]
    [mail] = smtp.mailbox.received
    assert mail.rcpt_tos == ["ada@example.com"]
    assert mail.message["To"] == "ada@example.com" and mail.message["From"] == FROM
    assert mail.message["Subject"] == f"[Baton] train-resnet (#{experiment_id}) succeeded"
    link = f"{PUBLIC_URL}/ui/experiments/{experiment_id}"  # the web UI's experiment page
    text = mail.body("plain")
    for expected in (
        'Experiment "train-resnet"',
        "Status:   succeeded",
        "Where:    kaggle, worker kaggle-t4",
        "Attempts: 1",
        "#1  succeeded",
        "loss: 0.125",
        "accuracy: 0.93",
        "score: 0.75",
        link,
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    html = mail.body("html")
    assert f'<a href="{link}">' in html and "<td>succeeded</td>" in html and "train-resnet" in html


def test_failure_and_lost_emails_over_implicit_tls(
    control_plane: Callable[..., ControlPlane], smtp_server: StartSmtp
) -> None:
    smtp = smtp_server("ssl")
    cp = control_plane(**smtp_env(port=smtp.port, security="ssl"))
    user = _user(cp, "bob@example.com")
    failed = _run(cp, user, "broken-run", "fail", "fail")
    # A session that dies: the lease expires, the reaper marks the attempt lost.
    lost = submit(cp.client, user, "vanishing-run", max_attempts=1)
    worker = register(cp.client, _token(cp, user), name="colab-1", platform="colab")
    assert claim(cp.client, _token(cp, user), worker) is not None
    wait_until(lambda: maintenance.reap(cp.runtime) == 1, timeout=15, interval=0.5, what="reap")

    run_jobs(cp.runtime)

    mails = {m.message["Subject"]: m for m in smtp.mailbox.received}
    assert set(mails) == {
        f"[Baton] broken-run (#{failed}) failed",
        f"[Baton] vanishing-run (#{lost}) lost",
    }
    text = mails[f"[Baton] broken-run (#{failed}) failed"].body("plain")
    for expected in (
        "Status:   failed",
        "Attempts: 2",
        "Error:    exit code 3",
        "#1  failed",
        "#2  failed",
    ):
        assert expected in text, f"{expected!r} missing from:\n{text}"
    text = mails[f"[Baton] vanishing-run (#{lost}) lost"].body("plain")
    assert "Status:   lost" in text and "colab, worker colab-1" in text and "lease expired" in text
    assert all(m.rcpt_tos == ["bob@example.com"] for m in smtp.mailbox.received)


def _notify_job(cp: ControlPlane) -> Job:
    [job_id] = ScheduledJobRegistry(queue=cp.runtime.queue).get_job_ids()
    return Job.fetch(job_id, connection=cp.runtime.redis)


def test_smtp_down_is_retried_and_never_touches_the_experiment(
    control_plane: Callable[..., ControlPlane], smtp_server: StartSmtp
) -> None:
    port = free_port()  # nothing listens here yet
    cp = control_plane(**smtp_env(port=port, security="none", BATON_NOTIFY_RETRY_SECONDS=[1, 1]))
    user = _user(cp, "cy@example.com")
    experiment_id = _run(cp, user, "while-smtp-is-down", "complete")  # the API call succeeded
    before = _experiment(cp, user, experiment_id)
    assert before["status"] == "succeeded"

    run_jobs(cp.runtime)
    job = _notify_job(cp)
    assert job.func_name == "orchestrator.background.tasks.notify_experiment"
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 1
    time.sleep(1.2)
    run_jobs(cp.runtime)
    job = _notify_job(cp)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 0
    time.sleep(1.2)
    run_jobs(cp.runtime)
    job.refresh()
    last = job.latest_result()
    assert job.get_status() == JobStatus.FAILED and last is not None
    assert last.type == Result.Type.FAILED and "ConnectionRefusedError" in (last.exc_string or "")
    assert _experiment(cp, user, experiment_id) == before

    # The server comes back between two tries: the retry delivers.
    second = _run(cp, user, "smtp-comes-back", "complete")
    run_jobs(cp.runtime)
    job = _notify_job(cp)
    smtp = smtp_server("none", port=port)
    time.sleep(1.2)
    run_jobs(cp.runtime)
    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "sent"
    [mail] = smtp.mailbox.received
    assert mail.message["Subject"] == f"[Baton] smtp-comes-back (#{second}) succeeded"
    assert _experiment(cp, user, experiment_id) == before


def test_opted_out_users_and_experiments_get_nothing(
    control_plane: Callable[..., ControlPlane], smtp_server: StartSmtp
) -> None:
    smtp = smtp_server("none")
    cp = control_plane(**smtp_env(port=smtp.port, security="none"))
    quiet_user = _user(cp, "quiet@example.com", notify_email=False)
    _run(cp, quiet_user, "nobody-wants-mail", "complete")
    [job_id] = cp.runtime.queue.job_ids
    run_jobs(cp.runtime)
    assert Job.fetch(job_id, connection=cp.runtime.redis).return_value() == "not wanted"

    user = _user(cp, "loud@example.com")
    _run(cp, user, "this-one-muted", "complete", notify=False)
    assert cp.runtime.queue.job_ids == [], "an experiment with notify=false enqueues no email"
    run_jobs(cp.runtime)
    assert smtp.mailbox.received == []


def test_quota_low_email_goes_to_admins_who_want_it(
    control_plane: Callable[..., ControlPlane], smtp_server: StartSmtp
) -> None:
    smtp = smtp_server("none")
    cp = control_plane(**smtp_env(port=smtp.port, security="none"))
    create_user(cp.settings, "admin@example.com", admin=True)
    create_user(cp.settings, "quiet-admin@example.com", admin=True, notify_email=False)
    create_user(cp.settings, "user@example.com")

    cp.runtime.queue.enqueue(
        tasks.notify_quota_low,
        platform="kaggle",
        account="ada",
        used=27 * 3600,
        allowed=30 * 3600,
        retry=tasks.notify_retry(cp.settings),
    )
    run_jobs(cp.runtime)

    [mail] = smtp.mailbox.received
    assert mail.rcpt_tos == ["admin@example.com"]
    assert mail.message["Subject"] == "[Baton] kaggle GPU quota low: 3.0 h left"
    text = mail.body("plain")
    assert "account ada" in text and "27.0 h of 30.0 h (90%)" in text and "3.0 h" in text
