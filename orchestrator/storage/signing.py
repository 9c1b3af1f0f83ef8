"""Short-lived URLs the control plane signs for its own blob store: the signature is the
credential, so a notebook needs no bearer token to move bytes.

A URL names one method and one object (``/api/v1/store/<namespace>/<key>``) and carries
``expires`` (epoch seconds) and any expectations the server must enforce (``size``,
``sha256``, ``manifest``); ``sig`` is an HMAC-SHA256 over all of them with a key derived from
BATON_SECRET_KEY. Changing any of them, or using the URL with another method, fails the
signature check (constant-time compare).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from orchestrator.errors import Forbidden
from orchestrator.settings import Settings

STORE_PATH = "/api/v1/store"
_PURPOSE = b"baton-store-urls-v1"


class StoreUrls:
    def __init__(self, secret: str, *, seconds: int) -> None:
        # Derived, so a store signature says nothing about the key that signs JWTs.
        self._key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()
        self.seconds = seconds

    @classmethod
    def of(cls, settings: Settings) -> StoreUrls:
        return cls(settings.signing_key, seconds=settings.checkpoint_url_seconds)

    def _mac(self, method: str, namespace: str, key: str, values: Mapping[str, str]) -> str:
        lines = [
            method.upper(),
            f"{namespace}/{key}",
            *(f"{k}={values[k]}" for k in sorted(values)),
        ]
        return hmac.new(self._key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()

    def sign(self, method: str, namespace: str, key: str, **expect: str | int) -> str:
        """The path and query of a URL for ``method`` on ``key``, valid ``seconds`` from now
        (make it absolute with ``orchestrator.urls.public_url``)."""
        values = {name: str(value) for name, value in expect.items()}
        values["expires"] = str(int(time.time()) + self.seconds)
        values["sig"] = self._mac(method, namespace, key, values)
        return f"{STORE_PATH}/{namespace}/{quote(key)}?{urlencode(values)}"

    def verify(
        self, method: str, namespace: str, key: str, query: Mapping[str, str]
    ) -> dict[str, str]:
        """The signed expectations of a request, or 403 (bad or missing signature, expired)."""
        values = dict(query)
        signature = values.pop("sig", "")
        expected = self._mac(method, namespace, key, values)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Forbidden(f"the signature of this {method} URL does not match")
        expires = values.get("expires", "")
        if not expires.isdigit() or int(expires) < time.time():
            raise Forbidden("this signed URL has expired: ask the control plane for a new one")
        return values
