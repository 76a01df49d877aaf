"""Tags and lists: creating them and putting contacts in and out of them.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    normalize_tag,
    tag_key,
)
from tidings.contacts.orm import (
    Contact,
    ContactList,
    ContactTag,
    ListMembership,
    Tag,
)
from tidings.contacts.service.timeline import log_event
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.workspaces.orm import Workspace


def ensure_tags(
    session: Session, *, workspace: Workspace, names: Iterable[str], now: datetime
) -> dict[str, Tag]:
    """Return the tags named (case-insensitively), creating missing ones; keyed by tag key.

    Raises:
        TidingsError: 422 for an empty or over-long tag.
    """
    wanted: dict[str, str] = {}
    for name in names:
        wanted.setdefault(tag_key(name), normalize_tag(name))  # the first spelling wins
    existing = repository.tags_by_key(session, workspace, wanted)
    missing = [
        {"workspace_id": workspace.id, "name": name, "key": key, "created_at": now}
        for key, name in wanted.items()
        if key not in existing
    ]
    if missing:
        session.execute(insert(Tag), missing)
        existing = repository.tags_by_key(session, workspace, wanted)
    return existing


def add_tags(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    names: Iterable[str],
    source: str,
    now: datetime,
) -> list[str]:
    """Tag a contact; returns the names newly added (already present ones are left alone).

    Raises:
        TidingsError: 422 for an invalid tag name.
    """
    tags = ensure_tags(session, workspace=workspace, names=names, now=now)
    present = repository.tagged_pairs(session, [contact.id], [t.id for t in tags.values()])
    added = [t for t in tags.values() if (contact.id, t.id) not in present]
    for tag in added:
        session.add(ContactTag(contact_id=contact.id, tag_id=tag.id, created_at=now))
        log_event(session, workspace, contact.id, "tag.added", now, {"tag": tag.name}, source)
    if added:
        contact.updated_at = now
    session.flush()
    return [t.name for t in added]


def remove_tag(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    name: str,
    source: str,
    now: datetime,
) -> bool:
    """Untag a contact; False when it did not carry the tag."""
    tag = repository.tags_by_key(session, workspace, [tag_key(name)]).get(tag_key(name))
    if tag is None or not repository.remove_contact_tag(session, contact.id, tag.id):
        return False
    log_event(session, workspace, contact.id, "tag.removed", now, {"tag": tag.name}, source)
    contact.updated_at = now
    return True


def delete_tag(session: Session, *, workspace: Workspace, tag_id: int) -> None:
    """Delete a tag from the workspace and every contact. Raises ``TidingsError`` (404)."""
    tag = repository.get_tag(session, workspace, tag_id)
    if tag is None:
        raise not_found("tag")
    session.delete(tag)
    session.flush()


def create_list(
    session: Session, *, workspace: Workspace, name: str, description: str, now: datetime
) -> ContactList:
    """Raises ``TidingsError``: empty name (422), name taken (409)."""
    clean = " ".join(name.split())
    if not clean:
        raise invalid("required", "a list needs a name", field="name")
    if clean in repository.lists_by_name(session, workspace, [clean]):
        raise conflict("name_taken", f"a list {clean!r} exists already", field="name")
    contact_list = ContactList(
        workspace_id=workspace.id, name=clean, description=description.strip(), created_at=now
    )
    session.add(contact_list)
    session.flush()
    return contact_list


def get_list_or_404(session: Session, workspace: Workspace, list_id: int) -> ContactList:
    """Raises ``TidingsError`` (404) for a list of another workspace or none."""
    found = repository.get_list(session, workspace, list_id)
    if found is None:
        raise not_found("list", field="list_id")
    return found


def delete_list(session: Session, *, workspace: Workspace, list_id: int) -> None:
    """Raises ``TidingsError`` (404)."""
    session.delete(get_list_or_404(session, workspace, list_id))
    session.flush()


def join_list(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    list_id: int,
    source: str,
    now: datetime,
) -> bool:
    """Add a contact to a list; False when already a member. Raises ``TidingsError`` (404)."""
    contact_list = get_list_or_404(session, workspace, list_id)
    if repository.member_pairs(session, [contact.id], [list_id]):
        return False
    session.add(ListMembership(list_id=list_id, contact_id=contact.id, joined_at=now))
    log_event(
        session,
        workspace,
        contact.id,
        "list.joined",
        now,
        {"list_id": list_id, "list": contact_list.name},
        source,
    )
    contact.updated_at = now
    session.flush()
    return True


def leave_list(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    list_id: int,
    source: str,
    now: datetime,
) -> bool:
    """Remove a contact from a list; False when not a member. Raises ``TidingsError`` (404)."""
    contact_list = get_list_or_404(session, workspace, list_id)
    if not repository.remove_membership(session, contact.id, list_id):
        return False
    log_event(
        session,
        workspace,
        contact.id,
        "list.left",
        now,
        {"list_id": list_id, "list": contact_list.name},
        source,
    )
    contact.updated_at = now
    return True


def change_list_by_name(
    session: Session,
    *,
    workspace: Workspace,
    contact: Contact,
    name: str,
    join: bool,
    source: str,
    now: datetime,
) -> bool:
    """Join (creating the list when the workspace has none of that name) or leave a list
    named by automation; True when membership changed."""
    clean = " ".join(name.split())
    found = repository.lists_by_name(session, workspace, [clean]).get(clean)
    if found is None:
        if not join:
            return False
        found = create_list(session, workspace=workspace, name=clean, description="", now=now)
    if join:
        return join_list(
            session, workspace=workspace, contact=contact, list_id=found.id, source=source, now=now
        )
    return leave_list(
        session, workspace=workspace, contact=contact, list_id=found.id, source=source, now=now
    )
