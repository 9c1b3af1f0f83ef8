"""Engines and sessions. Created by the app factory or a CLI command, never at import."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.url import make_url
from sqlmodel import Session

from orchestrator.errors import BatonError

log = logging.getLogger(__name__)

AfterCommit = Callable[[], object]
# The execution option read_session sets.
READ_ONLY = "baton_read_only"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_write_locking(engine)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_write_locking(engine: Engine) -> None:
    """WAL plus BEGIN IMMEDIATE: writers queue on the lock instead of failing mid-transaction.

    pysqlite's deferred BEGIN lets two processes both read then both try to write, and one
    of them gets "database is locked" at once; taking the write lock up front avoids that.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # Threads of this process queue on a Lock, which passes to the next waiter the moment it
    # is released. Left to SQLite's busy handler, waiters sleep 1, 2, 5 ... up to 100 ms
    # between tries, so the write lock often sits free while all of them sleep. Other
    # processes (rq-worker, a second API) still meet at BEGIN IMMEDIATE as before.
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A deferred transaction that only reads: a snapshot of the WAL, no writer lock.
            conn.exec_driver_sql("BEGIN")
            return
        if not writer.acquire(timeout=30):
            raise TimeoutError("waited 30 s for this process's SQLite writer lock")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writer.release()
            raise
        conn.info["baton_writer"] = True

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(conn: Any) -> None:
        # A failed COMMIT is followed by a ROLLBACK: release once per BEGIN.
        if conn.info.pop("baton_writer", False):
            writer.release()


def read_session(engine: Engine) -> Session:
    """A session that only reads: on SQLite it never waits for, nor holds, the writer lock
    (every other transaction there begins with it). Writing through it is a bug."""
    return Session(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@event.listens_for(Session, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    # On SQLite a read transaction that starts writing fails at random under load ("database
    # is locked"); fail every time instead, where the mistake is.
    bind = session.bind
    read_only = bind is not None and bind.get_execution_options().get(READ_ONLY)
    if read_only and (session.new or session.deleted or session.dirty):
        raise RuntimeError("a read session tried to write: use a write session")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def after_commit(session: Session, callback: AfterCommit) -> None:
    """Run ``callback`` once ``session`` commits (e.g. enqueue on Redis); dropped on rollback."""
    session.info.setdefault("after_commit", []).append(callback)


def commit(session: Session) -> None:
    """Commit, then run what waited for the commit, best-effort.

    The commit is the fact; what follows (Redis ready sets and leases, RQ jobs) only mirrors
    it. A failing step is logged and left to reconcile and the reaper: it must not turn a
    committed change into an error, or the client would retry (and duplicate) it.
    """
    session.commit()
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("after-commit step %r failed; the commit stands", callback)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed once on success, then its after-commit steps run; rolled
    back on error. A refusal raised with ``keep_changes`` (e.g. a reused refresh token, whose
    family is revoked) still commits what was recorded before it is answered."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        except BatonError as exc:
            if not exc.keep_changes:
                _discard(session)
                raise
            commit(session)
            raise
        except BaseException:
            _discard(session)
            raise
        commit(session)


def _discard(session: Session) -> None:
    session.info.pop("after_commit", None)
    session.rollback()
