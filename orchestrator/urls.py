"""The control plane's public URL: where notebooks, emails and signed links point.

The API may listen on loopback behind a proxy or a tunnel; what it hands out must be the
address others reach it at (``BATON_PUBLIC_URL``, ``--public-url``), never the bind address.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from orchestrator.settings import Settings

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# Where a person learns how to give Baton an address notebooks reach.
DEPLOY_DOC = "docs/deploy.md"


def normalize_public_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is an http(s) URL with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"BATON_PUBLIC_URL must be an http:// or https:// URL such as "
            f"https://baton.example.org, not {url!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"BATON_PUBLIC_URL must not have a query or fragment: {url!r}")
    return parts._replace(path=parts.path.rstrip("/")).geturl()


def public_url(settings: Settings, path: str = "") -> str:
    """``path`` (absolute, e.g. ``/api/v1/...``) under the public URL: every URL Baton hands out
    to a notebook, a worker or a person is made here."""
    if path and not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    return settings.public_url.rstrip("/") + path


def is_loopback(url: str) -> bool:
    """True for URLs only this machine can reach: 127.0.0.0/8, ::1, localhost, 0.0.0.0, ::."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return not host
    return address.is_loopback or address.is_unspecified


def loopback_problem(settings: Settings) -> str | None:
    """What is wrong with handing the public URL to a notebook; None when nothing is."""
    if not is_loopback(settings.public_url):
        return None
    return (
        f"the public URL {settings.public_url} is a loopback address that no notebook can "
        f"reach: set BATON_PUBLIC_URL (or --public-url) to the URL notebooks reach this control "
        f"plane at ({DEPLOY_DOC})"
    )


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a name, not an address
        return False


def listen_url(host: str, port: int) -> str:
    """The URL this machine reaches an API bound to ``host``:``port`` at."""
    # Bound to every address (0.0.0.0, ::, or none named): reached over loopback.
    if not host or _unspecified(host):
        host = "::1" if ":" in host else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
