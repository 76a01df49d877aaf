"""Outgoing webhooks: a signed JSON POST to an address a user configured (a sequence's webhook
step now; rules and integrations later).

Security by default: the body is signed with HMAC-SHA256 under a key derived per workspace
from ``TIDINGS_SECRET_KEY`` (header ``X-Tidings-Signature: sha256=<hex>``, with the time in
``X-Tidings-Timestamp`` inside the signed text so a capture cannot be replayed later), and an
address that resolves to a private, loopback or link-local network is refused unless
``TIDINGS_ALLOW_PRIVATE_WEBHOOKS`` is set — a user must not reach our own network through us.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.orm import Session

from tidings.scheduler.orm import BackgroundJob

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class WebhookRefusedError(Exception):
    """The address may not be called (private network) or answered with a failure."""


def signing_key(secret_key: str, workspace_id: int) -> bytes:
    """The workspace's webhook signing key (receivers get it from the workspace settings)."""
    return hmac.new(secret_key.encode(), f"webhooks:{workspace_id}".encode(), "sha256").digest()


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_public_address(url: str) -> None:
    """Raises ``WebhookRefusedError`` when the host resolves to a non-public address."""
    host = urlsplit(url).hostname
    if not host:
        raise WebhookRefusedError(f"no host in {url!r}")
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as error:
        raise WebhookRefusedError(f"cannot resolve {host}: {error}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookRefusedError(f"{host} resolves to the non-public address {address}")


@dataclass
class WebhookPoster:
    """Background-job handler: posts ``payload.body`` to ``payload.url``; a failure raises, so
    the job is retried with backoff and ends ``dead`` with the reason."""

    secret_key: str
    allow_private: bool = False
    transport: httpx.BaseTransport | None = None

    def handle(self, session: Session, job: BackgroundJob, now: datetime) -> None:
        url = str(job.payload["url"])
        if not self.allow_private:
            check_public_address(url)
        body = orjson.dumps(job.payload.get("body") or {})
        timestamp = str(int(now.timestamp()))
        key = signing_key(self.secret_key, int(job.workspace_id or 0))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Tidings-Webhook/1",
            "X-Tidings-Timestamp": timestamp,
            "X-Tidings-Signature": signature(key, timestamp, body),
            "X-Tidings-Delivery": str(job.id),
        }
        with httpx.Client(
            timeout=TIMEOUT, transport=self.transport, follow_redirects=False
        ) as client:
            answer = client.post(url, content=body, headers=headers)
        if answer.status_code >= 300:
            raise WebhookRefusedError(f"{url} answered {answer.status_code}")
