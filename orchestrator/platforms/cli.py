"""`baton bootstrap PLATFORM` and `baton kaggle launch`, registered by orchestrator/cli.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.db import make_engine, session_scope
from orchestrator.migrate import upgrade
from orchestrator.models.types import utcnow
from orchestrator.platforms import bootstrap as bootstrap_
from orchestrator.platforms import kaggle, rotation
from orchestrator.services import enrollment
from orchestrator.settings import Settings
from orchestrator.urls import loopback_problem

DRY_RUN_CODE = "bec_<a-fresh-single-use-code-per-push>"

kaggle_app = typer.Typer(help="Kaggle worker kernels.", no_args_is_help=True)

PublicUrlOption = Annotated[
    str | None,
    typer.Option(
        "--public-url",
        "--api",
        help="URL the worker reaches the control plane at (default BATON_PUBLIC_URL)",
    ),
]
AllowLoopbackOption = Annotated[
    bool,
    typer.Option(
        "--allow-loopback", help="allow a loopback public URL (a worker on this machine only)"
    ),
]


def _settings(public_url: str | None, *, allow_loopback: bool) -> Settings:
    """Settings with the public URL a notebook will call; exits when none can reach it."""
    from orchestrator.cli import _settings as settings_or_exit

    settings = settings_or_exit(**({"BATON_PUBLIC_URL": public_url} if public_url else {}))
    problem = loopback_problem(settings)
    if problem and not allow_loopback:
        typer.echo(f"error: {problem}; --allow-loopback for a worker on this machine", err=True)
        raise typer.Exit(2)
    return settings


def bootstrap(
    platform: Annotated[str, typer.Argument(help=", ".join(bootstrap_.TARGETS))],
    public_url: PublicUrlOption = None,
    ipynb: Annotated[Path | None, typer.Option(help="also write a notebook (.ipynb) here")] = None,
    allow_loopback: AllowLoopbackOption = False,
    enroll: Annotated[
        bool,
        typer.Option(
            "--enroll",
            help="carry a single-use enrollment code (valid BATON_ENROLL_SECONDS) instead of "
            "reading a worker token: the cell starts one worker session",
        ),
    ] = False,
) -> None:
    """Print a ready-to-paste cell (a script for `shell`) that starts a worker on PLATFORM."""
    if platform not in bootstrap_.TARGETS:
        typer.echo(
            f"error: unknown platform {platform!r}: {', '.join(bootstrap_.TARGETS)}", err=True
        )
        raise typer.Exit(2)
    settings = _settings(public_url, allow_loopback=allow_loopback)
    result = bootstrap_.render(
        platform,
        api_url=settings.public_url,
        pip=rotation.worker_pip(settings),
        enroll=_issue_code(settings, platform) if enroll else None,
    )
    typer.echo(result.script or result.cell, nl=False)
    if result.secret_name is None:
        typer.echo(f"# carries {result.secret_store}", err=True)
    else:
        typer.echo(f"# token: {result.secret_name} from {result.secret_store}", err=True)
    if result.terms:
        typer.echo(f"# terms: {result.terms}", err=True)
    if ipynb is not None:
        ipynb.write_text(json.dumps(bootstrap_.notebook(result), indent=1) + "\n")
        typer.echo(f"# wrote {ipynb}", err=True)


def _issue_code(settings: Settings, platform: str) -> enrollment.Issued:
    """A code in this control plane's database, on behalf of the operator running the CLI."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    try:
        with session_scope(engine) as session:
            return enrollment.issue_for_cell(session, settings, platform=platform, created_by=None)
    finally:
        engine.dispose()


@kaggle_app.command("launch")
def kaggle_launch(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be pushed")] = False,
    public_url: PublicUrlOption = None,
    allow_loopback: AllowLoopbackOption = False,
) -> None:
    """Push a Kaggle kernel that runs a worker now (the rotation does this on its own)."""
    settings = _settings(public_url, allow_loopback=dry_run or allow_loopback)
    if dry_run:
        shown = settings.kaggle_username or "KAGGLE_USERNAME"
        # Each push carries a fresh code; this stand-in only shows where it goes.
        placeholder = enrollment.Issued(
            code=DRY_RUN_CODE, expires_at=utcnow() + timedelta(seconds=settings.enroll_seconds)
        )
        files = rotation.kernel_folder_files(
            settings.model_copy(update={"kaggle_username": shown}),
            timeout=int(settings.kaggle_session_hours * 3600),
            enroll=placeholder,
        )
        for name, text in files.items():
            typer.echo(f"==> {name} <==\n{text}")
        return
    if not kaggle.enabled(settings):
        typer.echo("error: set BATON_KAGGLE_USERNAME and BATON_KAGGLE_KEY first", err=True)
        raise typer.Exit(2)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    gateway = kaggle.KaggleGateway.from_settings(settings)
    try:
        quota = gateway.quota()
    except kaggle.KaggleError as exc:
        typer.echo(f"error: cannot read the Kaggle quota: {exc}", err=True)
        raise typer.Exit(1) from None
    if quota.remaining_seconds < settings.kaggle_min_quota_hours * 3600:
        typer.echo(
            f"error: {quota.remaining_seconds / 3600:.1f} GPU hours left this week", err=True
        )
        raise typer.Exit(1)
    result = rotation.launch(engine, settings, gateway, quota=quota, experiment_ids=[])
    typer.echo(f"{result.decision} (launch {result.launch_id})")
    if result.decision != "launched":
        raise typer.Exit(1)
