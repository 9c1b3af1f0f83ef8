"""Tables and API shapes, one family per entity."""

from orchestrator.models.enrollment import Enrollment
from orchestrator.models.experiment import (
    Attempt,
    AttemptOutcome,
    Experiment,
    ExperimentDependency,
    ExperimentStatus,
    ExperimentTag,
)
from orchestrator.models.group import ExperimentGroup
from orchestrator.models.instance import ControlPlane
from orchestrator.models.launch import KaggleLaunch
from orchestrator.models.logs import AttemptLog
from orchestrator.models.metrics import MetricSample
from orchestrator.models.pool import Pool, PoolToken, PoolUser
from orchestrator.models.secret import UserSecret
from orchestrator.models.usage import GpuUsage, PlatformQuota
from orchestrator.models.user import RefreshToken, Role, User
from orchestrator.models.worker import Worker, WorkerToken

__all__ = [
    "Attempt",
    "AttemptLog",
    "AttemptOutcome",
    "ControlPlane",
    "Enrollment",
    "Experiment",
    "ExperimentDependency",
    "ExperimentGroup",
    "ExperimentStatus",
    "ExperimentTag",
    "GpuUsage",
    "KaggleLaunch",
    "MetricSample",
    "PlatformQuota",
    "Pool",
    "PoolToken",
    "PoolUser",
    "RefreshToken",
    "Role",
    "User",
    "UserSecret",
    "Worker",
    "WorkerToken",
]
