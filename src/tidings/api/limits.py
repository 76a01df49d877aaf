"""What a request may send: a size limit per route, enforced before the body is read.

The guard sits in front of every route. It refuses a body whose declared length is over the
route's limit without reading a byte of it, refuses an anonymous request to the API before
reading its body (nobody unauthenticated gets to fill the server's memory), then reads the
body in full — counting, so a client that lies about its length or sends it chunked is cut
off at the limit — and hands it to the route. A route therefore always finds its whole body
waiting: a client that sends slowly delays only itself, never a database transaction (on
SQLite, the one writer's turn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
from starlette.types import Message, Receive, Scope, Send

from tidings.api.middleware import HttpMiddleware
from tidings.contacts.routes import MAX_BACKGROUND_IMPORT_BYTES, MAX_IMPORT_BYTES
from tidings.messaging.domain import MB, MEDIA_LIMITS

KB = 1024
JSON_BODY_LIMIT = 1 * MB
WEBHOOK_BODY_LIMIT = 4 * MB  # Meta's batches are a few KB; up to 1,000 updates fit easily
SYNC_BATCH_LIMIT = 16 * MB
MULTIPART_OVERHEAD = 64 * KB
API_PREFIX = "/api/v1/"
SESSION_COOKIE_NAME = "tidings_session"


@dataclass(frozen=True)
class BodyLimit:
    pattern: re.Pattern[str]
    limit: int


# First match wins; anything else may send JSON_BODY_LIMIT.
BODY_LIMITS = (
    BodyLimit(re.compile(r"^/webhooks/whatsapp/[^/]+$"), WEBHOOK_BODY_LIMIT),
    BodyLimit(re.compile(r"^/api/v1/contacts/import$"), MAX_IMPORT_BYTES),
    BodyLimit(re.compile(r"^/api/v1/contacts/imports$"), MAX_BACKGROUND_IMPORT_BYTES),
    BodyLimit(
        re.compile(r"^/api/v1/whatsapp-numbers/[^/]+/media$"),
        max(limit for _, limit in MEDIA_LIMITS.values()) + MULTIPART_OVERHEAD,
    ),
    BodyLimit(
        re.compile(r"^/api/v1/connectors/[^/]+/(contacts|orders|objects/[^/]+)$"), SYNC_BATCH_LIMIT
    ),
)


def body_limit(path: str) -> int:
    for rule in BODY_LIMITS:
        if rule.pattern.match(path):
            return rule.limit
    return JSON_BODY_LIMIT


def _limit_text(limit: int) -> str:
    return f"{limit // MB} MB" if limit >= MB else f"{limit // KB} KB"


class RequestBodyGuard(HttpMiddleware):
    """Enforces :data:`BODY_LIMITS` and reads each body before its route runs."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith(API_PREFIX) and not _presents_credentials(headers):
            await _answer(
                send,
                401,
                "unauthenticated",
                "send 'Authorization: Bearer <API key>' (or sign in to the web app)",
                None,
            )
            return
        limit = body_limit(path)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            if not declared.isdigit():
                await _answer(send, 400, "bad_length", "Content-Length is not a number", None)
            else:
                await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


def _presents_credentials(headers: dict[str, str]) -> bool:
    if headers.get("authorization", "").strip():
        return True
    return f"{SESSION_COOKIE_NAME}=" in headers.get("cookie", "")


async def _too_large(send: Send, limit: int) -> None:
    await _answer(
        send,
        413,
        "too_large",
        f"the body is over this route's limit of {_limit_text(limit)}",
        "body",
        {"limit_bytes": limit},
    )


async def _answer(
    send: Send,
    status: int,
    code: str,
    message: str,
    field: str | None,
    details: dict[str, int] | None = None,
) -> None:
    error: dict[str, object] = {"code": code, "message": message, "field": field}
    if details:
        error["details"] = details
    payload = orjson.dumps({"error": error})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
