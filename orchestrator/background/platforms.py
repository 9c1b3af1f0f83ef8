"""RQ job for platform rotation (scheduled by rq_worker.run_cron when Kaggle is configured)."""

from __future__ import annotations

from orchestrator.background.tasks import runtime
from orchestrator.platforms import rotation


def rotate_kaggle() -> str:
    return rotation.tick(runtime()).decision
