"""RQ job functions. Each worker process builds its runtime once, on first use."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from rq import Retry

from orchestrator.db import read_session
from orchestrator.models import Experiment
from orchestrator.models.types import utcnow
from orchestrator.notify import mailer, messages
from orchestrator.runtime import Runtime
from orchestrator.services import maintenance, retention
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_settings(Settings())
    return _runtime


def reap_leases() -> int:
    return maintenance.reap(runtime())


def reconcile_queues() -> dict[str, int]:
    return asdict(maintenance.reconcile(runtime()))


def apply_retention() -> dict[str, Any]:
    return asdict(retention.apply(runtime()))


def notify_retry(settings: Settings) -> Retry | None:
    """Retries of a failed notification, at BATON_NOTIFY_RETRY_SECONDS (none if empty)."""
    intervals = settings.notify_retry_seconds
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def _log_notice(rt: Runtime, line: dict[str, Any]) -> None:
    """Without SMTP, a notice goes to ``notifications.log`` in the data dir."""
    path = rt.settings.data_dir / "notifications.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    log.info("notification: %s", line)


def notify_experiment(*, experiment_id: int) -> str:
    """Tell the owner an experiment ended: an email, or a log line when SMTP is not set up.

    It runs after the commit, in a job of its own: a failing SMTP server fails (and retries)
    only this job, never the experiment's state.
    """
    rt = runtime()
    with read_session(rt.engine) as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is None:
            return "gone"
        if not mailer.configured(rt.settings):
            _log_notice(
                rt,
                {
                    "at": utcnow().isoformat(),
                    "experiment_id": experiment_id,
                    "name": experiment.name,
                    "status": str(experiment.status),
                    "attempts": experiment.attempt_count,
                    "owner_id": experiment.owner_id,
                },
            )
            return "logged"
        message = messages.experiment_ended(session, rt.settings, experiment)
    if message is None:
        return "not wanted"
    mailer.send(rt.settings, message)
    return "sent"


def notify_quota_low(*, platform: str, used: float, allowed: float, account: str = "") -> str:
    """Tell the admins a platform's GPU quota (``used`` / ``allowed`` in seconds) runs low."""
    rt = runtime()
    if not mailer.configured(rt.settings):
        notice = {"platform": platform, "account": account, "used": used, "allowed": allowed}
        _log_notice(rt, {"at": utcnow().isoformat(), "quota_low": notice})
        return "logged"
    with read_session(rt.engine) as session:
        emails = messages.quota_low(
            session, rt.settings, platform=platform, account=account, used=used, allowed=allowed
        )
    for email in emails:
        mailer.send(rt.settings, email)
    return f"sent {len(emails)}"
