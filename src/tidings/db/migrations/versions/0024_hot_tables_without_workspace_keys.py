"""The hot append-only tables keep their workspace without a foreign key (#23, item 4).

Contact external ids, conversations, messages, timeline events and send traces each hang off
a contact of the same workspace by a cascading foreign key; their second key, on the
workspace, was checked on every insert (a fifth of an inbound message's database time on
PostgreSQL) and guarded nothing the contact's does not. The ``workspace_id`` columns and
their indexes stay.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("contact_external_ids", "conversations", "messages", "contact_events", "send_traces")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_workspace_id_workspaces", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_workspace_id_workspaces",
                "workspaces",
                ["workspace_id"],
                ["id"],
                ondelete="CASCADE",
            )
