"""What the emails say: a plain-text and an HTML body per notice, from Jinja2 templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlmodel import Session, col, select

from orchestrator.models import Attempt, Experiment, ExperimentStatus, Role, User, Worker
from orchestrator.settings import Settings
from orchestrator.urls import public_url

# The endings worth an email; a canceled experiment was the user's own doing.
NOTIFIED = frozenset({ExperimentStatus.succeeded, ExperimentStatus.failed, ExperimentStatus.lost})
SUMMARY = {
    ExperimentStatus.succeeded: "finished successfully",
    ExperimentStatus.failed: "failed: the job itself exited with an error",
    ExperimentStatus.lost: "was lost: its worker's session died (no heartbeat) too often",
}
VALUE_CHARS = 200

_templates = Environment(
    loader=PackageLoader("orchestrator.notify"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class AttemptRow:
    number: int
    where: str
    outcome: str
    ran_for: str
    reason: str | None


def ui_link(settings: Settings, *, path: str = "") -> str:
    """A page of the web UI (``orchestrator/web``, mounted at ``/ui``)."""
    return public_url(settings, f"/ui{path}")


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _value(value: Any) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else json.dumps(value, default=str)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _pairs(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [(key, _value(value)) for key, value in sorted((values or {}).items())]


def _seconds(start: datetime, end: datetime | None) -> float:
    return ((end or start) - start).total_seconds()


def _where(attempt: Attempt, worker_names: dict[int | None, str]) -> str:
    platform = attempt.platform or "unknown platform"
    name = worker_names.get(attempt.worker_id)
    return f"{platform}, worker {name}" if name else platform


def experiment_ended(
    session: Session, settings: Settings, experiment: Experiment
) -> EmailMessage | None:
    """The owner's email about how ``experiment`` ended; None if they want none."""
    if experiment.status not in NOTIFIED or not experiment.notify:
        return None
    owner = session.get(User, experiment.owner_id)
    if owner is None or not owner.is_active or not owner.notify_email:
        return None
    attempts = session.exec(
        select(Attempt).where(Attempt.experiment_id == experiment.id).order_by(col(Attempt.number))
    ).all()
    worker_ids = [a.worker_id for a in attempts if a.worker_id is not None]
    worker_names = {
        w.id: w.name for w in session.exec(select(Worker).where(col(Worker.id).in_(worker_ids)))
    }
    rows = [
        AttemptRow(
            number=a.number,
            where=_where(a, worker_names),
            outcome=str(a.outcome or "open"),
            ran_for=duration(_seconds(a.started_at, a.ended_at)),
            reason=a.reason,
        )
        for a in attempts
    ]
    last = attempts[-1] if attempts else None
    context = {
        "name": experiment.name,
        "experiment_id": experiment.id,
        "kind": experiment.kind,
        "status": str(experiment.status),
        "summary": SUMMARY[experiment.status],
        "error": experiment.error,
        "where": rows[-1].where if rows else "nowhere (it never ran)",
        "ran_for": duration(sum(_seconds(a.started_at, a.ended_at) for a in attempts)),
        "wall": duration(_seconds(experiment.created_at, experiment.finished_at)),
        "attempts": rows,
        "metrics": _pairs(last.metrics if last else None),
        "result": _pairs(experiment.result),
        "link": ui_link(settings, path=f"/experiments/{experiment.id}"),
    }
    subject = f"[Baton] {experiment.name} (#{experiment.id}) {experiment.status}"
    return _compose(
        settings, to=owner.email, subject=subject, template="experiment", context=context
    )


def quota_low(
    session: Session,
    settings: Settings,
    *,
    platform: str,
    account: str,
    used: float,
    allowed: float,
) -> list[EmailMessage]:
    """One email per admin who wants email: a platform's GPU quota (seconds) is running out."""
    admins = session.exec(
        select(User).where(User.role == Role.admin, col(User.is_active), col(User.notify_email))
    ).all()
    context = {
        "platform": platform,
        "account": account,
        "used_hours": used / 3600,
        "allowed_hours": allowed / 3600,
        "left_hours": max(allowed - used, 0) / 3600,
        "percent": 100 * used / allowed if allowed else 100.0,
        "link": ui_link(settings),
    }
    subject = f"[Baton] {platform} GPU quota low: {context['left_hours']:.1f} h left"
    return [
        _compose(settings, to=admin.email, subject=subject, template="quota_low", context=context)
        for admin in admins
    ]


def _compose(
    settings: Settings, *, to: str, subject: str, template: str, context: dict[str, Any]
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    message.set_content(_templates.get_template(f"{template}.txt").render(**context))
    message.add_alternative(
        _templates.get_template(f"{template}.html").render(**context), subtype="html"
    )
    return message
