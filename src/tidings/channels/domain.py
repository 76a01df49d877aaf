"""Channel-independent values that adapters produce: inbound messages, delivery statuses,
provider errors, and the rule that a delivery status never moves backwards (I1).

Enums are tolerant: a value the provider adds tomorrow becomes ``UNKNOWN``, never a crash.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from tidings.kernel.errors import invalid


class TolerantEnum(enum.StrEnum):
    """A string enum whose unknown values map to ``UNKNOWN``."""

    @classmethod
    def _missing_(cls, value: object) -> TolerantEnum:
        return cls("unknown")


class MessageKind(TolerantEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    REACTION = "reaction"
    BUTTON = "button"
    INTERACTIVE = "interactive"
    ORDER = "order"
    SYSTEM = "system"
    REQUEST_WELCOME = "request_welcome"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"


MEDIA_KINDS = frozenset(
    {
        MessageKind.IMAGE,
        MessageKind.VIDEO,
        MessageKind.AUDIO,
        MessageKind.DOCUMENT,
        MessageKind.STICKER,
    }
)


class DeliveryStatus(TolerantEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    UNKNOWN = "unknown"


# How far along a message is; a report only counts when it moves a message forward.
_PROGRESS = {
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.PLAYED: 4,
}


def next_delivery_status(
    current: DeliveryStatus | None, reported: DeliveryStatus
) -> DeliveryStatus | None:
    """The status a message takes when ``reported`` arrives, or None when nothing changes.

    Webhooks come late, twice and out of order: a ``delivered`` after ``read`` changes
    nothing; ``failed`` counts only before delivery (nothing un-delivers a message) and is
    final; unknown statuses are ignored.
    """
    if reported == DeliveryStatus.UNKNOWN or current == DeliveryStatus.FAILED:
        return None
    if reported == DeliveryStatus.FAILED:
        return reported if current in (None, DeliveryStatus.SENT) else None
    if current is None or _PROGRESS[reported] > _PROGRESS[current]:
        return reported
    return None


@dataclass(frozen=True)
class ProviderError:
    """An error as the provider reported it; its code decides transient or permanent."""

    code: int
    title: str
    message: str = ""
    details: str = ""


@dataclass(frozen=True)
class WhatsAppIdentity:
    """Who a WhatsApp user is. Phone fields may be missing (username users have only a BSUID)."""

    wa_id: str | None
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    profile_name: str | None = None

    @property
    def key(self) -> str:
        """A stable identity: the BSUID when known, else the phone-based ``wa_id``."""
        if self.user_id:
            return f"bsuid:{self.user_id}"
        if self.wa_id:
            return f"wa:{self.wa_id}"
        return "unknown"

    @property
    def phone_e164(self) -> str | None:
        return f"+{self.wa_id}" if self.wa_id and self.wa_id.isdigit() else None


@dataclass(frozen=True)
class MediaRef:
    media_id: str
    mime_type: str
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    is_voice: bool = False
    is_animated: bool = False


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Referral:
    """Where a conversation came from: a click-to-WhatsApp ad or post (I6)."""

    source_type: str
    source_id: str | None = None
    source_url: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """One message a customer sent to one of our numbers."""

    channel_id: str
    account_id: str
    message_id: str
    sender: WhatsAppIdentity
    sent_at: datetime | None
    kind: MessageKind
    text: str | None = None
    media: MediaRef | None = None
    location: Location | None = None
    reply_to: str | None = None
    reaction_to: str | None = None
    reply_id: str | None = None
    referral: Referral | None = None
    referred_product: str | None = None
    is_forwarded: bool = False
    items: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[ProviderError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StatusUpdate:
    """The provider's word on a message we sent."""

    channel_id: str
    message_id: str
    status: DeliveryStatus
    at: datetime | None
    recipient: WhatsAppIdentity
    errors: tuple[ProviderError, ...] = ()
    pricing_category: str | None = None
    pricing_type: str | None = None
    conversation_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ChannelProblem:
    """An error about the channel itself rather than one message (webhook ``value.errors``)."""

    channel_id: str
    errors: tuple[ProviderError, ...]


@dataclass(frozen=True)
class OtherUpdate:
    """A webhook field we keep but do not act on yet (template status, groups, quality …)."""

    account_id: str
    webhook_field: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class WebhookBatch:
    """Everything one webhook POST carried: every entry, change, message and status."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    problems: list[ChannelProblem] = field(default_factory=list)
    others: list[OtherUpdate] = field(default_factory=list)


class UnreadableUpdateError(ValueError):
    """A webhook update whose shape we cannot understand (a message id that is an object, a
    sender that is a list): it is quarantined with this reason instead of guessed at, and the
    other updates of its batch go on."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class FailureAction(enum.StrEnum):
    """What the outgoing pipeline does after a provider error (X3)."""

    RETRY = "retry"  # transient: back off exponentially and try again
    RETRY_RECIPIENT_LATER = "retry_recipient_later"  # pair limit: this recipient only
    RETRY_AFTER_A_DAY = "retry_after_a_day"  # per-user marketing limit
    RETRY_LATER = "retry_later"  # maintenance: about a minute
    SEND_TEMPLATE = "send_template"  # the 24-hour window is closed (P1)
    OPTED_OUT = "opted_out"  # the user stopped marketing messages (P5)
    UNDELIVERABLE = "undeliverable"  # not a reachable WhatsApp user
    REAUTHENTICATE = "reauthenticate"  # token expired or revoked
    PAUSE_CHANNEL = "pause_channel"  # account-level block: spam, policy, billing
    FIX_REQUEST = "fix_request"  # our request or template is wrong


TRANSIENT_ACTIONS = frozenset(
    {
        FailureAction.RETRY,
        FailureAction.RETRY_RECIPIENT_LATER,
        FailureAction.RETRY_AFTER_A_DAY,
        FailureAction.RETRY_LATER,
    }
)


@dataclass(frozen=True)
class FailureClass:
    action: FailureAction
    reason: str

    @property
    def is_transient(self) -> bool:
        return self.action in TRANSIENT_ACTIONS


GRAPH_ID = re.compile(r"^\d{5,32}$")
API_VERSION = re.compile(r"^v\d{1,3}\.\d{1,3}$")
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
MIN_VERIFY_TOKEN = 8


def check_graph_id(value: str, *, field_name: str) -> str:
    """Raises ``TidingsError`` (422) unless ``value`` is a numeric Graph id."""
    if not GRAPH_ID.match(value.strip()):
        raise invalid(
            "invalid_id", "expected the numeric id shown in WhatsApp Manager", field=field_name
        )
    return value.strip()


def check_display_number(value: str) -> str:
    """The business number in ``+<digits>`` form. Raises ``TidingsError`` (422)."""
    digits = re.sub(r"[\s\-().]", "", value).removeprefix("+")
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise invalid(
            "invalid_phone",
            "give the number with its country code, e.g. +852 3000 1234",
            field="display_phone_number",
        )
    return f"+{digits}"


def check_base_url(value: str) -> str:
    """An http(s) base URL without a trailing slash. Raises ``TidingsError`` (422)."""
    parsed = urlsplit(value.strip())
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.netloc
        or parsed.query
        or parsed.fragment
    ):
        raise invalid("invalid_url", "expected an http(s) base URL", field="api_base_url")
    return value.strip().rstrip("/")


def check_api_version(value: str) -> str:
    """Raises ``TidingsError`` (422) unless ``value`` looks like ``v23.0``."""
    if not API_VERSION.match(value.strip()):
        raise invalid(
            "invalid_version", "expected a Graph API version such as v23.0", field="api_version"
        )
    return value.strip()


def check_secret(value: str, *, field_name: str, minimum: int = 1) -> str:
    """Raises ``TidingsError`` (422) for a blank or too short secret."""
    if len(value.strip()) < minimum:
        raise invalid(
            "invalid_secret", f"at least {minimum} characters are required", field=field_name
        )
    return value.strip()
