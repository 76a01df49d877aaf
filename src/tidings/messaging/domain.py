"""Pure rules of the outgoing pipeline: what a message may contain, when free-form text is
allowed (P1), and what happens after a provider error (X3).

Outbound content mirrors the Cloud API's message object (``{"type": "text", "text": {...}}``)
so that what an agent or a sequence asks for is what the adapter sends, checked here against
the channel's limits with errors that name the offending field (I5).
"""

from __future__ import annotations

import enum
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidings.channels.domain import FailureAction, FailureClass
from tidings.kernel.errors import TidingsError, conflict, invalid


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class MessageStatus(enum.StrEnum):
    """Where a message is. Inbound ones are ``received``; outbound ones move forward only."""

    RECEIVED = "received"
    QUEUED = "queued"  # waiting for the dispatcher (also after a transient failure)
    DEFERRED = "deferred"  # held back by the sending policy until ``next_attempt_at`` (P7)
    SENDING = "sending"  # claimed; the provider call is in flight
    UNCERTAIN = "uncertain"  # in flight when a worker died: the provider may have it
    ACCEPTED = "accepted"  # the provider took it (the API answered with an id)
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    SKIPPED = "skipped"  # held back by a rule, with the reason kept (P7)


# Outbound progress; a report that does not move a message forward changes nothing.
PROGRESS = {
    MessageStatus.QUEUED: 0,
    MessageStatus.DEFERRED: 0,
    MessageStatus.SENDING: 0,
    MessageStatus.UNCERTAIN: 0,
    MessageStatus.ACCEPTED: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
    MessageStatus.PLAYED: 5,
}
FINAL = frozenset({MessageStatus.FAILED, MessageStatus.SKIPPED})


class Origin(enum.StrEnum):
    AGENT = "agent"
    API = "api"
    AUTOMATION = "automation"
    SEQUENCE = "sequence"
    BROADCAST = "broadcast"
    SYSTEM = "system"


class Purpose(enum.StrEnum):
    """Why a message is sent; consent and caps differ per purpose (P2, P4)."""

    SERVICE = "service"
    UTILITY = "utility"
    MARKETING = "marketing"
    AUTHENTICATION = "authentication"


MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
CAPTIONED = ("image", "video", "document")
SUPPORTED_TYPES = (
    "text",
    *MEDIA_TYPES,
    "template",
    "interactive",
    "reaction",
    "location",
    "contacts",
)
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
WAMID_LIMIT = 200


def check_outbound_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """The content in canonical form, or ``TidingsError`` (422) naming the field at fault.

    ``content`` is ``{"type": <kind>, <kind>: {...}}`` plus an optional
    ``"context": {"message_id": <wamid>}`` for a quoted reply.
    """
    kind = content.get("type")
    if kind not in SUPPORTED_TYPES:
        raise invalid(
            "unsupported_type",
            f"type must be one of {', '.join(SUPPORTED_TYPES)}",
            field="content.type",
        )
    body = content.get(kind)
    if kind == "contacts":
        checked: Any = _check_contacts(body)
    else:
        if not isinstance(body, Mapping):
            raise invalid("required", f"give the {kind} object", field=f"content.{kind}")
        checked = _CHECKS[kind](dict(body))
    result: dict[str, Any] = {"type": kind, kind: checked}
    context = content.get("context")
    if context is not None:
        message_id = context.get("message_id") if isinstance(context, Mapping) else None
        if not isinstance(message_id, str) or not 0 < len(message_id) <= WAMID_LIMIT:
            raise invalid(
                "invalid_context",
                "context.message_id must be the WhatsApp id of the quoted message",
                field="content.context.message_id",
            )
        result["context"] = {"message_id": message_id}
    return result


def _text(body: dict[str, Any], key: str, *, limit: int, field: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise invalid("required", f"{key} is required", field=field)
        return None
    if not isinstance(value, str):
        raise invalid("invalid_type", f"{key} must be a string", field=field)
    if len(value) > limit:
        raise invalid("too_long", f"at most {limit} characters (WhatsApp's limit)", field=field)
    return value


def _check_text(body: dict[str, Any]) -> dict[str, Any]:
    text = _text(body, "body", limit=TEXT_LIMIT, field="content.text.body", required=True)
    if not text or not text.strip():
        raise invalid("required", "the message text is empty", field="content.text.body")
    result: dict[str, Any] = {"body": text}
    if "preview_url" in body:
        if not isinstance(body["preview_url"], bool):
            raise invalid(
                "invalid_type",
                "preview_url must be true or false",
                field="content.text.preview_url",
            )
        result["preview_url"] = body["preview_url"]
    return result


def _media_checker(kind: str) -> Any:
    def check(body: dict[str, Any]) -> dict[str, Any]:
        prefix = f"content.{kind}"
        media_id, link = body.get("id"), body.get("link")
        if (media_id is None) == (link is None):
            raise invalid(
                "media_source", "give exactly one of id (uploaded media) or link", field=prefix
            )
        result: dict[str, Any] = {}
        if media_id is not None:
            if not isinstance(media_id, str) or not media_id.strip():
                raise invalid(
                    "invalid_id", "a media id is a non-empty string", field=f"{prefix}.id"
                )
            result["id"] = media_id
        else:
            if not isinstance(link, str) or not re.match(r"^https?://\S+$", link):
                raise invalid("invalid_url", "link must be an http(s) URL", field=f"{prefix}.link")
            result["link"] = link
        if kind in CAPTIONED:
            caption = _text(
                body, "caption", limit=CAPTION_LIMIT, field=f"{prefix}.caption", required=False
            )
            if caption is not None:
                result["caption"] = caption
        elif body.get("caption"):
            raise invalid(
                "not_allowed", f"{kind} messages have no caption", field=f"{prefix}.caption"
            )
        if kind == "document":
            filename = _text(
                body, "filename", limit=240, field=f"{prefix}.filename", required=False
            )
            if filename is not None:
                result["filename"] = filename
        return result

    return check


def _check_template(body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise invalid(
            "invalid_template",
            "the approved template's name: lowercase letters, digits and underscores",
            field="content.template.name",
        )
    language = body.get("language")
    code = language.get("code") if isinstance(language, Mapping) else None
    if not isinstance(code, str) or not LANGUAGE_CODE.match(code):
        raise invalid(
            "invalid_language",
            "language.code of an approved translation, e.g. en_US, th or zh_TW",
            field="content.template.language.code",
        )
    # "deterministic" is the only policy there is; Meta's contract requires it to be sent.
    result: dict[str, Any] = {"name": name, "language": {"policy": "deterministic", "code": code}}
    components = body.get("components")
    if components is not None:
        if not isinstance(components, list) or not all(
            isinstance(c, Mapping) and c.get("type") in ("header", "body", "button", "footer")
            for c in components
        ):
            raise invalid(
                "invalid_components",
                "components is a list of header, body and button parameter objects",
                field="content.template.components",
            )
        result["components"] = [dict(c) for c in components]
    return result


def _check_interactive(body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("type")
    prefix = "content.interactive"
    if kind not in ("button", "list", "cta_url"):
        raise invalid(
            "unsupported_type",
            "interactive.type must be button, list or cta_url",
            field=f"{prefix}.type",
        )
    text_body = body.get("body")
    if not isinstance(text_body, Mapping):
        raise invalid("required", "the interactive message needs a body", field=f"{prefix}.body")
    _text(
        dict(text_body),
        "text",
        limit=1024 if kind == "button" else 4096,
        field=f"{prefix}.body.text",
        required=True,
    )
    footer = body.get("footer")
    if footer is not None:
        if not isinstance(footer, Mapping):
            raise invalid("invalid_type", "footer is an object with text", field=f"{prefix}.footer")
        _text(dict(footer), "text", limit=60, field=f"{prefix}.footer.text", required=True)
    action = body.get("action")
    if not isinstance(action, Mapping):
        raise invalid(
            "required", "the interactive message needs an action", field=f"{prefix}.action"
        )
    if kind == "button":
        _check_buttons(action.get("buttons"))
    elif kind == "list":
        _check_list(dict(action))
    return dict(body)


def _check_buttons(buttons: Any) -> None:
    field = "content.interactive.action.buttons"
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise invalid("invalid_buttons", "one to three reply buttons", field=field)
    ids, titles = set(), set()
    for index, button in enumerate(buttons):
        reply = button.get("reply") if isinstance(button, Mapping) else None
        if not isinstance(reply, Mapping):
            raise invalid(
                "invalid_buttons",
                "each button is {type: reply, reply: {id, title}}",
                field=f"{field}[{index}]",
            )
        button_id = _text(
            dict(reply), "id", limit=256, field=f"{field}[{index}].reply.id", required=True
        )
        title = _text(
            dict(reply), "title", limit=20, field=f"{field}[{index}].reply.title", required=True
        )
        if button_id in ids or title in titles:
            raise invalid(
                "duplicate_button",
                "button ids and titles must be unique",
                field=f"{field}[{index}]",
            )
        ids.add(button_id)
        titles.add(title)


def _check_list(action: dict[str, Any]) -> None:
    field = "content.interactive.action"
    _text(action, "button", limit=20, field=f"{field}.button", required=True)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        raise invalid("invalid_sections", "one to ten sections", field=f"{field}.sections")
    rows = 0
    for s_index, section in enumerate(sections):
        if not isinstance(section, Mapping) or not isinstance(section.get("rows"), list):
            raise invalid(
                "invalid_sections", "each section has rows", field=f"{field}.sections[{s_index}]"
            )
        _text(
            dict(section),
            "title",
            limit=24,
            field=f"{field}.sections[{s_index}].title",
            required=False,
        )
        for r_index, row in enumerate(section["rows"]):
            where = f"{field}.sections[{s_index}].rows[{r_index}]"
            if not isinstance(row, Mapping):
                raise invalid("invalid_row", "a row is {id, title, description}", field=where)
            _text(dict(row), "id", limit=200, field=f"{where}.id", required=True)
            _text(dict(row), "title", limit=24, field=f"{where}.title", required=True)
            _text(dict(row), "description", limit=72, field=f"{where}.description", required=False)
            rows += 1
    if not 1 <= rows <= 10:
        raise invalid(
            "invalid_rows", "one to ten rows across all sections", field=f"{field}.sections"
        )


def _check_reaction(body: dict[str, Any]) -> dict[str, Any]:
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise invalid(
            "required",
            "the WhatsApp id of the message reacted to",
            field="content.reaction.message_id",
        )
    emoji = body.get("emoji", "")
    if not isinstance(emoji, str) or len(emoji) > 16:
        raise invalid(
            "invalid_emoji",
            "one emoji, or empty to remove a reaction",
            field="content.reaction.emoji",
        )
    return {"message_id": message_id, "emoji": emoji}


def _check_location(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, low, high in (("latitude", -90.0, 90.0), ("longitude", -180.0, 180.0)):
        value = body.get(key)
        try:
            number = None if isinstance(value, bool) else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = None
        if number is None or not low <= number <= high:
            raise invalid(
                "invalid_coordinate",
                f"{key} between {low:g} and {high:g}",
                field=f"content.location.{key}",
            )
        # Meta's contract types coordinates as strings; numbers are written without loss.
        result[key] = repr(number) if isinstance(value, int | float) else str(value).strip()
    for key in ("name", "address"):
        value = _text(body, key, limit=1000, field=f"content.location.{key}", required=False)
        if value is not None:
            result[key] = value
    return result


def _check_contacts(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not body or not all(isinstance(c, Mapping) for c in body):
        raise invalid(
            "required", "contacts is a non-empty list of contact cards", field="content.contacts"
        )
    for index, card in enumerate(body):
        name = card.get("name")
        if not isinstance(name, Mapping) or not name.get("formatted_name"):
            raise invalid(
                "required",
                "each card needs name.formatted_name",
                field=f"content.contacts[{index}].name",
            )
    return [dict(c) for c in body]


_CHECKS: dict[str, Any] = {
    "text": _check_text,
    "template": _check_template,
    "interactive": _check_interactive,
    "reaction": _check_reaction,
    "location": _check_location,
    **{kind: _media_checker(kind) for kind in MEDIA_TYPES},
}


def summary_of(content: Mapping[str, Any]) -> str | None:
    """The words an agent sees for a message in the thread and the conversation list."""
    kind = content.get("type")
    body = content.get(str(kind))
    if kind == "text" and isinstance(body, Mapping):
        return str(body.get("body"))
    if kind in MEDIA_TYPES and isinstance(body, Mapping):
        return str(body["caption"]) if body.get("caption") else f"[{kind}]"
    if kind == "template" and isinstance(body, Mapping):
        return f"[template {body.get('name')}]"
    if kind == "interactive" and isinstance(body, Mapping):
        inner = body.get("body")
        return str(inner.get("text")) if isinstance(inner, Mapping) else "[interactive]"
    if kind == "reaction" and isinstance(body, Mapping):
        return str(body.get("emoji") or "[reaction removed]")
    return f"[{kind}]"


# --- P1: the customer-service window -------------------------------------------------------


def window_closes_at(last_inbound_at: datetime | None, window: timedelta) -> datetime | None:
    return last_inbound_at + window if last_inbound_at is not None else None


def is_window_open(last_inbound_at: datetime | None, now: datetime, window: timedelta) -> bool:
    closes = window_closes_at(last_inbound_at, window)
    return closes is not None and now < closes


# --- X3: what follows a failed attempt ------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    at: datetime
    reason: str


@dataclass(frozen=True)
class GiveUp:
    reason: str


RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
PAIR_PAUSE = timedelta(seconds=6)
MAINTENANCE_PAUSE = timedelta(minutes=1)
MARKETING_LIMIT_PAUSE = timedelta(hours=24)


def after_failure(
    failure: FailureClass,
    *,
    attempts: int,
    max_retries: int,
    now: datetime,
    jitter_seed: int,
    valid_until: datetime | None = None,
) -> Retry | GiveUp:
    """Retry a transient failure with exponential backoff (X3): until the message's validity
    ends when it has one, else while ``max_retries`` remain. Permanent failures give up at once.

    ``attempts`` counts the attempts made so far, the failed one included. The delay is
    ``RETRY_BASE`` × 4^(n-1), capped at ``RETRY_CAP``, plus a jitter of up to 20% that differs
    per message and attempt, so a burst of failures does not come back as a burst.
    """
    if not failure.is_transient:
        prefix = {
            FailureAction.SEND_TEMPLATE: "P1: ",
            FailureAction.OPTED_OUT: "P5: ",
        }.get(failure.action, "X3: permanent; ")
        return GiveUp(prefix + failure.reason)
    if valid_until is None and attempts > max_retries:
        return GiveUp(f"X3: gave up after {attempts} attempts; {failure.reason}")
    if failure.action == FailureAction.RETRY_RECIPIENT_LATER:
        delay = PAIR_PAUSE * attempts
    elif failure.action == FailureAction.RETRY_LATER:
        delay = MAINTENANCE_PAUSE
    elif failure.action == FailureAction.RETRY_AFTER_A_DAY:
        delay = MARKETING_LIMIT_PAUSE
    else:
        delay = min(RETRY_BASE * (4 ** min(attempts - 1, 8)), RETRY_CAP)
    delay += delay * jitter_share(jitter_seed, attempts)
    if valid_until is not None:
        if now + delay > valid_until:
            return GiveUp(
                f"X3: still failing when the message's validity ended, after {attempts} "
                f"attempts; {failure.reason}"
            )
        return Retry(now + delay, f"X3: retry {attempts} within its validity; {failure.reason}")
    return Retry(now + delay, f"X3: retry {attempts}/{max_retries}; {failure.reason}")


def jitter_share(seed: int, attempt: int) -> float:
    """A share of 0 to 0.2, fixed for a (message, attempt) pair and spread across pairs."""
    digest = hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=2).digest()
    return (int.from_bytes(digest) % 200) / 1000


def next_outbound_status(current: MessageStatus, reported: MessageStatus) -> MessageStatus | None:
    """The status an outbound message takes on a report, or None when nothing changes.

    Reports arrive late, twice and out of order: nothing moves a message backwards, a failure
    only counts before delivery, and failed or skipped messages stay so.
    """
    if current in FINAL:
        return None
    if reported == MessageStatus.FAILED:
        return reported if PROGRESS.get(current, 0) <= PROGRESS[MessageStatus.SENT] else None
    if reported not in PROGRESS:
        return None
    return reported if PROGRESS[reported] > PROGRESS.get(current, 0) else None


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 0 < len(key) <= 300:
        raise invalid(
            "invalid_key", "an idempotency key has 1-300 characters", field="idempotency_key"
        )
    return key


def window_closed() -> TidingsError:
    """Free-form content asked for outside the 24-hour window (P1): 409 on ``content.type``."""
    return conflict(
        "window_closed",
        "P1: the 24-hour customer-service window is closed; send an approved template",
        field="content.type",
    )


# --- The inbox (I1–I4) ----------------------------------------------------------------------


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer or a third party
    RESOLVED = "resolved"
    SNOOZED = "snoozed"  # back to open at ``snoozed_until`` or on the next inbound message


MAX_SNOOZE = timedelta(days=365)


def check_label(label: str) -> str:
    """Labels are single words (letters of any script, digits, ``_`` and ``-``), lowercased."""
    cleaned = label.strip().lower()
    if not 1 <= len(cleaned) <= 64 or not all(_word_character(c) for c in cleaned):
        raise invalid(
            "invalid_label", "a label is 1-64 letters, digits, '_' or '-'", field="labels"
        )
    return cleaned


def _word_character(char: str) -> bool:
    """Letters and digits of any script, with their combining marks (Thai vowels), '_', '-'."""
    return char.isalnum() or char in "_-" or unicodedata.category(char).startswith("M")


def check_shortcut(shortcut: str) -> str:
    cleaned = shortcut.strip().removeprefix("/").lower()
    if not 1 <= len(cleaned) <= 64 or not all(_word_character(c) for c in cleaned):
        raise invalid(
            "invalid_shortcut",
            "a shortcut is 1-64 letters, digits, '_' or '-' (typed after '/')",
            field="shortcut",
        )
    return cleaned


def check_snooze(until: datetime | None, now: datetime) -> datetime:
    if until is None:
        raise invalid("required", "say until when to snooze", field="snoozed_until")
    if until <= now or until - now > MAX_SNOOZE:
        raise invalid(
            "invalid_snooze", "a time in the future, at most a year away", field="snoozed_until"
        )
    return until


def status_after_inbound(status: ConversationStatus) -> ConversationStatus:
    """A customer writing again reopens a resolved or snoozed conversation."""
    if status in (ConversationStatus.RESOLVED, ConversationStatus.SNOOZED):
        return ConversationStatus.OPEN
    return status


@dataclass(frozen=True)
class InboxState:
    """The part of a conversation a customer's message changes."""

    status: str
    unread_count: int
    last_inbound_at: datetime | None
    last_message_at: datetime | None
    snoozed_until: datetime | None


def after_inbound(state: InboxState, sent_at: datetime) -> InboxState:
    """A customer's message sent at ``sent_at`` arrived: the window clock (P1) and the last
    message time move to it, never backwards; one more unread; a resolved or snoozed
    conversation reopens (and is no longer snoozed)."""
    status = status_after_inbound(ConversationStatus(state.status))
    return InboxState(
        status=status.value,
        unread_count=state.unread_count + 1,
        last_inbound_at=_later(state.last_inbound_at, sent_at),
        last_message_at=_later(state.last_message_at, sent_at),
        snoozed_until=None if status == ConversationStatus.OPEN else state.snoozed_until,
    )


def _later(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None or moment > current else current


def automation_pause_until(replied_at: datetime, pause: timedelta) -> datetime:
    """When a human agent replies, automation for that contact waits this long (I3)."""
    return replied_at + pause


# --- P6: pacing sends per number ---------------------------------------------------------------


class UncertainDecision(enum.StrEnum):
    """What a person decided about a message whose fate is unknown."""

    SENT = "sent"  # the customer has it (they replied, WhatsApp shows it): never resend
    RESEND = "resend"  # it did not arrive: send it again


def paced_interval(throughput_per_second: float, headroom: float) -> float:
    """Seconds between two sends on a number paced ``headroom`` below its throughput: Meta
    counts over its own window, and a little below the limit never draws a 130429."""
    return 1.0 / (throughput_per_second * (1.0 - headroom))


@dataclass(frozen=True)
class SlotGrant:
    """Send slots reserved for one number: ``count`` slots from ``start``, ``interval`` apart."""

    start: float
    count: int
    interval: float

    @property
    def end(self) -> float:
        return self.start + self.count * self.interval


def grant_slots(
    next_slot: float, *, wanted: int, now: float, horizon: float, interval: float
) -> SlotGrant:
    """The slots a claim may take on a number whose next free slot is ``next_slot``: up to
    ``wanted``, none later than ``horizon`` seconds from now (the rest wait for a later pass,
    so no pass holds its worker longer than that)."""
    start = max(next_slot, now)
    room = int((now + horizon - start) / interval + 1e-9) if start < now + horizon else 0
    return SlotGrant(start, max(0, min(wanted, room)), interval)


# --- I5: what the channel accepts ------------------------------------------------------------

MB = 1024 * 1024
MEDIA_LIMITS: dict[str, tuple[frozenset[str], int]] = {
    "image": (frozenset({"image/jpeg", "image/png"}), 5 * MB),
    "video": (frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    "audio": (
        frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
        16 * MB,
    ),
    "document": (
        frozenset(
            {
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        100 * MB,
    ),
    "sticker": (frozenset({"image/webp"}), 500 * 1024),
}
INBOUND_MEDIA_LIMIT = 100 * MB


def media_kind_for(mime_type: str, size: int) -> str:
    """The WhatsApp media kind a file can be sent as, or ``TidingsError`` (422) saying why not.

    A JPEG or PNG is an image, WebP a sticker, and so on; the size limit is the kind's (I5).
    """
    mime = mime_type.split(";")[0].strip().lower()
    for kind, (types, limit) in MEDIA_LIMITS.items():
        if mime in types:
            if size > limit:
                raise invalid(
                    "too_large",
                    f"WhatsApp accepts {kind} files up to {limit / MB:g} MB; this one is "
                    f"{size / MB:.1f} MB",
                    field="file",
                )
            if size == 0:
                raise invalid("empty_file", "the file is empty", field="file")
            return kind
    raise invalid(
        "unsupported_media",
        f"WhatsApp does not accept {mime or 'files without a type'}; send JPEG/PNG images, "
        "MP4 video, AAC/MP3/OGG audio, PDF or Office documents, or WebP stickers",
        field="file",
    )
