"""What a condition needs to know of a few contacts, gathered in a few queries: the Python
side of the condition language (the SQL side is ``contacts.condition_sql``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.automation.orm import Segment, SegmentMember
from tidings.conditions.domain import ContactFacts, event_types, needs
from tidings.contacts import service as contacts
from tidings.db.base import among
from tidings.messaging import service as messaging


def facts_of(
    session: Session, contact_ids: Collection[int], condition: Any
) -> dict[int, ContactFacts]:
    """The facts ``condition`` reads, for each of these contacts (deleted ones are absent)."""
    return gather_facts(session, contact_ids, needs(condition), event_types(condition))


def gather_facts(
    session: Session, contact_ids: Collection[int], kinds: set[str], types: set[str]
) -> dict[int, ContactFacts]:
    """The facts of these kinds (``needs``) and timeline event types, a few queries in all."""
    wanted = sorted(set(contact_ids))
    profiles = contacts.profiles(session, wanted)
    tags = contacts.tag_names(session, wanted) if "tags" in kinds else {}
    lists = contacts.list_names(session, wanted) if "lists" in kinds else {}
    events = contacts.events_of(session, wanted, types=types) if types else {}
    consents = contacts.consents_of(session, wanted) if "consents" in kinds else {}
    last = messaging.last_messages_of_contacts(session, wanted) if "last_messages" in kinds else {}
    segments = segment_keys_of(session, wanted) if "segments" in kinds else {}
    found = {}
    for contact_id, profile in profiles.items():
        inbound, outbound = last.get(contact_id, (None, None))
        found[contact_id] = ContactFacts(
            tags=frozenset(tags.get(contact_id, ())),
            lists=frozenset(lists.get(contact_id, ())),
            fields=profile.condition_fields(),
            events=events.get(contact_id, ()),
            consents=consents.get(contact_id, {}),
            last_inbound_at=inbound,
            last_outbound_at=outbound,
            segments=frozenset(segments.get(contact_id, ())),
        )
    return found


def segment_keys_of(session: Session, contact_ids: Collection[int]) -> dict[int, set[str]]:
    """The (folded) names of the segments each contact belongs to."""
    found: dict[int, set[str]] = {}
    rows = session.execute(
        select(SegmentMember.contact_id, Segment.key)
        .join(Segment, Segment.id == SegmentMember.segment_id)
        .where(among(session, SegmentMember.contact_id, sorted(set(contact_ids))))
    )
    for contact_id, key in rows:
        found.setdefault(contact_id, set()).add(key)
    return found


def segment_members_query(workspace_id: int) -> Any:
    """For ``contacts.Sources``: the contact ids of the workspace's segment with a folded name."""

    def members(key: str) -> Any:
        return (
            select(SegmentMember.contact_id)
            .join(Segment, Segment.id == SegmentMember.segment_id)
            .where(Segment.workspace_id == workspace_id, Segment.key == key)
        )

    return members


def sources_for(workspace_id: int) -> contacts.Sources:
    """Everything a compiled condition of this workspace may read."""
    return contacts.Sources(
        last_messages=messaging.last_messages_query(workspace_id),
        segment_members=segment_members_query(workspace_id),
    )
