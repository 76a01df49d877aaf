"""Typed custom-field definitions.

Runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime

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


def field_specs(session: Session, workspace: Workspace) -> dict[str, FieldSpec]:
    """The workspace's custom-field definitions in the form the pure rules take."""
    return {
        key: FieldSpec(key, CustomFieldType(d.field_type), tuple(d.choices) if d.choices else None)
        for key, d in repository.field_definitions(session, workspace).items()
    }


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
