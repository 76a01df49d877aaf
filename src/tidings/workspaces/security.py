"""Secrets: password hashing (argon2) and API key generation.

API keys carry 256 random bits, so a fast SHA-256 digest is enough to store them safely: no
dictionary exists to try against it, and checking a key on every request must stay cheap.
Passwords are chosen by people and are therefore hashed with argon2.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "tid_"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_key() -> str:
    """A fresh key, shown to its creator once and never stored in clear."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def digest_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown later to tell keys apart."""
    return key[: len(API_KEY_PREFIX) + 6]
