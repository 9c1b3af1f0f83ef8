"""Job output: workers ship it, users read or follow it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models.types import MAX_ROW_ID
from orchestrator.services import logs
from orchestrator.services.logs import LogAck, LogChunkIn, LogRead

from .deps import CurrentUser, CurrentWorkerToken, RowId, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["logs"], responses=AUTHENTICATED)

# How often a waiting reader looks for new output. Workers ship about once a second.
FOLLOW_POLL_SECONDS = 0.5


@router.post("/leases/logs", response_model=LogAck, responses=error_responses(409))
def ship(
    data: LogChunkIn, session: SessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> LogAck:
    """Append a chunk of the open attempt's output; a stale lease gets 409 like any lease call."""
    next_offset = logs.append(session, token=token, data=data, cap=runtime.settings.log_tail_bytes)
    return LogAck(next_offset=next_offset)


@router.get(
    "/experiments/{experiment_id}/logs", response_model=LogRead, responses=error_responses(404)
)
async def read(
    experiment_id: RowId,
    request: Request,
    runtime: RuntimeDep,
    user: CurrentUser,
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="the latest when omitted")
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=MAX_ROW_ID, description="byte offset (a `next_offset`)")
    ] = 0,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for output")] = 0,
) -> LogRead:
    """The attempt's kept output from ``offset`` on. To follow, ask again from ``next_offset``
    with ``wait``: the reply comes as soon as there is new output, or the attempt ended."""
    deadline = time.monotonic() + wait
    while True:
        reply = await run_in_threadpool(
            logs.read,
            runtime.engine,
            user=user,
            experiment_id=experiment_id,
            attempt=attempt,
            offset=offset,
        )
        remaining = deadline - time.monotonic()
        if reply.has_news or remaining <= 0 or await request.is_disconnected():
            return reply
        await asyncio.sleep(min(remaining, FOLLOW_POLL_SECONDS))
