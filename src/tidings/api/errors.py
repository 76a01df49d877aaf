"""Turn every expected failure into ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings.kernel.errors import TidingsError

log = logging.getLogger(__name__)
LOCATION_PREFIXES = frozenset({"body", "query", "path", "header", "cookie"})


def _field_of(location: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in location if str(p) not in LOCATION_PREFIXES]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TidingsError)
    def _tidings_error(_request: Request, error: TidingsError) -> JSONResponse:
        return JSONResponse(error.to_json(), status_code=error.http_status)

    @app.exception_handler(RequestValidationError)
    def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field_of(tuple(e["loc"])), "message": e["msg"]} for e in error.errors()
        ]
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        body = TidingsError(
            "invalid_request",
            str(first["message"]),
            first["field"],
            http_status=422,
            details={"errors": problems},
        ).to_json()
        return JSONResponse(body, status_code=422)

    @app.exception_handler(IntegrityError)
    def _integrity_error(_request: Request, error: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this answers the rare race between two requests.
        log.warning("integrity error answered as 409: %s", error.orig)
        body = TidingsError(
            "conflict", "the change clashes with data written at the same time; retry", None, 409
        ).to_json()
        return JSONResponse(body, status_code=409)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else "http_error"
        body = TidingsError(code, str(error.detail), None, error.status_code).to_json()
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route that matched the path; a path
            # here has a route per method, so the document's list is the whole answer.
            headers["Allow"] = ", ".join(_methods_of(app, request.url.path)) or headers.get(
                "Allow", ""
            )
        return JSONResponse(body, status_code=error.status_code, headers=headers)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"], "description": "the input to blame"},
                "details": {"type": "object"},
            },
        }
    },
}
ERROR_ANSWERS = {
    "401": "no valid API key or web session",
    "403": "the caller's role may not do this (or the CSRF token is missing)",
    "404": "no such resource in the caller's workspace",
    "409": "the change clashes with what is stored",
    "413": "the body is over this route's limit",
    "422": "an input is invalid; `field` names it",
    "429": "too many attempts; see Retry-After",
}


def document_errors_and_auth(document: dict[str, Any]) -> dict[str, Any]:
    """Declare how to authenticate and every error an API operation may answer, so clients
    and fuzzers see them: Bearer API keys or the web app's session cookie."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key: tid_…"},
        "webSession": {"type": "apiKey", "in": "cookie", "name": "tidings_session"},
    }
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}, {"webSession": []}]
            answers = operation.setdefault("responses", {})
            for status, description in ERROR_ANSWERS.items():
                answers.setdefault(
                    status,
                    {"description": description, "content": content},
                )
    return document


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the path a request asked for."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "methods", None)
    if table is None:
        table = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"),
                sorted(m.upper() for m in operations),
            )
            for template, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.methods = table
    return next((methods for pattern, methods in table if pattern.match(path)), [])
