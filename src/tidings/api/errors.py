"""Turn every expected failure into ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
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
    def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else "http_error"
        body = TidingsError(code, str(error.detail), None, error.status_code).to_json()
        return JSONResponse(body, status_code=error.status_code)
