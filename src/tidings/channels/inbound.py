"""A customer's WhatsApp messages turned into CRM facts: the sender's contact (found by
BSUID, then phone, or created with its WhatsApp name and lead source, I6), the message in its
conversation once (keyed by its WhatsApp id), the ``message.received`` event on the timeline,
opt-out and opt-in keywords honoured (P5), and the download of a file queued (I5).

Two ways, one outcome: :func:`record_inbound_message` takes one message through the
contacts' and the inbox's use cases; :func:`record_inbound_messages` takes a batch with a
constant number of statements (#23, item 7) and hands back the messages whose case it does not
decide itself — a keyword, a sender the matcher must judge — for the first way. A
differential test holds the two to writing the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tidings.channels.domain import InboundMessage
from tidings.contacts import service as contacts
from tidings.contacts.domain import TEXT_LIMITS, name_parts
from tidings.kernel.errors import TidingsError
from tidings.messaging import inbox
from tidings.messaging import service as messaging
from tidings.messaging.policy import is_keyword
from tidings.scheduler import service as scheduler
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)
MEDIA_JOB = "whatsapp.media_download"
MEDIA_ATTEMPTS = 5
BSUID_SYSTEM = "whatsapp_bsuid"
WA_ID_SYSTEM = "whatsapp"
RECEIVED = "message.received"


@dataclass(frozen=True)
class Received:
    """One message of a batch, with the caller's handle on it (its intake row, say)."""

    key: int
    number_id: int
    message: InboundMessage


@dataclass
class BatchRecorded:
    """What :func:`record_inbound_messages` did: the keys it recorded, and those it left for
    :func:`record_inbound_message` (in the order they came)."""

    done: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)


def record_inbound_messages(
    session: Session,
    *,
    workspace: Workspace,
    received: Sequence[Received],
    held_back: frozenset[str] = frozenset(),
    now: datetime,
) -> BatchRecorded:
    """Record a batch of one workspace's messages (in the order they came) as
    :func:`record_inbound_message` would one by one, in a few statements per batch.

    Left for the one-by-one way, with every other message of the same sender (so that one
    person's messages keep their order): an opt-out or opt-in keyword, a sender named in
    ``held_back`` (by :func:`sender_keys`: the caller takes another update of theirs one by
    one), and a sender whose contact the batch cannot decide (see
    :func:`tidings.contacts.service.find_or_create_senders`).
    """
    policy = workspaces.policy_for(workspace)
    keywords = (*policy.opt_out_keywords, *policy.opt_in_keywords)
    withheld = set(held_back)
    withheld.update(
        key
        for item in received
        if is_keyword(item.message.text, keywords)
        for key in sender_keys(item.message)
    )
    outcome = BatchRecorded()
    taken = _closed_over_senders(received, withheld, outcome)
    found = contacts.find_or_create_senders(
        session,
        workspace=workspace,
        senders=[_sender(item) for item in taken],
        source="whatsapp",
        now=now,
    )
    if found.left:
        undecided = set(found.left)
        withheld.update(
            key for item in taken if item.key in undecided for key in sender_keys(item.message)
        )
        taken = _closed_over_senders(taken, withheld, outcome)
    stored = inbox.record_inbound_many(
        session,
        workspace=workspace,
        arrivals=[
            inbox.Arrival(item.number_id, found.contact_of[item.key], item.message)
            for item in taken
        ],
        now=now,
    )
    contacts.record_events(
        session,
        workspace=workspace,
        events=[
            contacts.NewEvent(
                contact_id=found.contact_of[item.key],
                event_type=RECEIVED,
                occurred_at=_occurred(item.message, now),
                properties=_received_properties(item.message, item.number_id),
                idempotency_key=_event_key(item.message),
            )
            for item in taken
        ],
        source="whatsapp",
        now=now,
    )
    media = [
        _media_job(workspace, message_id, arrival.number_id, arrival.message)
        for arrival, message_id in stored
        if arrival.message.media is not None
    ]
    if media:
        scheduler.enqueue_jobs(
            session, kind=MEDIA_JOB, jobs=media, max_attempts=MEDIA_ATTEMPTS, now=now
        )
    outcome.done.extend(item.key for item in taken)
    place = {item.key: n for n, item in enumerate(received)}
    outcome.left.sort(key=place.__getitem__)  # in the order they came, for the caller
    return outcome


def sender_keys(message: InboundMessage) -> set[str]:
    """The keys by which a message's sender may be matched to a contact."""
    sender = message.sender
    return {
        key
        for key in (
            f"{BSUID_SYSTEM}:{sender.user_id}" if sender.user_id else None,
            f"{WA_ID_SYSTEM}:{sender.wa_id}" if sender.wa_id else None,
            f"phone:{sender.phone_e164}" if sender.phone_e164 else None,
        )
        if key
    }


def _closed_over_senders(
    received: Sequence[Received], withheld: set[str], outcome: BatchRecorded
) -> list[Received]:
    """The messages none of whose sender's keys is withheld; the others go to
    ``outcome.left``. A withheld message withholds every key of its sender, to the end."""
    while True:
        grown = {
            key
            for item in received
            if sender_keys(item.message) & withheld
            for key in sender_keys(item.message)
        }
        if grown <= withheld:
            break
        withheld |= grown
    taken = []
    for item in received:
        if sender_keys(item.message) & withheld or not sender_keys(item.message):
            outcome.left.append(item.key)
        else:
            taken.append(item)
    return taken


def _sender(item: Received) -> contacts.Sender:
    sender = item.message.sender
    external = {}
    if sender.user_id:
        external[BSUID_SYSTEM] = sender.user_id
    if sender.wa_id:
        external[WA_ID_SYSTEM] = sender.wa_id
    names = _profile_names(item.message)
    return contacts.Sender(
        key=item.key,
        external_ids=external,
        phone=sender.phone_e164,
        on_create={"lead_source": _lead_source(item.message), **names},
        fills=names,
    )


def _lead_source(message: InboundMessage) -> str:
    return "ad_referral" if message.referral is not None else "whatsapp"


def _occurred(message: InboundMessage, now: datetime) -> datetime:
    return min(message.sent_at, now) if message.sent_at is not None else now


def _event_key(message: InboundMessage) -> str:
    return f"whatsapp:{message.message_id}"


def _received_properties(message: InboundMessage, number_id: int) -> dict[str, Any]:
    """What the timeline keeps of a customer's message."""
    properties: dict[str, Any] = {
        "wamid": message.message_id,
        "type": message.kind.value,
        "text": message.text,
        "number_id": number_id,
    }
    if message.location is not None:
        properties["location"] = {
            "latitude": message.location.latitude,
            "longitude": message.location.longitude,
            "name": message.location.name,
            "address": message.location.address,
        }
    if message.referral is not None:
        properties["referral"] = {
            "source_type": message.referral.source_type,
            "source_id": message.referral.source_id,
            "headline": message.referral.headline,
            "ctwa_clid": message.referral.ctwa_clid,
        }
    return properties


def _media_job(
    workspace: Workspace, message_id: int, number_id: int, message: InboundMessage
) -> tuple[int, dict[str, Any], str]:
    """The download of a message's file: workspace, payload and idempotency key."""
    assert message.media is not None
    payload = {
        "message_id": message_id,
        "number_id": number_id,
        "media_id": message.media.media_id,
        "mime_type": message.media.mime_type,
    }
    return workspace.id, payload, f"whatsapp-media:{message_id}"


def record_inbound_message(
    session: Session,
    *,
    workspace: Workspace,
    message: InboundMessage,
    number_id: int,
    now: datetime,
) -> int:
    """Find or create the sender's contact, put the message on its timeline once; its id."""
    # A new contact is created with its WhatsApp name and lead source (I6) in one go.
    on_create: dict[str, Any] = {"lead_source": _lead_source(message), **_profile_names(message)}
    contact, created = _sender_contact(session, workspace, message, now, on_create)
    # The WhatsApp profile name only fills blanks: a name a person or the CRM set is never
    # overwritten (each of name, first and last name on its own).
    blanks = {
        field: value
        for field, value in _profile_names(message).items()
        if getattr(contact, field) is None
    }
    if not created and blanks:
        contact = contacts.update_contact(
            session,
            workspace=workspace,
            contact_id=contact.id,
            data=blanks,
            source="whatsapp",
            now=now,
        )
    contact_id: int = contact.id
    contacts.record_event(
        session,
        workspace=workspace,
        contact=contact,
        event_type=RECEIVED,
        occurred_at=_occurred(message, now),
        properties=_received_properties(message, number_id),
        source="whatsapp",
        idempotency_key=_event_key(message),
        now=now,
    )
    row = inbox.record_inbound(
        session,
        workspace=workspace,
        number_id=number_id,
        contact_id=contact_id,
        message=message,
        content=message.raw,
        now=now,
    )
    if row is not None:
        messaging.honour_keywords(
            session,
            workspace=workspace,
            contact_id=contact_id,
            number_id=number_id,
            text=message.text,
            message_id=message.message_id,
            now=now,
        )
    if row is not None and message.media is not None:
        workspace_id, payload, key = _media_job(workspace, row.id, number_id, message)
        scheduler.enqueue_job(
            session,
            kind=MEDIA_JOB,
            payload=payload,
            workspace_id=workspace_id,
            idempotency_key=key,
            max_attempts=MEDIA_ATTEMPTS,
            now=now,
        )
    return contact_id


def _profile_names(message: InboundMessage) -> dict[str, str]:
    """The contact's name fields from the sender's WhatsApp profile name, where it has one."""
    profile = (message.sender.profile_name or "").strip()
    if not profile:
        return {}
    first, last = name_parts(profile)
    found = {"name": profile[: TEXT_LIMITS["name"]]}
    if first:
        found["first_name"] = first
    if last:
        found["last_name"] = last
    return found


def _sender_contact(
    session: Session,
    workspace: Workspace,
    message: InboundMessage,
    now: datetime,
    on_create: dict[str, Any],
) -> tuple[Any, bool]:
    """The sender's contact row and whether it was created (with ``on_create`` then).

    Matched by BSUID, then phone, then the raw ``wa_id``: phone fields may be missing (username
    users) or not a valid number, and identity must not depend on them alone.
    """
    sender = message.sender
    external: dict[str, str] = {}
    if sender.user_id:
        external[BSUID_SYSTEM] = sender.user_id
    if sender.wa_id:
        external[WA_ID_SYSTEM] = sender.wa_id
    data: dict[str, Any] = {"external_ids": external}
    if sender.phone_e164:
        try:
            return contacts.upsert_contact(
                session,
                workspace=workspace,
                data={**data, "phone": sender.phone_e164},
                match_on=["external_id", "phone"],
                source="whatsapp",
                now=now,
                on_create=on_create,
            )
        except TidingsError as error:
            if error.code != "invalid_phone":
                raise
            log.info("sender %s has no valid phone number; matched by WhatsApp id", sender.key)
    return contacts.upsert_contact(
        session,
        workspace=workspace,
        data=data,
        match_on=["external_id"],
        source="whatsapp",
        now=now,
        on_create=on_create,
    )
