"""Request dependencies: who is calling, in which workspace, inside which transaction.

A write request (anything but GET/HEAD/OPTIONS) gets a write transaction that commits after the
route returns and *before* the response is sent, so a failed commit is never reported as
success. Reads get a read-only session.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError, invalid, unauthenticated
from tidings.workspaces.domain import Principal, Role
from tidings.workspaces.orm import Workspace
from tidings.workspaces.service import authenticate_api_key, authenticate_web_session

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "tidings_session"
CSRF_HEADER = "x-csrf-token"


@dataclass
class RequestContext:
    """Everything a route passes on to a service."""

    session: Session
    workspace: Workspace
    principal: Principal
    now: datetime
    tidings: Tidings

    def require(self, role: Role, *, action: str) -> None:
        self.principal.require(role, action=action)

    @property
    def source(self) -> str:
        """How changes made by this request are labelled in timelines."""
        return f"api:{self.principal.label}"


def get_tidings(request: Request) -> Tidings:
    tidings: Tidings = request.app.state.tidings
    return tidings


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("send 'Authorization: Bearer <API key>'")
    return token.strip()


def authenticate_request(
    session: Session, request: Request, *, now: datetime
) -> tuple[Principal, Workspace]:
    """Who is calling: an API key (``Authorization: Bearer``), or the web app's session
    cookie — whose changes must carry the session's CSRF token in ``X-CSRF-Token``."""
    cookie = request.cookies.get(SESSION_COOKIE)
    token = _bearer_token(request) if cookie is None or "authorization" in request.headers else ""
    is_write = request.method not in READ_METHODS
    if token:
        return authenticate_api_key(session, plaintext=token, now=now, may_write=is_write)
    assert cookie is not None
    principal, workspace, web = authenticate_web_session(session, token=cookie, now=now)
    presented = request.headers.get(CSRF_HEADER, "")
    if is_write and not hmac.compare_digest(presented, web.csrf_token):
        message = "send the page's CSRF token in the X-CSRF-Token header"
        raise TidingsError("csrf", message, "X-CSRF-Token", http_status=403)
    return principal, workspace


async def request_context(
    request: Request, tidings: Annotated[Tidings, Depends(get_tidings)]
) -> AsyncIterator[RequestContext]:
    """The request's transaction (a write one for changes) and its authenticated caller.

    A change's body is read in full before its transaction opens: on SQLite the transaction
    is the one writer's turn, and a client sending slowly must not hold it.
    """
    is_write = request.method not in READ_METHODS
    if is_write and not _parsed_as_form(request):
        await request.body()  # kept by the request for the route
    opener = tidings.db.transaction_async if is_write else tidings.db.reading_async
    async with opener() as session:
        now = tidings.clock.now()
        principal, workspace = await anyio.to_thread.run_sync(
            partial(authenticate_request, session, request, now=now)
        )
        yield RequestContext(session, workspace, principal, now, tidings)


def _parsed_as_form(request: Request) -> bool:
    """Forms and uploads were already read by FastAPI, before any dependency ran."""
    content_type = request.headers.get("content-type", "")
    return content_type.startswith(("multipart/", "application/x-www-form-urlencoded"))


async def caller_context(
    request: Request, tidings: Annotated[Tidings, Depends(get_tidings)]
) -> AsyncIterator[RequestContext]:
    """The authenticated caller, for a change that opens its own short transactions (a long
    import commits batch by batch, so that other writers get their turns in between): the
    session given is read-only."""
    async with tidings.db.reading_async() as session:
        now = tidings.clock.now()
        principal, workspace = await anyio.to_thread.run_sync(
            partial(authenticate_request, session, request, now=now)
        )
        yield RequestContext(session, workspace, principal, now, tidings)


Context = Annotated[RequestContext, Depends(request_context, scope="function")]
# For routes that commit in several transactions of their own (see caller_context).
CallerContext = Annotated[RequestContext, Depends(caller_context, scope="function")]


def encode_cursor(last_id: int) -> str:
    raw = json.dumps({"before": last_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """Raises ``TidingsError`` (422 on ``cursor``) for a cursor this API did not hand out."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))["before"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid(
            "invalid_cursor", "use the next_cursor of a previous page", field="cursor"
        ) from None
    if not isinstance(value, int) or not 0 <= value < 2**63:
        raise invalid("invalid_cursor", "use the next_cursor of a previous page", field="cursor")
    return value
