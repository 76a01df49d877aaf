"""What every API input must be before any route sees it: numbers a database column can hold,
text without NUL characters, JSON that is not absurdly deep.

Python's JSON reader accepts ``NaN``, ``Infinity``, ``1e309`` (read as infinity) and integers of
any size; Pydantic then lets them through to fields typed ``float`` or ``int``, and they fail
far away — SQLite cannot bind an integer over 64 bits, PostgreSQL refuses a ``bigint`` out of
range or a NUL inside text, and a non-finite price stored in a JSON column cannot be read back
as JSON. This guard runs first for every route (an application-wide dependency) and answers
422 naming the field, or 404 for an id in a path that no row can have.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tidings.kernel.errors import TidingsError, invalid

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 32
CHECKED_PREFIXES = ("/api/", "/app/")
CACHE_ATTRIBUTE = "_tidings_integer_parameters"
DECIMAL_INTEGER = re.compile(r"[+-]?[0-9]+(_[0-9]+)*")


@dataclass(frozen=True)
class _Refused:
    """A JSON value the reader met that no field may hold."""

    why: str


def _integer(text: str) -> int | _Refused:
    value = int(text)
    if INT64_MIN <= value <= INT64_MAX:
        return value
    return _Refused("is beyond the 64-bit integer range")


def _float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused("is not a finite number")


def _constant(name: str) -> _Refused:
    return _Refused(f"is {name}, not a finite number")


def json_problem(raw: bytes) -> tuple[str, str] | None:
    """The first value of a JSON document that no field may hold: (field path, why)."""
    try:
        document = json.loads(raw, parse_int=_integer, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError):
        return None  # not JSON at all: the route's own validation says so
    for path, value, depth in _walk(document):
        if depth > MAX_JSON_DEPTH:
            return path or "body", f"is nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, _Refused):
            return path or "body", value.why
        if isinstance(value, str) and "\x00" in value:
            return path or "body", "contains a NUL character"
    return None


def _walk(document: Any) -> Iterator[tuple[str, Any, int]]:
    """Every value and key of a JSON document with its dotted path, without recursion."""
    stack: list[tuple[str, Any, int]] = [("", document, 0)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if depth > MAX_JSON_DEPTH:
            return
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                child = f"{path}.{key}" if path else str(key)
                yield child, key, depth + 1
                stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            for index in reversed(range(len(value))):
                stack.append((f"{path}.{index}" if path else str(index), value[index], depth + 1))


def _integer_parameters(route: APIRoute) -> tuple[tuple[str, str], ...]:
    """(``path`` or ``query``, name) of every integer parameter of the route and its
    dependencies; worked out once per route, and kept on it."""
    known: tuple[tuple[str, str], ...] | None = getattr(route, CACHE_ATTRIBUTE, None)
    if known is not None:
        return known
    found: list[tuple[str, str]] = []

    def visit(dependant: Dependant) -> None:
        for location, fields in (
            ("path", dependant.path_params),
            ("query", dependant.query_params),
        ):
            for field in fields:
                annotation = field.field_info.annotation
                if annotation is int or int in get_args(annotation):
                    found.append((location, field.alias))
        for sub in dependant.dependencies:
            visit(sub)

    visit(route.dependant)
    setattr(route, CACHE_ATTRIBUTE, tuple(found))
    return tuple(found)


def _out_of_range(text: str) -> bool:
    """An integer (as Pydantic would read it) that no 64-bit column can hold."""
    if not DECIMAL_INTEGER.fullmatch(text.strip()):
        return False  # not an integer at all: validation refuses it with its own message
    return not INT64_MIN <= int(text) <= INT64_MAX


async def guard_inputs(request: Request) -> None:
    """Refuse, before the route runs, what no column can hold (see the module's text)."""
    if not request.url.path.startswith(CHECKED_PREFIXES):
        return  # webhooks keep what they receive, and split it update by update
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise invalid("nul_character", "contains a NUL character", field=name)
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise invalid("nul_character", "contains a NUL character", field=name)
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        for location, name in _integer_parameters(route):
            if location == "path" and _out_of_range(str(request.path_params.get(name, ""))):
                raise TidingsError("not_found", "not found", name, http_status=404)
            if location == "query" and any(
                _out_of_range(v) for v in request.query_params.getlist(name)
            ):
                raise invalid("out_of_range", "must be a 64-bit integer", field=name)
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        problem = json_problem(await request.body())
        if problem is not None:
            field, why = problem
            raise invalid("unacceptable_value", f"{field} {why}", field=field)
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        for name, value in form.multi_items():
            if isinstance(value, str) and "\x00" in value:
                raise invalid("nul_character", "contains a NUL character", field=name)
