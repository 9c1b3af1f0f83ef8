"""What admins do to workers: drain one (it finishes its job and takes no more)."""

from __future__ import annotations

from sqlmodel import Session

from orchestrator.errors import NotFound
from orchestrator.models import Worker


def get_worker(session: Session, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} not found")
    return worker


def set_draining(session: Session, *, worker_id: int, draining: bool) -> Worker:
    """The claim path gives a draining worker nothing; its running attempt is left alone."""
    worker = get_worker(session, worker_id)
    worker.draining = draining
    session.add(worker)
    return worker
