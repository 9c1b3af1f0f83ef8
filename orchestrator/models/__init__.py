"""Tables and API shapes, one family per entity."""

from orchestrator.models.experiment import (
    Attempt,
    AttemptOutcome,
    Experiment,
    ExperimentStatus,
    ExperimentTag,
)
from orchestrator.models.user import RefreshToken, Role, User
from orchestrator.models.worker import Worker, WorkerToken

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "Experiment",
    "ExperimentStatus",
    "ExperimentTag",
    "RefreshToken",
    "Role",
    "User",
    "Worker",
    "WorkerToken",
]
