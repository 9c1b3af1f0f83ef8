"""How the CLI shows things to people: tables, one experiment, and the live follow view."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from baton_client.client import BatonClient, LogCursor
from baton_client.types import (
    FINAL_STATUSES,
    Attempt,
    Experiment,
    ExperimentDetail,
    LogChunk,
    Secret,
    UsageReport,
    Worker,
    WorkerToken,
)

STATUS_STYLE = {
    "queued": "yellow",
    "waiting": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "lost": "magenta",
    "preempted": "blue",
    "canceled": "dim",
}
# Each round of the follow loop waits this long for output, then refreshes the progress bar.
FOLLOW_ROUND_SECONDS = 1.0

out = Console(highlight=False)
# soft_wrap: an error stays one line, however narrow the terminal (or a pipe's 80 columns).
err = Console(stderr=True, highlight=False, soft_wrap=True)


def styled(status: str | None) -> str:
    if status is None:
        return "-"
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _when(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def ago(stamp: str | None) -> str:
    moment = _when(stamp)
    if moment is None:
        return "-"
    return f"{duration((datetime.now(UTC) - moment).total_seconds())} ago"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _steps(step: int | None, total: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def experiments_table(items: Sequence[Experiment]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "KIND", "STATUS", "ATTEMPTS", "CHECKPOINT", "CREATED", "TAGS"):
        table.add_column(column, justify="right" if column == "ID" else "left")
    for e in items:
        table.add_row(
            str(e["id"]),
            escape(e["name"]),
            e["kind"],
            styled(e["status"]),
            f"{e['attempt_count']} ({e['failure_count']} failed)"
            if e["failure_count"]
            else str(e["attempt_count"]),
            _steps(e["checkpoint_step"], None),
            ago(e["created_at"]),
            escape(", ".join(e["tags"])),
        )
    return table


def _attempt_span(attempt: Attempt) -> str:
    start, end = _when(attempt["started_at"]), _when(attempt["ended_at"]) or datetime.now(UTC)
    return duration((end - start).total_seconds()) if start else "-"


def attempts_table(attempts: Sequence[Attempt]) -> Table:
    table = Table(box=None, header_style="bold", title="attempts", title_justify="left")
    for column in ("#", "WORKER", "PLATFORM", "OUTCOME", "STEPS", "CHECKPOINT", "TOOK", "REASON"):
        table.add_column(column)
    for a in attempts:
        table.add_row(
            str(a["number"]),
            str(a["worker_id"] or "-"),
            a["platform"] or "-",
            styled(a["outcome"] or "running"),
            _steps(a["progress_step"], a["progress_total"]),
            _steps(a["last_checkpoint_step"], None),
            _attempt_span(a),
            escape(a["reason"] or ""),
        )
    return table


def experiment_view(detail: ExperimentDetail) -> Group:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("experiment", f"{detail['id']}  {escape(detail['name'])}")
    facts.add_row(
        "status",
        styled(detail["status"]) + (" (cancel requested)" if detail["cancel_requested"] else ""),
    )
    facts.add_row("kind", detail["kind"])
    facts.add_row("priority", str(detail["priority"]))
    facts.add_row(
        "attempts",
        f"{detail['attempt_count']} "
        f"({detail['failure_count']} failed of {detail['max_attempts']} allowed)",
    )
    facts.add_row("checkpoint", _steps(detail["checkpoint_step"], None))
    facts.add_row("created", ago(detail["created_at"]))
    if detail["finished_at"]:
        facts.add_row("finished", ago(detail["finished_at"]))
    if detail["tags"]:
        facts.add_row("tags", escape(", ".join(detail["tags"])))
    if detail["error"]:
        facts.add_row("error", f"[red]{escape(detail['error'])}[/]")
    if detail["result"] is not None:
        facts.add_row("result", escape(_compact(detail["result"])))
    parts: list[Any] = [facts]
    if detail["attempts"]:
        parts.append(attempts_table(detail["attempts"]))
    return Group(*parts)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def workers_table(workers: Sequence[Worker]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "PLATFORM", "GPU", "HOST", "LAST SEEN", "STATE"):
        table.add_column(column)
    for w in workers:
        gpu = (
            f"{w['gpu_count']} x {w['gpu_name'] or 'GPU'} ({w['gpu_memory_mb'] // 1024} GiB)"
            if w["gpu_count"]
            else "-"
        )
        state = "draining" if w.get("draining") else ""
        table.add_row(
            str(w["id"]),
            escape(w["name"]),
            w["platform"],
            escape(gpu),
            escape(w["hostname"]),
            ago(w["last_seen_at"]),
            state,
        )
    return table


def tokens_table(tokens: Sequence[WorkerToken]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "OWNER", "CREATED", "STATE"):
        table.add_column(column)
    for t in tokens:
        expires = t["expires_at"]
        state = "revoked" if t["revoked_at"] else (f"expires {expires[:16]}" if expires else "")
        owner = str(t["owner_id"]) if t["owner_id"] is not None else "-"
        table.add_row(str(t["id"]), escape(t["name"]), owner, ago(t["created_at"]), state)
    return table


def secrets_table(secrets: Sequence[Secret]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "SET", "CHANGED"):
        table.add_column(column)
    for s in secrets:
        table.add_row(s["name"], ago(s["created_at"]), ago(s["updated_at"]))
    return table


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.0%}"


def usage_table(report: UsageReport) -> Table:
    table = Table(box=None, header_style="bold", title=f"GPU hours, week {report['week']}")
    table.title_justify = "left"
    for column in ("PLATFORM", "ACCOUNT", "USED", "ALLOWED", "RESETS", "BUSY", "UTIL", "SOURCE"):
        table.add_column(column)
    for p in report["platforms"]:
        resets = _when(p["resets_at"])
        table.add_row(
            p["platform"],
            escape(p["account"]),
            _hours(p["gpu_hours_used"]),
            _hours(p["gpu_hours_allowed"]),
            resets.strftime("%a %d %b %H:%M UTC") if resets else "-",
            _hours(p["busy_gpu_hours"]),
            _percent(p["utilization"]),
            p["source"]
            + (f" [red](quota: {escape(p['quota_error'])})[/]" if p["quota_error"] else ""),
        )
    return table


def write_log(chunk: LogChunk) -> None:
    if chunk["truncated"]:
        err.print(f"[dim]… earlier output of attempt {chunk['attempt']} is no longer kept[/]")
    sys.stdout.write(chunk["text"])
    sys.stdout.flush()


class _StatusLines:
    """Without a terminal: one line per change of status or attempt, no redraws."""

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None

    def update(self, detail: ExperimentDetail) -> None:
        now = (detail["status"], detail["attempt_count"])
        if now != self.last:
            self.last = now
            err.print(
                f"experiment {detail['id']}: {detail['status']} (attempt {detail['attempt_count']})"
            )


class _Bar:
    """On a terminal: a live progress bar under the streaming output."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def update(self, detail: ExperimentDetail) -> None:
        attempt = detail["attempts"][-1] if detail["attempts"] else None
        step = attempt["progress_step"] if attempt else None
        total = attempt["progress_total"] if attempt else None
        label = f"#{detail['id']} {styled(detail['status'])}"
        if attempt:
            label += f" · attempt {attempt['number']}"
        self.progress.update(
            self.task,
            description=label,
            completed=step or 0,
            total=total or None,
            steps=_steps(step, total),
        )


@contextmanager
def _status_view() -> Iterator[_StatusLines | _Bar]:
    # A live display redirects stdout into itself: only when both streams are a terminal, so
    # `baton logs -f 7 > out.txt` still writes the output to the file.
    if not (sys.stdout.isatty() and err.is_terminal):
        yield _StatusLines()
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[steps]}"),
        TimeElapsedColumn(),
        console=err,
    )
    with progress:
        yield _Bar(progress, progress.add_task("", total=None, steps="-"))


def follow(client: BatonClient, experiment_id: int, *, show_logs: bool = True) -> ExperimentDetail:
    """Stream the output and show progress until the experiment ends; returns its final state."""
    cursor = LogCursor()
    detail = client.get(experiment_id)
    with _status_view() as view:
        while True:
            view.update(detail)
            if detail["status"] in FINAL_STATUSES and (cursor.done or not show_logs):
                return detail
            if show_logs and not cursor.done:
                chunk = client.read_logs(experiment_id, cursor, wait=FOLLOW_ROUND_SECONDS)
                if chunk["text"] or chunk["truncated"]:
                    write_log(chunk)
            else:
                time.sleep(FOLLOW_ROUND_SECONDS)
            detail = client.get(experiment_id)
