"""The `baton` command: run the control plane and manage it."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from sqlmodel import Session, select

from baton_client import cli as user_commands
from orchestrator.db import commit, make_engine
from orchestrator.errors import BatonError
from orchestrator.migrate import upgrade
from orchestrator.models import Role, User
from orchestrator.models.user import UserCreate
from orchestrator.platforms import cli as platform_commands
from orchestrator.secretbox import SecretUnreadable
from orchestrator.services import accounts, user_secrets
from orchestrator.settings import Settings
from orchestrator.urls import listen_url

app = typer.Typer(
    help="Baton: one job queue over the free GPU tiers you already have.", no_args_is_help=True
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
# The user commands' `tokens` group, plus `create --local` for the first token (see tokens_create).
tokens_app = typer.Typer(help="Your worker tokens: create, list, revoke.", no_args_is_help=True)
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
    run_local(
        _public_settings(public_url, host, port),
        host=host,
        port=port,
        workers=workers,
        demo=demo,
        exit_after_demo=exit_after_demo,
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
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="write to this machine's database (DATABASE_URL) instead of asking the API: "
            "for the first token, before anyone can log in",
        ),
    ] = False,
    owner: Annotated[
        str | None,
        typer.Option(help="with --local: the owner's email (default: the first admin)"),
    ] = None,
    url: user_commands.UrlOption = None,
    json_: user_commands.JsonOption = False,
) -> None:
    """Create a worker token for your workers and print it (only the token, on stdout).

    Logged in (`baton login`), it asks the API for a token of yours. With --local it writes
    straight to the control plane's database, owned by --owner or the first admin.
    """
    if not local:
        if owner is not None:
            typer.echo("error: --owner goes with --local; the API makes tokens of yours", err=True)
            raise typer.Exit(2)
        user_commands.create_token(name=name, url=url, json_=json_)
        return
    engine = make_engine(_settings().resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        user = (
            session.exec(select(User).where(User.email == owner.strip().lower())).first()
            if owner
            else accounts.first_admin(session)
        )
        if user is None:
            who = f"no user {owner}" if owner else "no admin yet"
            typer.echo(f"error: {who} (baton users create --admin ...)", err=True)
            raise typer.Exit(1)
        _, secret = accounts.create_worker_token(session, name=name, owner=user)
        commit(session)
    typer.echo(secret)


tokens_app.command("ls")(user_commands.list_tokens)
tokens_app.command("revoke")(user_commands.revoke_token)


@user_commands.secrets_app.command("rotate-key")
def secrets_rotate_key() -> None:
    """Re-encrypt every stored secret under BATON_SECRET_KEY (the new key, from the environment
    as `baton serve` reads it); the old key is read from standard input. Run it on the control
    plane's machine after changing the key, before the servers restart with it."""
    old_key = sys.stdin.readline().rstrip("\r\n")
    if not old_key:
        typer.echo("error: give the old BATON_SECRET_KEY on standard input", err=True)
        raise typer.Exit(2)
    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        try:
            count = user_secrets.rotate_key(session, new_key=settings.signing_key, old_key=old_key)
        except SecretUnreadable as exc:
            typer.echo(f"error: {exc}; nothing was changed", err=True)
            raise typer.Exit(1) from None
        commit(session)
    typer.echo(f"re-encrypted {count} secret(s) under the current key", err=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    engine = make_engine(_settings().resolved_database_url)
    upgrade(engine)
    typer.echo("database is at the latest schema", err=True)
