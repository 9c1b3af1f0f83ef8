"""Engines and sessions. Created by the app factory or a CLI command, never at import."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.url import make_url
from sqlmodel import Session

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


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def after_commit(session: Session, callback: AfterCommit) -> None:
    """Run ``callback`` once ``session`` commits (e.g. enqueue on Redis); dropped on rollback."""
    session.info.setdefault("after_commit", []).append(callback)


def commit(session: Session) -> None:
    """Commit at the request edge, then run what waited for the commit."""
    session.commit()
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session for background work: committed (with its after-commit hooks) on success."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            commit(session)
        except BaseException:
            session.info.pop("after_commit", None)
            session.rollback()
            raise
