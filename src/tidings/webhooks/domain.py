"""Outgoing webhooks, the pure part (X1, X3): which events exist, which subscription wants
which event, how a delivery is signed, and what a receiver's answer means for the next attempt.

A delivery is signed with HMAC-SHA256 under the subscription's secret over
``"<timestamp>.<body>"``; the timestamp travels in ``X-Tidings-Timestamp`` so that a receiver
can refuse a captured request replayed later (``verify`` does both checks).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

# Every event a subscription may ask for, with what it means. Families ("order.*") and "*"
# are accepted too; an event reported through the API whose type is not listed here reaches
# the subscriptions to its family and to "*".
CATALOG: dict[str, str] = {
    "contact.created": "a contact was created (API, import, first message, sync)",
    "contact.updated": "fields of a contact changed",
    "contact.merged": "another contact was merged into this one (nothing of either is lost)",
    "contact.unmerged": "a merge was undone: the merged contact is back, under a new id",
    "tag.added": "a tag was put on a contact",
    "tag.removed": "a tag was taken off a contact",
    "list.joined": "a contact joined a list",
    "list.left": "a contact left a list",
    "consent.changed": "a contact's consent for a channel and purpose changed",
    "message.received": "a customer's message arrived (any type: text, media, location …)",
    "message.sent": "a message (WhatsApp or e-mail) was accepted by the provider",
    "message.status": "a sent message was delivered, read or played, or failed for good",
    "keyword.detected": "a customer's message contained a keyword group's term",
    "intent.detected": "a customer's message was understood as a built-in intent",
    "order.intent": "a customer said they want to buy a catalogue product (with its SKU)",
    "product.mentioned": "a customer's message named catalogue products (with their SKUs)",
    "conversation.assigned": "a conversation was assigned to an agent or a team",
    "conversation.resolved": "a conversation was marked resolved",
    "sequence.step": "a contact went through a step of a sequence (sent, waited, branched …)",
    "broadcast.finished": "a broadcast has nothing left to send",
    "segment.entered": "a contact entered a saved segment",
    "segment.left": "a contact left a saved segment",
    "churn.risk_raised": "a contact's interactions fell and their sentiment is low",
    "order.placed": "an order was reported (by your shop, through the events API)",
    "order.paid": "an order was reported paid",
    "order.shipped": "an order was reported shipped",
    "order.delivered": "an order was reported delivered",
    "order.cancelled": "an order was reported cancelled",
    "product.viewed": "a product view was reported",
    "link.clicked": "a tracked link in a message was clicked",
    "email.opened": "a tracked e-mail was opened",
    "email.unsubscribed": "a recipient unsubscribed from e-mail",
    "ping": "a test delivery asked for by hand",
}
FAMILIES = frozenset(name.split(".", 1)[0] for name in CATALOG)
EVERYTHING = "*"
MAX_EVENTS = 50
URL_MAX = 2000


def check_event_names(names: object) -> list[str]:
    """The events a subscription asks for: catalogue names, families ("order.*") or "*".

    Raises:
        ValueError: naming the first unknown event, with the list of known ones.
    """
    if not isinstance(names, list) or not names:
        raise ValueError('a list of 1-50 event names (or ["*"] for every event)')
    if len(names) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} event names")
    chosen: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError("event names are texts")
        name = name.strip()
        family = name[:-2] if name.endswith(".*") else None
        if name != EVERYTHING and name not in CATALOG and family not in FAMILIES:
            raise ValueError(
                f"unknown event {name!r}; known: {', '.join(sorted(CATALOG))}, a family such "
                "as 'order.*', or '*'"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def wants(events: list[str], event_type: str) -> bool:
    """Whether a subscription to ``events`` receives an event of ``event_type``."""
    if EVERYTHING in events or event_type in events:
        return True
    family = event_type.split(".", 1)[0]
    return f"{family}.*" in events


_SCHEMES = frozenset({"http", "https"})


def check_target_url(url: object) -> str:
    """A receiver's address: http(s), a host, no credentials in it, at most 2,000 characters.

    Raises:
        ValueError: with the reason.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("an http:// or https:// address")
    url = url.strip()
    if len(url) > URL_MAX:
        raise ValueError(f"at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises on a malformed port
    except ValueError:
        raise ValueError("not a valid address") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError("only http:// and https:// addresses can receive webhooks")
    if not parts.hostname:
        raise ValueError("the address has no host")
    if parts.username or parts.password:
        raise ValueError("put credentials in your receiver's settings, not in the address")
    return url


# --- signing ------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Tidings-Signature"
TIMESTAMP_HEADER = "X-Tidings-Timestamp"
TOLERANCE = timedelta(minutes=5)


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, *, timestamp: str, signature: str, body: bytes, now: datetime) -> bool:
    """What a receiver checks: the signature matches and the timestamp is within five minutes
    of its own clock (an older capture replayed is refused)."""
    if not re.fullmatch(r"\d{1,12}", timestamp or ""):
        return False
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE.total_seconds():
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


# --- the receiver's answer ----------------------------------------------------------------------


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # try again later: the receiver is down or busy
    PERMANENT = "permanent"  # the receiver refused it; trying again will not help (X3)
    GONE = "gone"  # 410: the receiver asks to be unsubscribed (REST hooks convention)


# Client errors that a later attempt may get past: timeout, conflict, lock, too early, too many.
_TRANSIENT_CLIENT_ERRORS = frozenset({408, 409, 423, 425, 429})


def judge(status_code: int | None) -> Outcome:
    """What an answer means; ``None`` is no answer at all (refused connection, timeout)."""
    if status_code is None:
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code == 410:
        return Outcome.GONE
    if status_code in _TRANSIENT_CLIENT_ERRORS or status_code >= 500:
        return Outcome.RETRY
    return Outcome.PERMANENT  # redirects (not followed) and other client errors


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True)
class RetryPolicy:
    """X3: failed deliveries are retried 3 times, every 5 minutes, then dead-lettered."""

    retries: int = 3
    interval: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class NextStep:
    state: DeliveryState
    retry_at: datetime | None


def after_attempt(
    outcome: Outcome, *, attempts: int, policy: RetryPolicy, now: datetime
) -> NextStep:
    """Where a delivery goes after its ``attempts``-th attempt ended with ``outcome``."""
    if outcome is Outcome.DELIVERED:
        return NextStep(DeliveryState.DELIVERED, None)
    if outcome is Outcome.RETRY and attempts <= policy.retries:
        return NextStep(DeliveryState.PENDING, now + policy.interval)
    return NextStep(DeliveryState.DEAD, None)
