"""Job output: workers append chunks by byte offset, users read (and follow) the kept tail.

Offsets count UTF-8 bytes of the text the worker shipped. A chunk carries the offset of
its first byte, so a retried chunk is recognised and stored once. Only the newest
``BATON_LOG_TAIL_BYTES`` are kept per attempt; a reader asking for older bytes gets what
is left and ``truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from orchestrator.db import read_session
from orchestrator.errors import NotFound
from orchestrator.models import Attempt, AttemptLog, ExperimentStatus, User, WorkerToken
from orchestrator.models.types import utcnow
from orchestrator.services.experiments import get_visible
from orchestrator.services.leases import LeaseRequest, current_lease

# One chunk per request; the worker ships 64 KiB at most.
MAX_CHUNK_CHARS = 1024 * 1024


class LogChunkIn(LeaseRequest):
    offset: int = Field(ge=0)
    data: str = Field(max_length=MAX_CHUNK_CHARS)

    @field_validator("data")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL; the worker already replaces it the same way.
        return value.replace("\x00", "\ufffd")


class LogAck(BaseModel):
    next_offset: int


class LogRead(BaseModel):
    experiment_id: int
    status: ExperimentStatus
    attempt: int | None = Field(description="the attempt read; null while none has started")
    offset: int = Field(description="where `text` starts in the attempt's output")
    next_offset: int = Field(description="ask for this offset next")
    total_bytes: int = Field(description="how much output the attempt has shipped so far")
    truncated: bool = Field(description="output before `offset` that was asked for is gone")
    eof: bool = Field(description="the attempt ended and all its output has been read")
    text: str

    @property
    def has_news(self) -> bool:
        """Worth answering a waiting reader with."""
        return bool(self.text) or self.truncated or self.eof


def _char_start(data: bytes, position: int) -> int:
    """The first position at or after ``position`` that starts a UTF-8 character."""
    while position < len(data) and data[position] & 0xC0 == 0x80:
        position += 1
    return position


@dataclass(frozen=True)
class Tail:
    """The kept end of a log stream: ``text`` ends at offset ``end``."""

    text: str = ""
    end: int = 0

    @property
    def start(self) -> int:
        return self.end - len(self.text.encode())

    def append(self, *, offset: int, data: str, cap: int) -> Tail:
        raw = data.encode()
        new_end = offset + len(raw)
        if new_end <= self.end:
            return self  # a retry of a chunk we already have
        if offset > self.end:
            # Bytes between went missing (the worker skipped a flood): start the tail afresh,
            # since it must be one contiguous run of the stream.
            kept = b""
        else:
            kept = self.text.encode()
            raw = raw[self.end - offset :]
        combined = kept + raw
        cut = _char_start(combined, max(0, len(combined) - cap))
        return Tail(text=combined[cut:].decode(errors="ignore"), end=new_end)

    def read(self, offset: int) -> tuple[int, str]:
        """Where the text from ``offset`` on starts (later than asked if dropped), and the text."""
        data = self.text.encode()
        start = self.start
        position = _char_start(data, min(max(offset - start, 0), len(data)))
        return start + position, data[position:].decode()


def append(session: Session, *, token: WorkerToken, data: LogChunkIn, cap: int) -> int:
    """Store a chunk from the open attempt's worker; returns the offset it should send next."""
    _, attempt = current_lease(session, token=token, lease_token=data.lease_token)
    assert attempt.id is not None
    row = session.get(AttemptLog, attempt.id) or AttemptLog(attempt_id=attempt.id)
    tail = Tail(text=row.tail, end=row.total_bytes)
    tail = tail.append(offset=data.offset, data=data.data, cap=cap)
    if tail.end != row.total_bytes:
        row.tail, row.total_bytes, row.updated_at = tail.text, tail.end, utcnow()
        session.add(row)
    return tail.end


def _attempt(session: Session, *, experiment_id: int, number: int | None) -> Attempt | None:
    query = select(Attempt).where(Attempt.experiment_id == experiment_id)
    if number is not None:
        query = query.where(Attempt.number == number)
    return session.exec(query.order_by(col(Attempt.number).desc()).limit(1)).first()


def read(
    engine: Engine, *, user: User, experiment_id: int, attempt: int | None, offset: int
) -> LogRead:
    """One look at an attempt's output (the latest attempt when ``attempt`` is None).

    Its own short read session: a follower calls this repeatedly, and nothing may stay open
    between looks.
    """
    with read_session(engine) as session:
        experiment = get_visible(session, user=user, experiment_id=experiment_id)
        row = _attempt(session, experiment_id=experiment_id, number=attempt)
        if row is None:
            # The next attempt may still come (a follower waits for it); any later one is a typo.
            if attempt is not None and attempt > experiment.attempt_count + 1:
                raise NotFound(
                    f"experiment {experiment_id} has no attempt {attempt} "
                    f"(it has {experiment.attempt_count})"
                )
            return LogRead(
                experiment_id=experiment_id,
                status=experiment.status,
                attempt=attempt,
                offset=offset,
                next_offset=offset,
                total_bytes=0,
                truncated=False,
                eof=experiment.status.is_final,
                text="",
            )
        assert row.id is not None
        stored = session.get(AttemptLog, row.id)
        tail = Tail(text=stored.tail, end=stored.total_bytes) if stored else Tail()
        start, text = tail.read(offset)
        next_offset = start + len(text.encode())
        return LogRead(
            experiment_id=experiment_id,
            status=experiment.status,
            attempt=row.number,
            offset=start,
            next_offset=next_offset,
            total_bytes=tail.end,
            truncated=offset < start,
            eof=row.ended_at is not None and next_offset >= tail.end,
            text=text,
        )
