"""Outgoing webhooks over HTTP: the subscriptions' deliveries (``Courier``) and the one-off
webhook of a sequence step or a rule action (``WebhookPoster``, a background job).

Security by default: every request is signed (``domain.sign``: HMAC-SHA256 over the
timestamp and the body), redirects are not followed, and an address that resolves to a
private, loopback or link-local network is refused unless the installation
(``TIDINGS_ALLOW_PRIVATE_WEBHOOKS``) or the workspace (``tidings workspace
allow-private-webhooks``, an operator's decision) allows it — a user must not reach our own
network through us. The address is checked again before each attempt, since what a name
resolves to can change after the subscription was made.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import orjson
from sqlalchemy.orm import Session

from tidings.egress.http import EgressRefusedError, GuardedTransport, check_url
from tidings.egress.policy import EgressPolicy
from tidings.kernel.errors import invalid
from tidings.scheduler.orm import BackgroundJob
from tidings.scheduler.worker import PermanentJobError
from tidings.webhooks.domain import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tidings.workspaces.orm import Workspace

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "Tidings-Webhook/1"


class WebhookRefusedError(Exception):
    """The address may not be called (private network) or answered with a failure."""


class AddressRefusedError(WebhookRefusedError, PermanentJobError):
    """The address may not be called: a one-off webhook's job ends at once, not retried."""


def workspace_secret(secret_key: str, workspace_id: int) -> str:
    """The workspace's secret for one-off webhooks (sequence steps, rule actions): derived from
    the installation's key, so nothing is stored; admins read it at
    ``GET /api/v1/webhooks/signing-secret`` and check it like a subscription's."""
    digest = hmac.new(secret_key.encode(), f"webhooks:{workspace_id}".encode(), "sha256")
    return "whsec_" + digest.hexdigest()


def check_public_address(url: str, policy: EgressPolicy) -> None:
    """Raises ``WebhookRefusedError`` when ``url`` may not be called under ``policy``."""
    try:
        check_url(url, policy)
    except EgressRefusedError as refused:
        raise WebhookRefusedError(str(refused)) from None


def signed_headers(secret: str | bytes, body: bytes, now: datetime) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


@dataclass
class WebhookPoster:
    """Background-job handler: posts ``payload.body`` to ``payload.url``; a failure raises, so
    the job is retried with backoff and ends ``dead`` with the reason."""

    secret_key: str
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    transport: httpx.BaseTransport | None = None  # tests: a local stand-in

    def handle(self, session: Session, job: BackgroundJob, now: datetime) -> None:
        url = str(job.payload["url"])
        workspace = session.get(Workspace, job.workspace_id) if job.workspace_id else None
        policy = self.policy.widened(
            allow_private=workspace is not None and workspace.allow_private_webhooks
        )
        try:
            check_public_address(url, policy)
        except WebhookRefusedError as refused:
            raise AddressRefusedError(f"refused: {refused}") from None
        body = orjson.dumps(job.payload.get("body") or {})
        secret = workspace_secret(self.secret_key, int(job.workspace_id or 0))
        headers = signed_headers(secret, body, now) | {"X-Tidings-Delivery": str(job.id)}
        with httpx.Client(
            timeout=TIMEOUT,
            transport=self.transport or GuardedTransport(policy),
            follow_redirects=False,
        ) as client:
            try:
                answer = client.post(url, content=body, headers=headers)
            except EgressRefusedError as refused:  # the name now resolves elsewhere
                raise AddressRefusedError(f"refused: {refused}") from None
        if answer.status_code >= 300:
            raise WebhookRefusedError(f"{url} answered {answer.status_code}")


# --- subscriptions' deliveries ------------------------------------------------------------------


@dataclass(frozen=True)
class Parcel:
    """One attempt to make: what to post where, signed with which secret."""

    delivery_id: int
    url: str
    secret: str
    body: bytes
    event_id: str
    event_type: str
    attempt: int
    allow_private: bool


@dataclass(frozen=True)
class Receipt:
    delivery_id: int
    status_code: int | None  # None: no answer (refused, timed out, not allowed)
    error: str | None
    duration_ms: int


@dataclass
class Courier:
    """Posts parcels concurrently over kept-open connections (one pool per process)."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    concurrency: int = 16
    transport: httpx.BaseTransport | None = None  # tests: a local stand-in
    # One pool for receivers the policy allows, one for workspaces allowed private ones.
    _clients: dict[bool, httpx.Client] = field(default_factory=dict, init=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def deliver(self, parcels: Sequence[Parcel], now: datetime) -> list[Receipt]:
        if not parcels:
            return []
        pool = self._executor()
        return list(pool.map(lambda parcel: self._post(parcel, now), parcels))

    def _post(self, parcel: Parcel, now: datetime) -> Receipt:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            policy = self.policy.widened(allow_private=parcel.allow_private)
            check_public_address(parcel.url, policy)
            headers = signed_headers(parcel.secret, parcel.body, now) | {
                "X-Tidings-Event": parcel.event_type,
                "X-Tidings-Event-Id": parcel.event_id,
                "X-Tidings-Delivery": str(parcel.delivery_id),
                "X-Tidings-Attempt": str(parcel.attempt),
            }
            answer = self._http(policy).post(parcel.url, content=parcel.body, headers=headers)
        except (WebhookRefusedError, EgressRefusedError) as refused:
            return Receipt(parcel.delivery_id, None, f"refused: {refused}", took())
        except httpx.HTTPError as error:
            reason = f"{type(error).__name__}: {error}".strip(": ")
            return Receipt(parcel.delivery_id, None, reason[:1000], took())
        complaint = None if answer.is_success else answer.text[:300] or answer.reason_phrase
        return Receipt(parcel.delivery_id, answer.status_code, complaint, took())

    def _http(self, policy: EgressPolicy) -> httpx.Client:
        with self._lock:
            client = self._clients.get(policy.allow_private)
            if client is None:
                limits = httpx.Limits(max_connections=self.concurrency * 2)
                client = self._clients[policy.allow_private] = httpx.Client(
                    timeout=TIMEOUT,
                    transport=self.transport or GuardedTransport(policy, limits=limits),
                    follow_redirects=False,
                    limits=limits,
                )
            return client

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhooks")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def check_webhook_addresses(document: object, policy: EgressPolicy, *, prefix: str) -> None:
    """Refuse a flow or a rule, when it is saved, whose webhook (a step or an action) points
    at an address the policy refuses: 422 naming the place (``definition.steps[2].url``).

    Raises:
        TidingsError: for the first refused address.
    """
    for path, url in _webhook_urls(document, prefix):
        try:
            check_url(url, policy)
        except EgressRefusedError as refused:
            raise invalid("refused_address", str(refused), field=path) from None


def _webhook_urls(document: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(document, dict):
        is_webhook = "webhook" in (document.get("type"), document.get("do"))
        if is_webhook and isinstance(document.get("url"), str):
            yield f"{path}.url", document["url"]
        for key, value in document.items():
            yield from _webhook_urls(value, f"{path}.{key}")
    elif isinstance(document, list):
        for index, item in enumerate(document):
            yield from _webhook_urls(item, f"{path}[{index}]")
