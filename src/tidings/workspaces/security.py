"""Secrets: password hashing (argon2) and API key generation.

API keys carry 256 random bits, so a fast SHA-256 digest is enough to store them safely: no
dictionary exists to try against it, and checking a key on every request must stay cheap.
Passwords are chosen by people and are therefore hashed with argon2.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from pathlib import Path

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


_COMMON_PASSWORDS = frozenset(
    line.strip().lower()
    for line in (Path(__file__).parent / "data" / "common-passwords.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip() and not line.startswith("#")
)
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm")


def password_weakness(password: str, *, minimum: int, personal: Sequence[str]) -> str | None:
    """Why a new password would be easy to guess, or None when it will do."""
    stripped = password.strip()
    if len(stripped) < minimum:
        return f"use at least {minimum} characters (spaces at either end do not count)"
    folded = stripped.lower()
    core = folded.rstrip("0123456789!@#$%^&*.?_- ")
    if folded in _COMMON_PASSWORDS or core in _COMMON_PASSWORDS:
        return "this is one of the passwords people pick first; choose another"
    if len(set(folded)) < 4:
        return "use more than a few different characters"
    if any(folded in sequence or core in sequence for sequence in _SEQUENCES if len(core) >= 6):
        return "a run of keys in order is easy to guess"
    for word in personal:
        word = word.strip().lower()
        if len(word) >= 4 and (word in folded or folded in word):
            return "do not use your e-mail address or the workspace's name"
    return None
