"""Where `baton login` keeps the server URL and tokens: one JSON file, readable by you only."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_DIR_ENV = "BATON_CONFIG_DIR"
URL_ENV = "BATON_URL"
DEFAULT_URL = "http://127.0.0.1:8000"  # where `baton serve` and `baton up` listen by default
FILE_NAME = "credentials.json"


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    try:
        from typer import get_app_dir
    except ImportError:  # the client alone (say, in a notebook) need not have typer
        base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
        return Path(base) / "baton"
    return Path(get_app_dir("baton"))


def resolve_url(explicit: str | None, saved: Credentials | None) -> str:
    """The server to talk to: given (``--url``), else $BATON_URL, else the saved login's."""
    chosen = explicit or os.environ.get(URL_ENV) or (saved.url if saved else DEFAULT_URL)
    return chosen.rstrip("/")


@dataclass(frozen=True)
class Credentials:
    url: str
    email: str
    access_token: str
    refresh_token: str


class CredentialStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> CredentialStore:
        return cls(config_dir() / FILE_NAME)

    def load(self) -> Credentials | None:
        """The saved login, or None when there is none (or it is unreadable: log in again)."""
        try:
            data = json.loads(self.path.read_text())
            return Credentials(**{k: str(data[k]) for k in Credentials.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, credentials: Credentials) -> None:
        """Write atomically, created 0600: the file holds a refresh token."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(credentials), fh, indent=2)
            os.chmod(temporary, 0o600)  # a leftover temporary file keeps its mode through O_TRUNC
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def clear(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
