"""Per-user secrets: set, list (names and dates), delete, hand to the owner's own jobs.

A value goes in once and never comes out through the API, the web page, logs or emails. The
only way out is a Grant to one of its owner's own workers, for an experiment that names it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.models import Experiment, User, UserSecret
from orchestrator.models.experiment import FINAL_STATUSES
from orchestrator.models.secret import secret_name_problem
from orchestrator.models.types import utcnow
from orchestrator.secretbox import SecretBox, SecretUnreadable
from orchestrator.settings import Settings


class SecretUnavailable(Exception):
    """A named secret is gone or unreadable when its job is about to start."""


def box(settings: Settings) -> SecretBox:
    return SecretBox(settings.signing_key)


def _check_name(name: str) -> None:
    if problem := secret_name_problem(name):
        raise Invalid(problem)


def _row(session: Session, user_id: int, name: str) -> UserSecret | None:
    return session.exec(
        select(UserSecret).where(UserSecret.user_id == user_id, UserSecret.name == name)
    ).one_or_none()


def put(session: Session, settings: Settings, *, user: User, name: str, value: str) -> UserSecret:
    """Create or replace ``name``; returns the row (the caller shows names and dates only)."""
    _check_name(name)
    assert user.id is not None
    sealed = box(settings).seal(value)
    row = _row(session, user.id, name)
    if row is None:
        row = UserSecret(user_id=user.id, name=name, ciphertext=sealed)
    else:
        row.ciphertext = sealed
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def list_for(session: Session, *, user: User) -> Sequence[UserSecret]:
    return session.exec(
        select(UserSecret).where(UserSecret.user_id == user.id).order_by(col(UserSecret.name))
    ).all()


def delete(session: Session, *, user: User, name: str) -> None:
    """404 for a name never set; 409 while an unfinished experiment of the user names it."""
    assert user.id is not None
    row = _row(session, user.id, name)
    if row is None:
        raise NotFound(f"no secret named {name}")
    waiting = session.exec(
        select(Experiment.id, Experiment.secrets).where(
            Experiment.owner_id == user.id, col(Experiment.status).not_in(FINAL_STATUSES)
        )
    ).all()
    needing = sorted(i for i, names in waiting if i is not None and name in (names or []))
    if needing:
        raise Conflict(
            f"secret {name} is named by unfinished experiment(s) {needing}: "
            "cancel them or let them finish first",
            experiments=needing,
        )
    session.delete(row)


def check_named(session: Session, *, user: User, names: list[str], field: str) -> None:
    """422 naming every secret an experiment asks for that its owner has not set."""
    if not names:
        return
    known = set(
        session.exec(
            select(UserSecret.name).where(
                UserSecret.user_id == user.id, col(UserSecret.name).in_(names)
            )
        ).all()
    )
    unknown = [n for n in names if n not in known]
    if unknown:
        raise Invalid(
            f"{field}secrets: no secret named {', '.join(unknown)} "
            "(set it first: `baton secrets set NAME`, or PUT /api/v1/secrets/NAME)"
        )


def values_for(
    session: Session, settings: Settings, *, owner_id: int, names: list[str]
) -> dict[str, str]:
    """The decrypted values of ``names``, for a grant to one of the owner's own workers."""
    if not names:
        return {}
    rows = session.exec(
        select(UserSecret).where(UserSecret.user_id == owner_id, col(UserSecret.name).in_(names))
    ).all()
    found = {row.name: row for row in rows}
    missing = [n for n in names if n not in found]
    if missing:
        raise SecretUnavailable(f"secret(s) {', '.join(missing)} no longer exist")
    opener = box(settings)
    try:
        return {name: opener.open(found[name].ciphertext) for name in names}
    except SecretUnreadable as exc:
        raise SecretUnavailable(str(exc)) from None


def rotate_key(session: Session, *, new_key: str, old_key: str) -> int:
    """Re-encrypt every secret under ``new_key``; returns how many. Values sealed with either
    key open, so running it twice (or after a partial run) is harmless."""
    resealer = SecretBox(new_key, old_keys=(old_key,))
    rows = session.exec(select(UserSecret)).all()
    for row in rows:
        row.ciphertext = resealer.reseal(row.ciphertext)
        session.add(row)
    return len(rows)
