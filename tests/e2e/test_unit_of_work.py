"""One unit of work per request, against a real `baton serve`: what the database committed
stands even when Redis fails right after; reads never wait for SQLite's writer lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from orchestrator.dispatch import Dispatcher
from orchestrator.runtime import Runtime
from orchestrator.services import maintenance
from tests.e2e.conftest import Baton

PASSWORD = "nobody-in-the-control-plane-knows-this"


def _counter(name: str) -> dict[str, Any]:
    return {"name": name, "kind": "demo.counter", "config": {"steps": 5}}


def test_a_redis_error_after_the_commit_leaves_the_request_committed(
    own_redis: str, baton_factory: Callable[..., Baton]
) -> None:
    baton = baton_factory(redis=own_redis)
    doomed = baton.submit(**_counter("doomed"))
    admin = Redis.from_url(own_redis)
    assert doomed in Dispatcher(admin).ready_members()

    # From here on Redis refuses the control plane: its connections are cut and every new
    # one is asked for a password it does not have.
    admin.config_set("requirepass", PASSWORD)
    admin.client_kill_filter(_type="normal", skipme=True)

    created = baton.http.post("/api/v1/experiments", json=_counter("late"))
    assert created.status_code == 201, created.text
    late = int(created.json()["id"])
    canceled = baton.http.post(f"/api/v1/experiments/{doomed}/cancel")
    assert canceled.status_code == 200, canceled.text
    # The database has both changes; Redis has neither.
    assert baton.get(late)["status"] == "queued"
    assert baton.get(doomed)["status"] == "canceled"
    admin.config_set("requirepass", "")
    ready = Dispatcher(admin).ready_members()
    assert late not in ready and doomed in ready

    # Reconcile (a cron job of the RQ worker; run here at once) repairs Redis.
    runtime = Runtime.from_settings(baton.settings)
    try:
        report = maintenance.reconcile(runtime)
    finally:
        runtime.close()
    assert report.requeued == 1 and report.stale_removed == 1, report
    ready = Dispatcher(admin).ready_members()
    assert late in ready and doomed not in ready


def test_reconcile_moves_work_out_of_an_older_baton_s_lane_less_ready_sets(
    own_redis: str, baton_factory: Callable[..., Baton]
) -> None:
    baton = baton_factory(redis=own_redis)
    kept = baton.submit(**_counter("from-before-the-upgrade"))
    admin = Redis.from_url(own_redis)
    dispatcher = Dispatcher(admin)
    queue = dispatcher.ready_members()[kept]
    # What a Baton before owner lanes left: the experiment in its class's lane-less set.
    dispatcher.remove_from(experiment_id=kept, queue=queue)
    admin.hset("baton:classes", queue.class_name, "{}")
    admin.zadd(f"baton:ready:{queue.class_name}", {str(kept): 1})

    runtime = Runtime.from_settings(baton.settings)
    try:
        report = maintenance.reconcile(runtime)
    finally:
        runtime.close()
    assert report.legacy_sets_dropped == 1 and report.requeued == 1, report
    assert not admin.exists("baton:classes", f"baton:ready:{queue.class_name}")
    assert dispatcher.ready_members()[kept] == queue


def test_reads_answer_while_another_process_holds_the_sqlite_writer_lock(
    tmp_path: Path, baton_factory: Callable[..., Baton]
) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(**_counter("read-me"))
    holder = sqlite3.connect(tmp_path / "baton.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the writer lock, as a long write elsewhere holds it
    writes: list[httpx.Response] = []
    try:
        started = time.monotonic()
        for path in ("/api/v1/experiments", f"/api/v1/experiments/{experiment_id}", "/auth/me"):
            reply = baton.http.get(path)
            assert reply.status_code == 200, reply.text
        assert time.monotonic() - started < 5

        # A write does wait for the lock (so the reads above really ran beside it).
        cancel = threading.Thread(
            target=lambda: writes.append(
                baton.http.post(f"/api/v1/experiments/{experiment_id}/cancel")
            )
        )
        cancel.start()
        cancel.join(1.5)
        assert cancel.is_alive() and not writes
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    cancel.join(30)
    assert [w.status_code for w in writes] == [200]
    assert baton.get(experiment_id)["status"] == "canceled"
