"""A merged contact's second phone, e-mail and external ids stay findable (#22).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.db.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "contact_aliases",
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=80), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("created_at", tidings.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_aliases_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_aliases_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_aliases")),
        sa.UniqueConstraint(
            "workspace_id", "kind", "value", name=op.f("uq_contact_aliases_workspace_id_kind_value")
        ),
    )
    op.create_index(
        op.f("ix_contact_aliases_workspace_id"), "contact_aliases", ["workspace_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_contact_aliases_workspace_id"), table_name="contact_aliases")
    op.drop_table("contact_aliases")
