"""The `baton` command: run the control plane and manage it."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from sqlmodel import Session

from baton_client import cli as user_commands
from orchestrator.db import commit, make_engine
from orchestrator.errors import BatonError
from orchestrator.migrate import upgrade
from orchestrator.models import Role
from orchestrator.models.user import UserCreate
from orchestrator.platforms import cli as platform_commands
from orchestrator.services import accounts
from orchestrator.settings import Settings
from orchestrator.urls import listen_url

app = typer.Typer(
    help="Baton: one job queue over the free GPU tiers you already have.", no_args_is_help=True
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage worker tokens.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(db_app, name="db")
app.add_typer(platform_commands.kaggle_app, name="kaggle")
app.command("bootstrap")(platform_commands.bootstrap)
app.add_typer(user_commands.app)  # no name: login, submit, ls, ... at the top level


PublicUrlOption = Annotated[
    str | None,
    typer.Option(
        help="URL notebooks and people reach the API at (a proxy's or tunnel's); "
        "default: BATON_PUBLIC_URL, else the address it listens on",
    ),
]


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment; ``overrides`` by alias (BATON_...), validated the same."""
    try:
        return Settings(**overrides)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _public_settings(public_url: str | None, host: str, port: int) -> Settings:
    """Settings whose public URL is ``public_url``, BATON_PUBLIC_URL, else where the API listens."""
    if public_url:
        return _settings(BATON_PUBLIC_URL=public_url)
    settings = _settings()
    if "public_url" in settings.model_fields_set:
        return settings
    return _settings(BATON_PUBLIC_URL=listen_url(host, port))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    public_url: PublicUrlOption = None,
) -> None:
    """Run the API server (uvicorn)."""
    import uvicorn

    from orchestrator.app import create_app

    settings = _public_settings(public_url, host, port)
    _logging()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1; the app decides whom to
        # believe instead (BATON_TRUSTED_PROXIES), so login limits cannot be dodged locally.
        proxy_headers=False,
    )


@app.command("rq-worker")
def rq_worker(
    burst: Annotated[bool, typer.Option(help="run queued jobs, then exit")] = False,
    cron: Annotated[bool, typer.Option(help="also schedule the reaper and reconcile")] = True,
) -> None:
    """Run the control plane's background worker (reaper, reconcile, notifications)."""
    from orchestrator.background.rq_worker import run_worker

    settings = _settings()
    _logging()
    run_worker(settings, burst=burst, with_cron=cron)


@app.command()
def up(
    host: Annotated[
        str, typer.Option(help="interface the API listens on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    public_url: PublicUrlOption = None,
    workers: Annotated[int, typer.Option(help="local worker agents to start")] = 2,
    demo: Annotated[
        bool,
        typer.Option(help="submit the demo job, kill its worker mid-run, watch another resume it"),
    ] = False,
    exit_after_demo: Annotated[bool, typer.Option(help="shut down once the demo finished")] = False,
) -> None:
    """Everything on one machine: embedded defaults unless DATABASE_URL / REDIS_URL are set."""
    from orchestrator.local import run_local

    _logging("WARNING")
    sys.exit(
        run_local(
            _public_settings(public_url, host, port),
            host=host,
            port=port,
            workers=workers,
            demo=demo,
            exit_after_demo=exit_after_demo,
        )
    )


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="login email")],
    password: Annotated[
        str, typer.Option(help="at least 8 characters", prompt=True, hide_input=True)
    ],
    admin: Annotated[bool, typer.Option("--admin", help="make an administrator")] = False,
) -> None:
    """Create a user."""
    try:
        data = UserCreate(email=email, password=password, role=Role.admin if admin else Role.user)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    engine = make_engine(_settings().resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        try:
            user = accounts.create_user(session, data=data)
        except BatonError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(1) from None
        commit(session)
        typer.echo(f"created {user.role} {user.email} (id {user.id})", err=True)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="a name to recognise the token by")],
) -> None:
    """Create a worker token and print it (only the token, on stdout)."""
    engine = make_engine(_settings().resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        _, secret = accounts.create_worker_token(session, name=name, created_by=None)
        commit(session)
    typer.echo(secret)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    engine = make_engine(_settings().resolved_database_url)
    upgrade(engine)
    typer.echo("database is at the latest schema", err=True)
