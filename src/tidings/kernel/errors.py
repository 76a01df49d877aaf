"""Typed errors that every edge (API, CLI) knows how to show.

A :class:`TidingsError` carries a machine code, a human message, the offending field (when one
is to blame) and the HTTP status the API answers with. Expected failures are always one of
these, never a bare exception that would become a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any


@dataclass
class TidingsError(Exception):
    """A failure the caller can understand and act on."""

    code: str
    message: str
    field: str | None = None
    http_status: int = 400
    details: dict[str, Any] = dataclass_field(default_factory=dict)

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.code}{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The API body: ``{"error": {"code", "message", "field"}}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.details:
            body["details"] = self.details
        return {"error": body}


def invalid(code: str, message: str, *, field: str | None = None) -> TidingsError:
    """An input that cannot be accepted (HTTP 422)."""
    return TidingsError(code, message, field, http_status=422)


def not_found(what: str, *, field: str | None = None) -> TidingsError:
    """A resource that does not exist in the caller's workspace (HTTP 404)."""
    return TidingsError("not_found", f"{what} not found", field, http_status=404)


def conflict(code: str, message: str, *, field: str | None = None) -> TidingsError:
    """A request that clashes with what is stored (HTTP 409)."""
    return TidingsError(code, message, field, http_status=409)


def unauthenticated(message: str = "a valid API key or session is required") -> TidingsError:
    """No valid credentials (HTTP 401)."""
    return TidingsError("unauthenticated", message, None, http_status=401)


def forbidden(message: str) -> TidingsError:
    """Valid credentials without the right (HTTP 403)."""
    return TidingsError("forbidden", message, None, http_status=403)
