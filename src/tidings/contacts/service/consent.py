"""Consent per channel and purpose (C1, P5) and the ids other systems give a contact.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    Channel,
    ConsentPurpose,
    ConsentStatus,
)
from tidings.contacts.orm import (
    Consent,
    Contact,
    ExternalId,
)
from tidings.contacts.service.timeline import log_event
from tidings.kernel.errors import invalid
from tidings.workspaces.orm import Workspace


def set_external_id(
    session: Session, *, workspace: Workspace, contact: Contact, system: str, external_id: str
) -> bool:
    """Record the id another system gives this contact; True when it changed.

    Raises:
        TidingsError: 422 for an empty system or id.
    """
    system, external_id = system.strip().lower(), external_id.strip()
    if not system or not external_id:
        raise invalid("invalid_external_id", "system and id are required", field="external_ids")
    current = repository.external_ids_of(session, [contact.id]).get(contact.id, {})
    if current.get(system) == external_id:
        return False
    if system in current:
        session.execute(
            update(ExternalId)
            .where(ExternalId.contact_id == contact.id, ExternalId.system == system)
            .values(external_id=external_id)
        )
    else:
        session.add(
            ExternalId(
                workspace_id=workspace.id,
                contact_id=contact.id,
                system=system,
                external_id=external_id,
            )
        )
    session.flush()
    return True


def set_consent(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    channel: Channel,
    purpose: ConsentPurpose,
    status: ConsentStatus,
    source: str,
    now: datetime,
) -> bool:
    """Record opt-in or opt-out for one channel and purpose with its source and time (C1).

    Returns True when the status changed; the change is also written to the timeline.
    """
    existing = next(
        (
            c
            for c in repository.consents_of(session, [contact.id]).get(contact.id, [])
            if c.channel == channel.value and c.purpose == purpose.value
        ),
        None,
    )
    if existing is not None and existing.status == status.value:
        return False
    previous = existing.status if existing is not None else None
    if existing is None:
        existing = Consent(
            workspace_id=workspace.id,
            contact_id=contact.id,
            channel=channel.value,
            purpose=purpose.value,
        )
        session.add(existing)
    existing.status, existing.source, existing.recorded_at = status.value, source, now
    log_event(
        session,
        workspace,
        contact.id,
        "consent.changed",
        now,
        {
            "channel": channel.value,
            "purpose": purpose.value,
            "status": status.value,
            "previous": previous,
            "source": source,
        },
        source,
    )
    contact.updated_at = now
    session.flush()
    return True


def opt_out(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    channel: Channel,
    source: str,
    now: datetime,
) -> None:
    """Opt a contact out of every purpose on one channel (P5)."""
    for purpose in ConsentPurpose:
        set_consent(
            session,
            workspace=workspace,
            contact=contact,
            channel=channel,
            purpose=purpose,
            status=ConsentStatus.OPTED_OUT,
            source=source,
            now=now,
        )


def external_ids(session: Session, workspace: Workspace, contact_id: int) -> dict[str, str]:
    """The ids other systems give this contact, by system; empty for another workspace's."""
    if repository.get_contact(session, workspace, contact_id) is None:
        return {}
    return dict(repository.external_ids_of(session, [contact_id]).get(contact_id, {}))


@dataclass(frozen=True)
class SendingFacts:
    """What the sending policy needs to know of a contact (P5 and local time)."""

    do_not_contact: bool
    timezone: str | None
    consents: dict[tuple[str, str], str] = field(default_factory=dict)


def sending_facts(session: Session, contact_ids: Iterable[int]) -> dict[int, SendingFacts]:
    """Do-not-contact, time zone and consent of many contacts in two queries, by id.

    The ids come from rows the caller already holds (a claimed batch spans workspaces).
    """
    wanted = list(set(contact_ids))
    consents: dict[int, dict[tuple[str, str], str]] = {}
    for c in repository.consent_states(session, wanted):
        consents.setdefault(c.contact_id, {})[(c.channel, c.purpose)] = c.status
    return {
        row.id: SendingFacts(
            do_not_contact=bool(row.do_not_contact),
            timezone=row.timezone,
            consents=consents.get(row.id, {}),
        )
        for row in repository.sending_rows(session, wanted)
    }


def countries(session: Session, contact_ids: Iterable[int]) -> dict[int, str | None]:
    """The country of each contact (from its phone number, C2): what a message costs (P9)."""
    return {row.id: row.country for row in repository.country_rows(session, contact_ids)}
