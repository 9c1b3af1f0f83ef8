"""RQ job functions. Each worker process builds its runtime once, on first use."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from rq import Retry
from sqlmodel import Session

from orchestrator.models import Experiment
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.services import maintenance
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

NOTIFY_RETRY = Retry(max=5, interval=[5, 15, 60, 300, 900])

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


def notify_experiment(*, experiment_id: int) -> str:
    """Tell the owner an experiment ended. Until email is configured this writes a log line."""
    rt = runtime()
    with Session(rt.engine) as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is None:
            return "gone"
        line = {
            "at": utcnow().isoformat(),
            "experiment_id": experiment_id,
            "name": experiment.name,
            "status": str(experiment.status),
            "attempts": experiment.attempt_count,
            "owner_id": experiment.owner_id,
        }
    path = rt.settings.data_dir / "notifications.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    log.info("notification: %s", line)
    return "logged"
