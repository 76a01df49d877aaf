"""Secrets at rest: provider tokens and app secrets are sealed before they reach the database.

Sealing is authenticated encryption (Fernet: AES-128-CBC + HMAC-SHA256) under a key derived
from ``TIDINGS_SECRET_KEY`` with HKDF, so a database dump alone reveals no token, and a
tampered value is refused instead of used.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.kernel.errors import TidingsError

_PURPOSE = b"tidings/sealed-secrets/v1"


class SecretBox:
    """Seals and opens short secrets with a key derived from the installation's secret."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        """Raises ``TidingsError`` when the value was sealed under another key or altered."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise TidingsError(
                "secret_unreadable",
                "a stored secret cannot be opened: TIDINGS_SECRET_KEY changed or the value "
                "was altered; enter the secret again",
                None,
                500,
            ) from None
