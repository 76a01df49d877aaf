"""Use cases of WhatsApp numbers (I2). Runs inside the caller's transaction; never commits.

Secrets (access token, app secret, verify token) are sealed with the installation's
:class:`~tidings.kernel.sealing.SecretBox` before they are stored and are never returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tidings.channels import repository
from tidings.channels.domain import (
    DEFAULT_API_VERSION,
    DEFAULT_GRAPH_URL,
    MIN_VERIFY_TOKEN,
    check_api_version,
    check_base_url,
    check_display_number,
    check_graph_id,
    check_secret,
)
from tidings.channels.orm import WhatsAppInboundEvent, WhatsAppNumber, WhatsAppWebhookDelivery
from tidings.channels.whatsapp.client import NumberEndpoint
from tidings.channels.whatsapp.webhook import (
    body_text,
    check_handshake,
    count_updates,
    split_webhook,
    verify_signature,
)
from tidings.db.base import among, insert_new, table_of
from tidings.kernel.errors import TidingsError, conflict, invalid, not_found
from tidings.kernel.sealing import SecretBox
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)
# The payload key of an update kept as escaped JSON text (it could not be stored as JSON, or
# it is a whole POST that could not be split): replaying it files what the text holds.
RAW_TEXT = "raw_text"
SEALED = {
    "access_token": "access_token_sealed",
    "app_secret": "app_secret_sealed",
    "verify_token": "verify_token_sealed",
}


def add_number(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    box: SecretBox,
    now: datetime,
) -> WhatsAppNumber:
    """Register a WhatsApp number of this workspace.

    Raises:
        TidingsError: a malformed field (422 naming it), a phone-number id already registered
            (409).
    """
    name = str(data.get("name") or "").strip()
    if not name:
        raise invalid("required", "give the number a name agents will recognise", field="name")
    phone_number_id = check_graph_id(
        str(data.get("phone_number_id", "")), field_name="phone_number_id"
    )
    if repository.find_by_phone_number_id(session, phone_number_id) is not None:
        raise conflict(
            "number_taken", "this phone-number id is already registered", field="phone_number_id"
        )
    number = WhatsAppNumber(
        workspace_id=workspace.id,
        name=name,
        phone_number_id=phone_number_id,
        business_account_id=check_graph_id(
            str(data.get("business_account_id", "")), field_name="business_account_id"
        ),
        display_phone_number=check_display_number(str(data.get("display_phone_number", ""))),
        api_base_url=check_base_url(str(data.get("api_base_url") or DEFAULT_GRAPH_URL)),
        api_version=check_api_version(str(data.get("api_version") or DEFAULT_API_VERSION)),
        webhook_key=secrets.token_urlsafe(24),
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    _seal_secrets(number, data, box, required=True)
    session.add(number)
    session.flush()
    return number


def update_number(
    session: Session,
    *,
    workspace: Workspace,
    number_id: int,
    data: Mapping[str, Any],
    box: SecretBox,
    now: datetime,
) -> WhatsAppNumber:
    """Change a number's name, API location, secrets or active flag; absent fields stay.

    Raises:
        TidingsError: unknown number (404), malformed field (422).
    """
    number = get_number_or_404(session, workspace, number_id)
    if data.get("name") is not None:
        if not str(data["name"]).strip():
            raise invalid("required", "a number needs a name", field="name")
        number.name = str(data["name"]).strip()
    if data.get("api_base_url") is not None:
        number.api_base_url = check_base_url(str(data["api_base_url"]))
    if data.get("api_version") is not None:
        number.api_version = check_api_version(str(data["api_version"]))
    if data.get("is_active") is not None:
        number.is_active = bool(data["is_active"])
    _seal_secrets(number, data, box, required=False)
    number.updated_at = now
    session.flush()
    return number


def _seal_secrets(
    number: WhatsAppNumber, data: Mapping[str, Any], box: SecretBox, *, required: bool
) -> None:
    for name, column in SEALED.items():
        value = data.get(name)
        if value is None and not required:
            continue
        minimum = MIN_VERIFY_TOKEN if name == "verify_token" else 1
        setattr(
            number,
            column,
            box.seal(check_secret(str(value or ""), field_name=name, minimum=minimum)),
        )


def get_number_or_404(session: Session, workspace: Workspace, number_id: int) -> WhatsAppNumber:
    """Raises ``TidingsError`` (404) for a number of another workspace or none."""
    number = repository.get_number(session, workspace, number_id)
    if number is None:
        raise not_found("WhatsApp number")
    return number


def list_numbers(session: Session, workspace: Workspace) -> Sequence[WhatsAppNumber]:
    return repository.list_numbers(session, workspace)


def webhook_path(number: WhatsAppNumber) -> str:
    """Where Meta (or the simulator) posts this number's webhooks."""
    return f"/webhooks/whatsapp/{number.webhook_key}"


def find_number_by_webhook_key(session: Session, webhook_key: str) -> WhatsAppNumber:
    """Raises ``TidingsError`` (404) for a key no number has."""
    number = repository.find_by_webhook_key(session, webhook_key)
    if number is None:
        raise not_found("webhook")
    return number


def answer_handshake(number: WhatsAppNumber, params: Mapping[str, str], box: SecretBox) -> str:
    """The challenge to echo to Meta's GET verification.

    Raises:
        TidingsError: 403 when the mode or token is wrong.
    """
    challenge = check_handshake(params, box.open(number.verify_token_sealed))
    if challenge is None:
        raise TidingsError(
            "forbidden", "wrong hub.mode or hub.verify_token", "hub.verify_token", 403
        )
    return challenge


@dataclass(frozen=True)
class WebhookTarget:
    """What the endpoint needs to know about the number a webhook URL belongs to."""

    number_id: int
    workspace_id: int
    app_secret: str


class WebhookDirectory:
    """Webhook URL key → number, cached for ``ttl`` seconds so that a webhook POST needs no
    read of its own: a changed app secret or a removed number counts after at most ``ttl``."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, WebhookTarget]] = {}
        self._lock = threading.Lock()

    def target(self, session_factory: Any, webhook_key: str, box: SecretBox) -> WebhookTarget:
        """Raises ``TidingsError`` (404) for a key no number has."""
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(webhook_key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        with session_factory() as session:
            number = find_number_by_webhook_key(session, webhook_key)
            target = WebhookTarget(
                number.id, number.workspace_id, box.open(number.app_secret_sealed)
            )
        with self._lock:
            self._entries[webhook_key] = (now, target)
        return target

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


def accept_webhook(
    session: Session,
    *,
    target: WebhookTarget,
    raw_body: bytes,
    signature: str | None,
    now: datetime,
) -> int:
    """Check a webhook POST and keep it as received; returns how many updates it carries.

    The signature is checked on the exact bytes first: a bad one stores nothing. The body must
    be a WhatsApp webhook (JSON with ``entry``). Splitting and de-duplication happen in the
    worker (:class:`~tidings.channels.jobs.DeliverySplitter`).

    Raises:
        TidingsError: 401 for a missing or wrong signature, 400 for a body that is not a
            WhatsApp webhook.
    """
    if not verify_signature(target.app_secret, raw_body, signature):
        raise TidingsError(
            "bad_signature",
            "X-Hub-Signature-256 does not match the body",
            "X-Hub-Signature-256",
            401,
        )
    try:
        text = body_text(raw_body)  # UTF-8 with or without BOM, UTF-16 or UTF-32
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TidingsError("bad_webhook", "the body is not JSON", "body", 400) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise TidingsError("bad_webhook", "a WhatsApp webhook has an entry list", "entry", 400)
    session.execute(
        insert(table_of(WhatsAppWebhookDelivery)),
        {
            "workspace_id": target.workspace_id,
            "number_id": target.number_id,
            "body": text,
            "received_at": now,
            "split_at": None,
            "updates": 0,
        },
    )
    return count_updates(payload)


def split_delivery(session: Session, delivery: WhatsAppWebhookDelivery, *, now: datetime) -> int:
    """File each update of a kept POST once in the intake (I1); returns how many were new."""
    stored, _ = file_updates(
        session,
        workspace_id=delivery.workspace_id,
        number_id=delivery.number_id,
        received_at=delivery.received_at,
        payload=json.loads(delivery.body),
        now=now,
    )
    delivery.split_at, delivery.updates = now, stored
    return stored


def file_updates(
    session: Session,
    *,
    workspace_id: int,
    number_id: int,
    received_at: datetime,
    payload: Any,
    now: datetime,
) -> tuple[int, list[str]]:
    """File each update of a webhook body once in the intake; returns how many were new, and
    the keys of those that could only be kept quarantined.

    Updates of another number of this workspace (one Meta app, one callback URL) are filed
    under that number; unknown ones under the receiving number, so nothing is dropped. When
    the batch cannot be written in one statement, each update is written on its own, and one
    that still cannot be written is kept quarantined as escaped JSON text, with the reason:
    the others of its batch are stored either way.
    """
    items = split_webhook(payload)
    siblings = {
        n.phone_number_id: n.id for n in repository.list_numbers_of_workspace(session, workspace_id)
    }
    rows = [
        {
            "workspace_id": workspace_id,
            "number_id": siblings.get(item.phone_number_id, number_id),
            "event_key": item.key,
            "kind": item.kind,
            "payload": item.envelope,
            "received_at": received_at,
            "processed_at": None,
            "quarantined_at": None,
            "attempts": 0,
            "last_error": None,
        }
        for item in items
    ]
    table = table_of(WhatsAppInboundEvent)
    try:
        with session.begin_nested():
            return insert_new(session, table, rows), []
    except DBAPIError:
        log.warning("a webhook batch could not be filed at once; filing its updates one by one")
    stored, unstorable = 0, []
    for row in rows:
        try:
            with session.begin_nested():
                stored += insert_new(session, table, [row])
        except DBAPIError as error:
            log.error("webhook update %s could not be stored: %s", str(row["event_key"]), error)
            kept = _unstorable(row, error, now)
            stored += insert_new(session, table, [kept])
            unstorable.append(kept["event_key"])
    return stored, unstorable


def _unstorable(row: dict[str, Any], error: Exception, now: datetime) -> dict[str, Any]:
    """The update as escaped ASCII JSON text, which any column holds, quarantined with why."""
    raw_text = json.dumps(row["payload"], ensure_ascii=True, default=str)
    digest = hashlib.sha256(raw_text.encode()).hexdigest()[:32]
    return {
        **row,
        "event_key": f"unstorable:{digest}",
        "payload": {RAW_TEXT: raw_text},
        "quarantined_at": now,
        "attempts": 1,
        "last_error": f"could not be stored: {type(error).__name__}: {error}"[:4000],
    }


def quarantine_delivery(
    session: Session, delivery: WhatsAppWebhookDelivery, *, reason: str, now: datetime
) -> None:
    """Keep a POST that could not be split as one quarantined update holding its body, so an
    admin sees it beside the others and replays it the same way (it is split again then)."""
    delivery.split_at = now
    delivery.last_error = reason[:4000]
    insert_new(
        session,
        table_of(WhatsAppInboundEvent),
        [
            {
                "workspace_id": delivery.workspace_id,
                "number_id": delivery.number_id,
                "event_key": f"delivery:{delivery.id}",
                "kind": "delivery",
                "payload": {RAW_TEXT: delivery.body},
                "received_at": delivery.received_at,
                "processed_at": None,
                "quarantined_at": now,
                "attempts": delivery.attempts,
                "last_error": reason[:4000],
            }
        ],
    )


def endpoints_for(
    session: Session, number_ids: Sequence[int], box: SecretBox
) -> dict[int, NumberEndpoint | None]:
    """How to call the Cloud API for each number; None for a deactivated number."""
    return {
        number.id: (
            NumberEndpoint(
                base_url=number.api_base_url,
                api_version=number.api_version,
                phone_number_id=number.phone_number_id,
                access_token=box.open(number.access_token_sealed),
            )
            if number.is_active
            else None
        )
        for number in repository.numbers_by_ids(session, number_ids)
    }


def numbers_created_at(session: Session, number_ids: Sequence[int]) -> dict[int, datetime]:
    """When each number was connected: a new number warms up (P6)."""
    return {n.id: n.created_at for n in repository.numbers_by_ids(session, number_ids)}


def default_number(session: Session, workspace: Workspace) -> WhatsAppNumber:
    """The number a message goes out on when nobody chose one: the first active number.

    Raises:
        TidingsError: 422 on ``number_id`` when the workspace has no active number.
    """
    for number in repository.list_numbers(session, workspace):
        if number.is_active:
            return number
    raise invalid(
        "no_number", "connect a WhatsApp number before sending messages", field="number_id"
    )


def sending_number_id(session: Session, *, workspace_id: int, number_id: int | None) -> int | None:
    """The active number automation sends from: the chosen one, else the workspace's first
    active number; None when there is none (the caller records why nothing went)."""
    for number in sorted(
        repository.list_numbers_of_workspace(session, workspace_id), key=lambda n: n.id
    ):
        if number.is_active and (number_id is None or number.id == number_id):
            return number.id
    return None


def get_active_number(session: Session, workspace: Workspace, number_id: int) -> WhatsAppNumber:
    number = get_number_or_404(session, workspace, number_id)
    if not number.is_active:
        raise invalid("inactive_number", "this WhatsApp number is deactivated", field="number_id")
    return number


QUARANTINE_PAGE = 100
MAX_REPLAY_IDS = 1000


def list_quarantine(
    session: Session, workspace: Workspace, *, after_id: int | None = None, limit: int = 50
) -> Sequence[WhatsAppInboundEvent]:
    """Quarantined updates of the workspace, oldest first, with their reason and raw JSON."""
    return repository.quarantined_updates(
        session, workspace, after_id=after_id, limit=max(1, min(limit, QUARANTINE_PAGE))
    )


def count_quarantined(session: Session, workspace_id: int | None = None) -> int:
    return repository.count_quarantined(session, workspace_id)


def replay_quarantined(session: Session, workspace: Workspace, *, ids: Sequence[int] | None) -> int:
    """Put quarantined updates (the given ones, or all when ``ids`` is None) back in the
    intake once their cause is fixed; the worker processes them as if they had just come.
    Processing stays idempotent (a message is filed once), so a replay never doubles one.

    Raises:
        TidingsError: 422 on ``ids`` for an empty or over-long list, 404 when none of the
            given ids is a quarantined update of this workspace.
    """
    if ids is not None:
        if not ids:
            raise invalid("required", "name at least one update, or replay all", field="ids")
        if len(ids) > MAX_REPLAY_IDS:
            raise invalid(
                "too_many", f"at most {MAX_REPLAY_IDS} ids at a time, or replay all", field="ids"
            )
    released = repository.release_quarantined(session, workspace, ids)
    if ids is not None and released == 0:
        raise not_found("quarantined update")
    return released


def numbers_throughput(session: Session, number_ids: Sequence[int]) -> dict[int, float | None]:
    """Each number's own throughput tier (messages/s), None where the workspace's applies."""
    return {n.id: n.throughput_per_second for n in repository.numbers_by_ids(session, number_ids)}


def mark_processed(session: Session, event_ids: list[int], *, now: datetime) -> None:
    """Mark these intake rows processed, in one statement."""
    if event_ids:
        session.execute(
            update(WhatsAppInboundEvent)
            .where(among(session, WhatsAppInboundEvent.id, event_ids))
            .values(processed_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )


def inbound_events(session: Session, ids: list[int]) -> Sequence[WhatsAppInboundEvent]:
    """These intake rows as objects, in id order (the batch that claimed them holds them)."""
    if not ids:
        return []
    return session.scalars(
        select(WhatsAppInboundEvent)
        .where(among(session, WhatsAppInboundEvent.id, ids))
        .order_by(WhatsAppInboundEvent.id)
    ).all()
