"""Typed custom-field definitions.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import event
from sqlalchemy.orm import Session

from tidings.contacts import repository
from tidings.contacts.domain import (
    CustomFieldType,
    FieldSpec,
    check_choices,
    check_field_key,
)
from tidings.contacts.orm import (
    CustomFieldDefinition,
)
from tidings.kernel.errors import conflict, not_found
from tidings.workspaces.orm import Workspace

_SPECS = "tidings.field_specs"


def field_specs(session: Session, workspace: Workspace) -> dict[str, FieldSpec]:
    """The workspace's custom-field definitions in the form the pure rules take.

    Read once per transaction: a batch of rule actions updates thousands of contacts, and the
    definitions only change through the two functions below, which forget the copy."""
    known: dict[int, dict[str, FieldSpec]] = session.info.setdefault(_SPECS, {})
    if workspace.id not in known:
        known[workspace.id] = {
            key: FieldSpec(
                key, CustomFieldType(d.field_type), tuple(d.choices) if d.choices else None
            )
            for key, d in repository.field_definitions(session, workspace).items()
        }
    return dict(known[workspace.id])


def _forget_specs(session: Session, *_: object) -> None:
    session.info.pop(_SPECS, None)


# Another transaction may have changed them: each transaction reads them afresh.
event.listen(Session, "after_commit", _forget_specs)
event.listen(Session, "after_soft_rollback", _forget_specs)  # savepoints too


def create_field_definition(
    session: Session,
    *,
    workspace: Workspace,
    key: str,
    label: str,
    field_type: CustomFieldType,
    choices: list[str] | None,
    now: datetime,
) -> CustomFieldDefinition:
    """Define a typed custom field. Raises ``TidingsError``: bad key/choices (422), taken (409)."""
    check_field_key(key)
    if key in repository.field_definitions(session, workspace):
        raise conflict("key_taken", f"a custom field {key!r} exists already", field="key")
    definition = CustomFieldDefinition(
        workspace_id=workspace.id,
        key=key,
        label=label.strip() or key,
        field_type=field_type.value,
        choices=check_choices(field_type, choices),
        created_at=now,
    )
    session.add(definition)
    session.flush()
    _forget_specs(session)
    return definition


def delete_field_definition(session: Session, *, workspace: Workspace, key: str) -> None:
    """Forget a custom field definition; stored values stay in contacts' data.

    Raises:
        TidingsError: 404 for an unknown key.
    """
    definition = repository.field_definitions(session, workspace).get(key)
    if definition is None:
        raise not_found("custom field", field="key")
    session.delete(definition)
    session.flush()
    _forget_specs(session)
