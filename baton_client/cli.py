"""The `baton` user commands: log in, submit, look, follow, cancel, retry.

They talk to a server over HTTP with ``BatonClient`` only, so they work from any machine.
Every read command takes ``--json`` for scripts. Exit codes: 0 ok, 1 the server said no (or
a followed experiment did not succeed), 2 bad usage, 3 the server could not be reached,
130 interrupted.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from baton_client import render
from baton_client.bundle import describe_largest
from baton_client.client import BUNDLE_MAX_MB, BatonClient
from baton_client.config import Credentials, CredentialStore, resolve_url
from baton_client.errors import (
    ApiError,
    AuthenticationError,
    BundleTooLarge,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unreachable,
)
from baton_client.types import ExperimentDetail

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130
PANEL = "Experiments (talk to a server)"
ACCOUNT_PANEL = "Your account (talk to a server)"

app = typer.Typer(
    help="Submit and follow Baton experiments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# `tokens` is mounted by orchestrator/cli.py, which adds `create --local`; `secrets` here.
secrets_app = typer.Typer(help="Your secrets: set, list, remove.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets", rich_help_panel=ACCOUNT_PANEL)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="BATON_URL", help="Baton server; default: the one you logged in to"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]
ExperimentId = Annotated[int, typer.Argument(help="experiment id (see `baton ls`)", min=1)]


def _fail(message: str, *, code: int = EXIT_REFUSED) -> NoReturn:
    render.err.print(f"[red]error:[/] {render.escape(message)}")
    raise typer.Exit(code)


def _login_hint(url: str) -> str:
    return f"run `baton login --url {url}`"


@contextmanager
def _translate_errors(url: str) -> Iterator[None]:
    """Turn the client's errors into one line that says what to do next, and an exit code."""
    try:
        yield
    except Unreachable as exc:
        _fail(f"{exc} — is `baton serve` running?", code=EXIT_UNREACHABLE)
    except AuthenticationError as exc:
        _fail(f"{exc.detail} — {_login_hint(url)}")
    except PermissionDenied as exc:
        _fail(f"{exc.detail} — ask an admin")
    except NotFound as exc:
        _fail(f"{exc.detail} — `baton ls` lists yours")
    except InvalidRequest as exc:
        _fail(f"invalid: {exc.detail}")
    except Conflict as exc:
        _fail(exc.detail)
    except BundleTooLarge as exc:
        _fail(str(exc))
    except ApiError as exc:
        hint = " — see the server's log" if exc.status >= 500 else ""
        _fail(f"{exc.detail} (HTTP {exc.status}){hint}")
    except KeyboardInterrupt:
        render.err.print("interrupted (nothing was canceled on the server)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def _client(url: str | None) -> Iterator[BatonClient]:
    """A client with the saved login; every error becomes one line and an exit code."""
    client = BatonClient.from_config(url=url)
    with client, _translate_errors(client.url):
        if client.token is None and client.refresh_token is None:
            _fail(f"not logged in to {client.url} — {_login_hint(client.url)}")
        yield client


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


# --- accounts --------------------------------------------------------------------------------


def _login_password(password: str, *, from_stdin: bool) -> str:
    """The password from one source: stdin's first line, the flag/env, else a hidden prompt."""
    if from_stdin:
        if password:
            _fail("give the password once: --password-stdin or --password", code=EXIT_USAGE)
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _fail("--password-stdin read no password from standard input", code=EXIT_USAGE)
        return password
    if password:
        return password
    if not sys.stdin.isatty():
        _fail(
            "no password: pipe it in with --password-stdin, or pass --password / $BATON_PASSWORD",
            code=EXIT_USAGE,
        )
    return str(typer.prompt("Password", hide_input=True))


@app.command(rich_help_panel=PANEL)
def login(
    url: UrlOption = None,
    email: Annotated[str, typer.Option("--email", "-e", help="your login email")] = "",
    password: Annotated[
        str, typer.Option(envvar="BATON_PASSWORD", help="or $BATON_PASSWORD; else prompted")
    ] = "",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from standard input (scripts)"),
    ] = False,
) -> None:
    """Log in; the tokens are saved (readable by you only) for the other commands."""
    if not email:
        if not sys.stdin.isatty() or password_stdin:
            _fail("--email is required when there is no terminal to ask on", code=EXIT_USAGE)
        email = str(typer.prompt("Email"))
    password = _login_password(password, from_stdin=password_stdin)
    store = CredentialStore.default()
    with BatonClient(resolve_url(url, store.load())) as client, _translate_errors(client.url):
        try:
            tokens = client.login(email=email, password=password)
        except AuthenticationError as exc:
            _fail(f"{exc.detail} — check both, or ask an admin for an account")
    store.save(
        Credentials(
            url=client.url,
            email=email,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )
    )
    render.err.print(f"logged in to {client.url} as {email} (saved in {store.path})")


@app.command(rich_help_panel=PANEL)
def logout(url: UrlOption = None) -> None:
    """End this login on the server and forget the saved tokens."""
    store = CredentialStore.default()
    with BatonClient.from_config(url=url) as client, _translate_errors(client.url):
        if client.refresh_token:
            client.logout()
    store.clear()
    render.err.print("logged out")


# --- experiments -----------------------------------------------------------------------------


def _load_spec(path: Path) -> dict[str, Any]:
    """A spec file as the API takes it (name, kind, config, resources, tags, ...)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", code=EXIT_USAGE)
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except ValueError as exc:
            _fail(f"{path} is not valid JSON: {exc}", code=EXIT_USAGE)
    else:
        spec = _load_yaml(path, text)  # YAML is a superset of JSON: stdin may be either
    if not isinstance(spec, dict):
        _fail(f"{path} must hold one mapping (name, kind, config, ...)", code=EXIT_USAGE)
    return spec


def _load_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        _fail("reading YAML needs PyYAML (`pip install pyyaml`), or write the spec as JSON")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _fail(f"{path} is not valid YAML: {exc}", code=EXIT_USAGE)


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # not JSON: a plain string


def _set_field(config: dict[str, Any], assignment: str) -> None:
    """``a.b=3`` sets config["a"]["b"] = 3; values are JSON when they parse, else strings."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        _fail(f"--set wants KEY=VALUE, got {assignment!r}", code=EXIT_USAGE)
    *parents, leaf = key.split(".")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            _fail(f"--set {key}: {part} is not a mapping", code=EXIT_USAGE)
    target[leaf] = _parse_value(raw)


@app.command(rich_help_panel=PANEL)
def submit(
    spec_file: Annotated[
        Path | None, typer.Argument(help="spec file: YAML or JSON, the API's fields; - for stdin")
    ] = None,
    name: Annotated[str | None, typer.Option(help="experiment name")] = None,
    kind: Annotated[str | None, typer.Option(help="experiment kind, e.g. demo.counter")] = None,
    command: Annotated[
        str | None, typer.Option("--command", "-c", help="a shell command (kind `command`)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="config field KEY=VALUE (repeatable; a.b=1 nests)"),
    ] = None,
    priority: Annotated[int | None, typer.Option(help="0-100, higher runs first")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="failures allowed before giving up")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="repeatable")] = None,
    gpu: Annotated[bool | None, typer.Option("--gpu/--no-gpu", help="needs a GPU")] = None,
    platform: Annotated[
        list[str] | None, typer.Option(help="only on this platform (repeatable)")
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            "-w",
            help="ship this directory as the job's code and working directory "
            "(honours .gitignore and .batonignore)",
        ),
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option(
            "--requirement", "-r", help="pip requirement to install on the worker (repeatable)"
        ),
    ] = None,
    max_mb: Annotated[
        int, typer.Option("--max-mb", min=1, help="refuse a packed --workdir over this size")
    ] = BUNDLE_MAX_MB,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="stream output until it ends")
    ] = False,
    url: UrlOption = None,
    json_: JsonOption = False,
) -> None:
    """Submit an experiment from a spec file and/or flags (flags win)."""
    spec = _load_spec(spec_file) if spec_file is not None else {}
    if workdir is not None and spec.get("code"):
        _fail("the spec already has `code`: give it or --workdir, not both", code=EXIT_USAGE)
    if workdir is not None and not workdir.is_dir():
        _fail(f"--workdir {workdir}: not a directory", code=EXIT_USAGE)
    if requirement:
        spec["requirements"] = [*(spec.get("requirements") or []), *requirement]
    config: dict[str, Any] = dict(spec.get("config") or {})
    if command is not None:
        spec.setdefault("kind", "command")
        config["command"] = command
    for assignment in set_ or []:
        _set_field(config, assignment)
    resources: dict[str, Any] = dict(spec.get("resources") or {})
    if gpu is not None:
        resources["gpu"] = gpu
    if platform:
        resources["platforms"] = platform
    flags = {"name": name, "kind": kind, "priority": priority, "max_attempts": max_attempts}
    spec.update({k: v for k, v in flags.items() if v is not None})
    spec["tags"] = [*(spec.get("tags") or []), *(tag or [])]
    spec["config"], spec["resources"] = config, resources
    if "kind" not in spec:
        _fail(
            "what should run? give --command, --kind, or a spec file with `kind:`", code=EXIT_USAGE
        )
    spec.setdefault("name", (config.get("command") or spec["kind"])[:200])
    with _client(url) as client:
        if workdir is not None:
            spec["code"] = {"bundle": _upload_workdir(client, workdir, max_mb=max_mb)}
        detail = client.submit_spec(spec)
        experiment_id = detail["id"]
        if follow_:
            detail = client.wait(experiment_id) if json_ else render.follow(client, experiment_id)
    if json_:
        _print_json(detail)
    elif follow_:
        _conclude(detail)
    else:
        render.out.print(
            f"submitted experiment {experiment_id} ({render.escape(detail['name'])}): "
            f"{render.styled(detail['status'])} — follow it with `baton logs {experiment_id} -f`"
        )
    if follow_ and detail["status"] != "succeeded":
        raise typer.Exit(EXIT_REFUSED)


def _upload_workdir(client: BatonClient, workdir: Path, *, max_mb: int) -> str:
    with tempfile.TemporaryDirectory(prefix="baton-bundle-") as scratch:
        packed = client.pack(workdir, Path(scratch) / "bundle.tar.gz", max_mb=max_mb)
        render.err.print(
            f"packed {len(packed.files)} files from {render.escape(str(workdir))} "
            f"({packed.size / 1e6:.1f} MB compressed; largest: "
            f"{render.escape(describe_largest(packed) or 'none')})"
        )
        if packed.skipped_links:
            render.err.print(
                "left out symlinks pointing outside it: "
                + render.escape(", ".join(packed.skipped_links))
            )
        digest = client.upload_bundle(packed.archive)
    render.err.print(f"uploaded as {digest}")
    return digest


def _conclude(detail: ExperimentDetail) -> None:
    render.err.print(
        f"experiment {detail['id']} {render.styled(detail['status'])} "
        f"after {detail['attempt_count']} attempt(s)"
        + (f": {render.escape(detail['error'])}" if detail["error"] else "")
    )
    if detail["result"]:
        render.err.print(f"result: {render.escape(json.dumps(detail['result']))}")


@app.command("ls", rich_help_panel=PANEL)
def list_(
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
    tag: Annotated[str | None, typer.Option(help="only with this tag")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 20,
    url: UrlOption = None,
    json_: JsonOption = False,
) -> None:
    """List your experiments (admins see everyone's), newest first."""
    with _client(url) as client:
        items = list(islice(client.iter_experiments(status=status, kind=kind, tag=tag), limit))
    if json_:
        _print_json(items)
    elif not items:
        render.err.print("no experiments yet — `baton submit` one")
    else:
        render.out.print(render.experiments_table(items))


@app.command(rich_help_panel=PANEL)
def show(experiment_id: ExperimentId, url: UrlOption = None, json_: JsonOption = False) -> None:
    """One experiment with its attempts."""
    with _client(url) as client:
        detail = client.get(experiment_id)
    if json_:
        _print_json(detail)
    else:
        render.out.print(render.experiment_view(detail))


@app.command(rich_help_panel=PANEL)
def logs(
    experiment_id: ExperimentId,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="keep streaming until it ends")
    ] = False,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="this attempt (default: the latest)")
    ] = None,
    url: UrlOption = None,
    json_: JsonOption = False,
) -> None:
    """Print an experiment's output (stdout and stderr; the newest part is kept)."""
    with _client(url) as client:
        if follow_ and json_:
            for chunk in client.follow_logs(experiment_id, attempt=attempt):
                sys.stdout.write(json.dumps(chunk) + "\n")
                sys.stdout.flush()
        elif follow_:
            if attempt is not None:
                for chunk in client.follow_logs(experiment_id, attempt=attempt):
                    render.write_log(chunk)
            else:
                _conclude(render.follow(client, experiment_id))
        else:
            chunk = client.logs(experiment_id, attempt=attempt)
            if json_:
                _print_json(chunk)
            elif chunk["attempt"] is None:
                render.err.print(
                    f"experiment {experiment_id} has not started yet ({chunk['status']}) — "
                    f"`baton logs {experiment_id} -f` waits for it"
                )
            else:
                render.write_log(chunk)


def _act(
    action: Callable[[BatonClient, int], ExperimentDetail],
    describe: Callable[[ExperimentDetail], str],
    *,
    experiment_id: int,
    url: str | None,
    json_: bool,
) -> None:
    with _client(url) as client:
        detail = action(client, experiment_id)
    if json_:
        _print_json(detail)
    else:
        render.out.print(f"experiment {experiment_id} {describe(detail)}")


def _canceled(detail: ExperimentDetail) -> str:
    running = bool(detail["attempts"]) and detail["attempts"][-1]["ended_at"] is None
    return "canceled" + (" (its worker stops it at the next heartbeat)" if running else "")


@app.command(rich_help_panel=PANEL)
def cancel(experiment_id: ExperimentId, url: UrlOption = None, json_: JsonOption = False) -> None:
    """Cancel an experiment: queued ones never run, running ones are stopped."""
    _act(BatonClient.cancel, _canceled, experiment_id=experiment_id, url=url, json_=json_)


@app.command(rich_help_panel=PANEL)
def retry(experiment_id: ExperimentId, url: UrlOption = None, json_: JsonOption = False) -> None:
    """Run a failed, lost or canceled experiment again, from its latest checkpoint."""
    _act(
        BatonClient.retry,
        lambda d: f"queued again ({render.styled(d['status'])})",
        experiment_id=experiment_id,
        url=url,
        json_=json_,
    )


@app.command(rich_help_panel=PANEL)
def workers(url: UrlOption = None, json_: JsonOption = False) -> None:
    """The worker agents that registered, newest first."""
    with _client(url) as client:
        rows = client.workers()
    if json_:
        _print_json(rows)
    elif not rows:
        render.err.print("no workers yet — start one with `baton-worker --api URL --token TOKEN`")
    else:
        render.out.print(render.workers_table(rows))


@app.command(rich_help_panel=PANEL)
def quota(
    week: Annotated[
        str | None, typer.Option(help="ISO week like 2026-W48 (default: this one)")
    ] = None,
    url: UrlOption = None,
    json_: JsonOption = False,
) -> None:
    """GPU hours per platform account this week: used, allowed, when it resets."""
    with _client(url) as client:
        report = client.usage(week=week)
    if json_:
        _print_json(report)
    elif not report["platforms"]:
        render.err.print(f"no GPU time recorded in {report['week']} — no worker has run yet")
    else:
        render.out.print(render.usage_table(report))
        overall = report["overall"]
        render.out.print(
            f"all platforms: {overall['busy_gpu_hours']:.1f} busy of "
            f"{overall['connected_gpu_hours']:.1f} connected GPU hours"
        )


# --- worker tokens and secrets ---------------------------------------------------------------

TokenId = Annotated[int, typer.Argument(help="token id (see `baton tokens ls`)", min=1)]
SecretName = Annotated[str, typer.Argument(help="e.g. HF_TOKEN: A-Z, 0-9 and _")]


def create_token(*, name: str, url: str | None, json_: bool) -> None:
    """Ask the API for a worker token of the logged-in user; print the token alone."""
    with _client(url) as client:
        created = client.create_worker_token(name)
    if json_:
        _print_json(created)
        return
    sys.stdout.write(created["token"] + "\n")
    render.err.print(
        f"token {created['id']} ({render.escape(created['name'])}): shown once; "
        "give it to a worker as BATON_WORKER_TOKEN"
    )


def list_tokens(url: UrlOption = None, json_: JsonOption = False) -> None:
    """Your worker tokens (an admin's: every token); never their secrets."""
    with _client(url) as client:
        rows = client.worker_tokens()
    if json_:
        _print_json(rows)
    elif not rows:
        render.err.print("no worker tokens yet — `baton tokens create --name NAME` makes one")
    else:
        render.out.print(render.tokens_table(rows))


def revoke_token(token_id: TokenId, url: UrlOption = None, json_: JsonOption = False) -> None:
    """Revoke a worker token: its workers are refused from their next call on."""
    with _client(url) as client:
        row = client.revoke_worker_token(token_id)
    if json_:
        _print_json(row)
    else:
        render.err.print(f"token {row['id']} ({render.escape(row['name'])}) revoked")


def _secret_value() -> str:
    """The value from standard input: a hidden prompt on a terminal, else all of stdin (one
    trailing newline dropped), so `printf %s "$X" | baton secrets set X` works in scripts."""
    if sys.stdin.isatty():
        return str(typer.prompt("Value", hide_input=True))
    value = sys.stdin.read()
    return value[:-1] if value.endswith("\n") else value


@secrets_app.command("set")
def secrets_set(name: SecretName, url: UrlOption = None, json_: JsonOption = False) -> None:
    """Store a secret, reading its value from standard input (never from the command line).
    Experiments get it by naming it: `secrets: [NAME]`."""
    value = _secret_value()
    if not value:
        _fail("no value: pipe it in, or type it at the prompt", code=EXIT_USAGE)
    with _client(url) as client:
        row = client.set_secret(name, value)
    if json_:
        _print_json(row)
    else:
        render.err.print(f"secret {row['name']} set")


@secrets_app.command("ls")
def secrets_ls(url: UrlOption = None, json_: JsonOption = False) -> None:
    """Your secrets' names and dates (values are never shown again)."""
    with _client(url) as client:
        rows = client.secrets()
    if json_:
        _print_json(rows)
    elif not rows:
        render.err.print("no secrets yet — `baton secrets set NAME` reads one from stdin")
    else:
        render.out.print(render.secrets_table(rows))


@secrets_app.command("rm")
def secrets_rm(name: SecretName, url: UrlOption = None) -> None:
    """Delete a secret (refused while an unfinished experiment names it)."""
    with _client(url) as client:
        client.delete_secret(name)
    render.err.print(f"secret {name} deleted")
