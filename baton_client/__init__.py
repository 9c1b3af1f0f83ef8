"""The Baton client: a typed HTTP client (``BatonClient``) and the `baton` user commands.

Needs only httpx and the standard library (the CLI adds typer and rich), so a notebook can
submit and follow work without the control plane's dependencies.
"""

from baton_client.client import BatonClient, LogCursor
from baton_client.config import Credentials, CredentialStore
from baton_client.errors import (
    ApiError,
    AuthenticationError,
    BatonError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unreachable,
)

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BatonClient",
    "BatonError",
    "Conflict",
    "CredentialStore",
    "Credentials",
    "InvalidRequest",
    "LogCursor",
    "NotFound",
    "PermissionDenied",
    "Unreachable",
]
