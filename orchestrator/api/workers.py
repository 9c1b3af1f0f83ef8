"""The worker API: only worker tokens get in (and enrollment codes, to become one)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import col, select

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models import Worker
from orchestrator.models.enrollment import Enrolled, EnrollIn
from orchestrator.models.instance import control_plane_id
from orchestrator.models.worker import WorkerPublic, WorkerRegister, WorkerRegistered
from orchestrator.services import enrollment, leases
from orchestrator.services.leases import (
    CompleteIn,
    FailIn,
    Grant,
    HeartbeatIn,
    HeartbeatOut,
    ReleaseIn,
)

from .deps import CurrentUser, CurrentWorkerToken, ReadSessionDep, RowId, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["workers"])

# How often a waiting claim looks again even without a wake-up (covers a lost pub/sub message).
CLAIM_POLL_SECONDS = 1.0
# A lease call with a token that is not the open attempt's: 409, changing nothing.
LEASE_ERRORS = {**AUTHENTICATED, **error_responses(409)}


@router.post(
    "/workers/enroll",
    response_model=Enrolled,
    responses=error_responses(401, 410),
)
def enroll(data: EnrollIn, session: SessionDep, runtime: RuntimeDep) -> Enrolled:
    """Exchange a single-use enrollment code for this session's worker token (no bearer: the
    code is the credential). The token is shown once."""
    return enrollment.exchange(session, data.code, launch_pool=runtime.settings.kaggle_pool)


@router.post(
    "/workers/register",
    response_model=WorkerRegistered,
    status_code=status.HTTP_201_CREATED,
    responses=AUTHENTICATED,
)
def register(
    data: WorkerRegister, session: SessionDep, token: CurrentWorkerToken
) -> WorkerRegistered:
    worker = leases.register_worker(session, token=token, data=data)
    identity = control_plane_id(session)
    return WorkerRegistered.model_validate(
        {**WorkerPublic.model_validate(worker).model_dump(), "control_plane": identity}
    )


@router.get("/workers", response_model=list[WorkerPublic], responses=AUTHENTICATED)
def list_workers(session: ReadSessionDep, user: CurrentUser) -> list[WorkerPublic]:
    rows = session.exec(select(Worker).order_by(col(Worker.id).desc()).limit(500)).all()
    return [WorkerPublic.model_validate(w) for w in rows]


@router.post(
    "/workers/{worker_id}/claim",
    response_model=Grant,
    responses={
        204: {"description": "nothing this worker can run arrived within `wait` seconds"},
        **AUTHENTICATED,
        **error_responses(404),
    },
)
async def claim(
    worker_id: RowId,
    request: Request,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
    wait: Annotated[float, Query(ge=0, le=60)] = 30.0,
) -> Grant | Response:
    """Long-poll: answer as soon as a fitting experiment is ready, or 204 after ``wait``."""
    wakeup = request.app.state.wakeup
    deadline = time.monotonic() + min(wait, runtime.settings.claim_wait_seconds)
    while True:
        signal = wakeup.current()
        # A worker that hung up (agent stopped, notebook gone) must not take work: its grant
        # would be lost, and the experiment would wait a whole lease and count an attempt.
        if await request.is_disconnected():
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        grant = await run_in_threadpool(
            leases.claim_once, runtime, token=token, worker_id=worker_id
        )
        if grant is not None:
            return grant
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await wakeup.wait(signal, timeout=min(remaining, CLAIM_POLL_SECONDS))


@router.post("/leases/heartbeat", response_model=HeartbeatOut, responses=LEASE_ERRORS)
def heartbeat(
    data: HeartbeatIn, session: SessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> HeartbeatOut:
    return leases.heartbeat(session, runtime, token=token, data=data)


def _ack(experiment_status: str) -> dict[str, str]:
    return {"status": experiment_status}


@router.post("/leases/complete", responses=LEASE_ERRORS)
def complete(
    data: CompleteIn, session: SessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> dict[str, str]:
    experiment = leases.complete(session, runtime, token=token, data=data)
    return _ack(experiment.status)


@router.post("/leases/fail", responses=LEASE_ERRORS)
def fail(
    data: FailIn, session: SessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> dict[str, str]:
    experiment = leases.fail(session, runtime, token=token, data=data)
    return _ack(experiment.status)


@router.post("/leases/release", responses=LEASE_ERRORS)
def release(
    data: ReleaseIn, session: SessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> dict[str, str]:
    experiment = leases.release(session, runtime, token=token, data=data)
    return _ack(experiment.status)
