"""Conflicts from the API's dated upsert belong to no connector (#22).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sync_conflicts") as batch:
        batch.alter_column("connector_id", existing_type=ID, nullable=True)
        batch.alter_column("external_id", existing_type=sa.String(length=200), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM sync_conflicts WHERE connector_id IS NULL OR external_id IS NULL")
    with op.batch_alter_table("sync_conflicts") as batch:
        batch.alter_column("connector_id", existing_type=ID, nullable=False)
        batch.alter_column("external_id", existing_type=sa.String(length=200), nullable=False)
