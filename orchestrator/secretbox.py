"""Encryption of users' secrets at rest.

The key is derived (HKDF-SHA256) from BATON_SECRET_KEY, so there is no second key to keep.
Values are Fernet tokens (AES-128-CBC + HMAC-SHA256, with a timestamp). Rotating
BATON_SECRET_KEY: run `baton secrets rotate-key` with the new key in the environment and the
old one on stdin; it re-encrypts every stored secret under the new key (one transaction).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# A different `info` gives an unrelated key: the JWT signing key itself never encrypts.
_INFO = b"baton user secrets v1"


class SecretUnreadable(Exception):
    """A stored value this key cannot decrypt (BATON_SECRET_KEY changed without rotate-key)."""


def _fernet(signing_key: str) -> Fernet:
    raw = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(signing_key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


class SecretBox:
    """Seals with ``key``; opens what ``key`` or any of ``old_keys`` sealed."""

    def __init__(self, key: str, *, old_keys: tuple[str, ...] = ()) -> None:
        self._box = MultiFernet([_fernet(k) for k in (key, *old_keys)])

    def seal(self, value: str) -> str:
        return self._box.encrypt(value.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._box.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored secret does not decrypt with this BATON_SECRET_KEY "
                "(changed without `baton secrets rotate-key`?)"
            ) from None

    def reseal(self, sealed: str) -> str:
        """The same value sealed with the current key (from an old key's token)."""
        try:
            return self._box.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a stored secret decrypts with neither key") from None
