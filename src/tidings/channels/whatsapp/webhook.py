"""Inbound WhatsApp webhooks: the verification handshake, the signature check and the parser.

The parser walks **every** entry, change, message and status of a batch (Meta batches up to
1,000 updates; clients that read only index 0 lose messages), keeps unknown types instead of
failing, and never relies on phone fields alone (username users carry only a BSUID).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidings.channels.domain import (
    MEDIA_KINDS,
    ChannelProblem,
    DeliveryStatus,
    InboundMessage,
    Location,
    MediaRef,
    MessageKind,
    OtherUpdate,
    ProviderError,
    Referral,
    StatusUpdate,
    UnreadableUpdateError,
    WebhookBatch,
    WhatsAppIdentity,
)
from tidings.kernel.errors import TidingsError

log = logging.getLogger(__name__)
SIGNATURE_PREFIX = "sha256="
REPLACEMENT = "\ufffd"
# Longest id kept as a key as it came; longer ones (or ids that are not text) are keyed by a
# digest of the update, so a key always fits its column.
MAX_KEY_PART = 200
# WhatsApp's message ids are under 100 characters; one longer than this fits none of the
# columns that keep it (with its prefixes) and is quarantined rather than cut.
MAX_MESSAGE_ID = 160


def body_text(raw_body: bytes) -> str:
    """A JSON body as text, in whichever Unicode encoding it came (RFC 8259 asks for UTF-8,
    and RFC 4627 let senders use UTF-16 or UTF-32): the encoding is told by the byte-order
    mark or by where the first characters' zero bytes fall, and a UTF-8 byte-order mark is
    dropped rather than refused.

    Raises:
        UnicodeDecodeError: for bytes that are not text in the encoding found.
    """
    return raw_body.decode(json.detect_encoding(raw_body)).removeprefix("\ufeff")


def verify_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """True when ``X-Hub-Signature-256`` is the HMAC-SHA256 of the exact bytes received."""
    if not header or not header.startswith(SIGNATURE_PREFIX) or not app_secret:
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len(SIGNATURE_PREFIX) :].strip().lower())


def sign(app_secret: str, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``raw_body``, as Meta (and our simulator) send it."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def check_handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The challenge to echo for a valid ``GET`` verification request, else None (answer 403)."""
    mode, token = params.get("hub.mode"), params.get("hub.verify_token")
    if mode != "subscribe" or not verify_token or token is None:
        return None
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return params.get("hub.challenge")


def parse_webhook(payload: Any) -> WebhookBatch:
    """Turn a webhook body into our types.

    Raises:
        TidingsError: 400 when the body is not a WhatsApp Business Account webhook at all.
            Unknown message types, statuses and fields inside a valid envelope are kept, not
            refused.
    """
    _check_envelope(payload)
    batch = WebhookBatch()
    for entry in payload["entry"]:
        if not isinstance(entry, dict):
            continue
        account_id = str(entry.get("id", ""))
        for change in _list(entry.get("changes")):
            _parse_change(batch, account_id, change)
    return batch


def _check_envelope(payload: Any) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise TidingsError("bad_webhook", "expected an object with an 'entry' list", "entry", 400)


def _parse_change(batch: WebhookBatch, account_id: str, change: Mapping[str, Any]) -> None:
    field_name = str(change.get("field", ""))
    value = change.get("value")
    if not isinstance(value, dict):
        return
    if field_name != "messages":
        batch.others.append(OtherUpdate(account_id, field_name, value))
        return
    channel_id = str(_map(value.get("metadata")).get("phone_number_id", ""))
    profiles = _profiles(value.get("contacts"))
    for message in _list(value.get("messages")):
        batch.messages.append(_message(channel_id, account_id, message, profiles))
    for status in _list(value.get("statuses")):
        batch.statuses.append(_status(channel_id, status))
    errors = _errors(value.get("errors"))
    if errors:
        batch.problems.append(ChannelProblem(channel_id, errors))


def _profiles(contacts: Any) -> dict[str, WhatsAppIdentity]:
    """Sender identities of a change, keyed by both ``wa_id`` and BSUID."""
    found: dict[str, WhatsAppIdentity] = {}
    for contact in _list(contacts):
        profile = _map(contact.get("profile"))
        identity = WhatsAppIdentity(
            wa_id=_identity(contact.get("wa_id")),
            user_id=_identity(contact.get("user_id")),
            parent_user_id=_text(contact.get("parent_user_id")),
            username=_text(profile.get("username")),
            profile_name=_text(profile.get("name")),
        )
        for key in (identity.wa_id, identity.user_id):
            if key:
                found[key] = identity
    return found


def _message(
    channel_id: str, account_id: str, raw: Mapping[str, Any], profiles: dict[str, WhatsAppIdentity]
) -> InboundMessage:
    message_id = _required_id(raw.get("id"), "messages[].id")
    phone = _sender_part(raw.get("from"), "messages[].from")
    user_id = _sender_part(raw.get("from_user_id"), "messages[].from_user_id")
    if phone is None and user_id is None:
        raise UnreadableUpdateError("messages[].from", "a message names no sender")
    sender = (
        profiles.get(user_id or "") or profiles.get(phone or "") or WhatsAppIdentity(phone, user_id)
    )
    kind_name = raw.get("type", "unknown")
    if not isinstance(kind_name, str):
        raise UnreadableUpdateError(
            "messages[].type", f"a type should be text, not {_shape(kind_name)}"
        )
    kind = MessageKind(kind_name)
    if kind == MessageKind.UNKNOWN:
        log.info("unknown WhatsApp message type %r kept as unknown", raw.get("type"))
    context = _map(raw.get("context"))
    body = _map(raw.get(kind.value)) if kind != MessageKind.CONTACTS else {}
    return InboundMessage(
        channel_id=channel_id,
        account_id=account_id,
        message_id=message_id,
        sender=sender,
        sent_at=_timestamp(raw.get("timestamp")),
        kind=kind,
        text=_message_text(kind, body),
        media=_media(kind, body),
        location=_location(body) if kind == MessageKind.LOCATION else None,
        reply_to=_text(context.get("id")),
        reaction_to=_text(body.get("message_id")) if kind == MessageKind.REACTION else None,
        reply_id=_reply_id(kind, body),
        referral=_referral(raw.get("referral")),
        referred_product=_text(_map(context.get("referred_product")).get("product_retailer_id")),
        is_forwarded=bool(context.get("forwarded") or context.get("frequently_forwarded")),
        items=_items(kind, raw, body),
        errors=_errors(raw.get("errors")),
        raw=raw,
    )


def _message_text(kind: MessageKind, body: Mapping[str, Any]) -> str | None:
    match kind:
        case MessageKind.TEXT | MessageKind.SYSTEM:
            return _text(body.get("body"))
        case MessageKind.REACTION:
            return _text(body.get("emoji"))
        case MessageKind.BUTTON:
            return _text(body.get("text"))
        case MessageKind.INTERACTIVE:
            reply = _map(body.get(str(body.get("type", ""))))
            return _text(reply.get("title")) or _text(reply.get("body"))
        case MessageKind.ORDER:
            return _text(body.get("text"))
        case _ if kind in MEDIA_KINDS:
            return _text(body.get("caption"))
    return None


def _reply_id(kind: MessageKind, body: Mapping[str, Any]) -> str | None:
    if kind == MessageKind.BUTTON:
        return _text(body.get("payload"))
    if kind == MessageKind.INTERACTIVE:
        return _text(_map(body.get(str(body.get("type", "")))).get("id"))
    return None


def _media(kind: MessageKind, body: Mapping[str, Any]) -> MediaRef | None:
    if kind not in MEDIA_KINDS or not body.get("id"):
        return None
    return MediaRef(
        media_id=str(body["id"]),
        mime_type=str(body.get("mime_type", "application/octet-stream")),
        sha256=_text(body.get("sha256")),
        caption=_text(body.get("caption")),
        filename=_text(body.get("filename")),
        url=_text(body.get("url")),
        is_voice=bool(body.get("voice", False)),
        is_animated=bool(body.get("animated", False)),
    )


def _location(body: Mapping[str, Any]) -> Location | None:
    try:
        latitude, longitude = float(body["latitude"]), float(body["longitude"])
    except (KeyError, TypeError, ValueError):
        return None
    return Location(
        latitude,
        longitude,
        _text(body.get("name")),
        _text(body.get("address")),
        _text(body.get("url")),
    )


def _referral(raw: Any) -> Referral | None:
    if not isinstance(raw, dict):
        return None
    return Referral(
        source_type=str(raw.get("source_type", "unknown")),
        source_id=_text(raw.get("source_id")),
        source_url=_text(raw.get("source_url")),
        headline=_text(raw.get("headline")),
        body=_text(raw.get("body")),
        media_type=_text(raw.get("media_type")),
        ctwa_clid=_text(raw.get("ctwa_clid")),
    )


def _items(
    kind: MessageKind, raw: Mapping[str, Any], body: Mapping[str, Any]
) -> tuple[Mapping[str, Any], ...]:
    """Order lines, or shared contact cards: the lists a message may carry."""
    if kind == MessageKind.ORDER:
        return tuple(_list(body.get("product_items")))
    if kind == MessageKind.CONTACTS:
        return tuple(_list(raw.get("contacts")))
    return ()


def _status(channel_id: str, raw: Mapping[str, Any]) -> StatusUpdate:
    pricing = _map(raw.get("pricing"))
    message_id = _required_id(raw.get("id"), "statuses[].id")
    status_name = raw.get("status", "unknown")
    if not isinstance(status_name, str):
        raise UnreadableUpdateError(
            "statuses[].status", f"should be text, not {_shape(status_name)}"
        )
    status = DeliveryStatus(status_name)
    if status == DeliveryStatus.UNKNOWN:
        log.info("unknown WhatsApp status %r kept as unknown", raw.get("status"))
    return StatusUpdate(
        channel_id=channel_id,
        message_id=message_id,
        status=status,
        at=_timestamp(raw.get("timestamp")),
        recipient=WhatsAppIdentity(
            _text(raw.get("recipient_id")), _text(raw.get("recipient_user_id"))
        ),
        errors=_errors(raw.get("errors")),
        pricing_category=_text(pricing.get("category")),
        pricing_type=_text(pricing.get("type")),
        conversation_id=_text(_map(raw.get("conversation")).get("id")),
        raw=raw,
    )


def _errors(raw: Any) -> tuple[ProviderError, ...]:
    found = []
    for error in _list(raw):
        try:
            code = int(error.get("code", 0))
        except (TypeError, ValueError):
            code = 0
        found.append(
            ProviderError(
                code=code,
                title=str(error.get("title", "")),
                message=str(error.get("message", "")),
                details=str(_map(error.get("error_data")).get("details", "")),
            )
        )
    return tuple(found)


def _timestamp(raw: Any) -> datetime | None:
    """Meta sends Unix seconds, as strings in messages and statuses, as numbers elsewhere."""
    try:
        return datetime.fromtimestamp(int(str(raw)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _text(raw: Any) -> str | None:
    """Text of a scalar field; an object or a list where text belongs reads as absent, never
    as its Python spelling."""
    if raw is None or isinstance(raw, Mapping | list):
        return None
    text = str(raw)
    return text if text != "" else None


def _identity(raw: Any) -> str | None:
    """A WhatsApp id as text: Meta sends strings; a number is read as its digits."""
    if isinstance(raw, str):
        return raw or None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return None


def _sender_part(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    found = _identity(raw)
    if found is None and raw != "":
        raise UnreadableUpdateError(where, f"a sender id should be text, not {_shape(raw)}")
    return found


def _required_id(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise UnreadableUpdateError(where, f"an id should be non-empty text, not {_shape(raw)}")
    if len(raw) > MAX_MESSAGE_ID:
        raise UnreadableUpdateError(
            where, f"an id of {len(raw)} characters (over {MAX_MESSAGE_ID})"
        )
    return raw


def _shape(raw: Any) -> str:
    if raw is None:
        return "missing"
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, list):
        return "a list"
    return f"{type(raw).__name__} {str(raw)[:40]!r}"


def storable(value: Any) -> Any:
    """The JSON value with every character a database cannot keep replaced by U+FFFD:
    PostgreSQL refuses NUL and unpaired surrogates in ``jsonb`` and ``text``, and one such
    character must not cost the customer's message (or the batch it came in)."""
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable_text(str(k)): storable(v) for k, v in value.items()}
    return value


def _storable_text(text: str) -> str:
    if text.isascii():
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return "".join(REPLACEMENT if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _map(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _list(raw: Any) -> Sequence[Mapping[str, Any]]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


@dataclass(frozen=True)
class WebhookItem:
    """One update of a batch, as a webhook body of its own, with the key it is stored under."""

    key: str
    kind: str
    phone_number_id: str
    envelope: dict[str, Any]


def split_webhook(payload: Any) -> list[WebhookItem]:
    """Split a batch into single-update webhook bodies, each keyed for idempotent storage.

    Keys: ``message:<wamid>``, ``status:<wamid>:<status>`` (a repeated ``delivered`` is the
    same update, a later ``read`` a new one), and a digest of the content for channel errors
    and other fields. Every entry, change, message and status is kept.

    Raises:
        TidingsError: 400, as :func:`parse_webhook`, for a body that is not a webhook.
    """
    _check_envelope(payload)  # the same check, and the same error, as parse_webhook
    payload = storable(payload)
    items: list[WebhookItem] = []
    for entry in _list(payload["entry"]):
        account_id = str(entry.get("id", ""))
        for change in _list(entry.get("changes")):
            items.extend(_split_change(account_id, change))
    return items


def _split_change(account_id: str, change: Mapping[str, Any]) -> list[WebhookItem]:
    field_name = str(change.get("field", ""))
    value = _map(change.get("value"))
    phone_number_id = str(_map(value.get("metadata")).get("phone_number_id", ""))
    common = {k: v for k, v in value.items() if k not in ("messages", "statuses", "errors")}

    def single(key: str, kind: str, part: dict[str, Any]) -> WebhookItem:
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": account_id, "changes": [{"field": field_name, "value": {**common, **part}}]}
            ],
        }
        return WebhookItem(key, kind, phone_number_id, body)

    if field_name != "messages":
        return [single(f"other:{field_name}:{_digest(value)}", "other", dict(value))]
    contacts = _list(value.get("contacts"))
    cards: dict[str, list[Mapping[str, Any]]] = {}
    for card in contacts:
        for identity in {_identity(card.get("wa_id")), _identity(card.get("user_id"))} - {None}:
            cards.setdefault(str(identity), []).append(card)
    items = [
        single(
            f"message:{_key_part(m.get('id'), m)}",
            "message",
            {"messages": [m], "contacts": _senders_card(cards, contacts, m)},
        )
        for m in _list(value.get("messages"))
    ]
    items += [
        single(
            f"status:{_key_part(s.get('id'), s)}:{_key_part(s.get('status'), s)}",
            "status",
            {"statuses": [s]},
        )
        for s in _list(value.get("statuses"))
    ]
    if _list(value.get("errors")):
        items.append(single(f"problem:{_digest(value)}", "problem", {"errors": value["errors"]}))
    return items


def _key_part(raw: Any, update: Mapping[str, Any]) -> str:
    """An id as part of an idempotency key: as sent when it is short text, else a digest of
    the whole update (so an odd id still files the update once, and the key fits)."""
    if isinstance(raw, str) and 0 < len(raw) <= MAX_KEY_PART:
        return raw
    return "~" + _digest(update)


def _senders_card(
    cards: Mapping[str, list[Mapping[str, Any]]],
    contacts: Sequence[Mapping[str, Any]],
    message: Mapping[str, Any],
) -> list[Mapping[str, Any]]:
    """The profile card of the message's sender: a batch of 100 messages carries 100 cards,
    and each stored update keeps only its own (all of them when none matches). ``cards``
    indexes the batch's cards by identity, so a batch splits in linear time."""
    own: list[Mapping[str, Any]] = []
    for identity in (_identity(message.get("from")), _identity(message.get("from_user_id"))):
        for card in cards.get(identity, ()) if identity is not None else ():
            if not any(card is kept for kept in own):
                own.append(card)
    return own or list(contacts)


def count_updates(payload: Mapping[str, Any]) -> int:
    """How many updates (messages, statuses, errors, other fields) a webhook body carries."""
    total = 0
    for entry in _list(payload.get("entry")):
        for change in _list(_map(entry).get("changes")):
            value = _map(_map(change).get("value"))
            if _map(change).get("field") != "messages":
                total += 1
                continue
            total += len(_list(value.get("messages"))) + len(_list(value.get("statuses")))
            total += 1 if _list(value.get("errors")) else 0
    return total


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
