"""Pacing shared by all workers, a number's throughput tier, and who claimed a send (#22).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.db.base

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "number_pacing",
        sa.Column("number_id", tidings.db.base.IdType, nullable=False),
        sa.Column("next_slot", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["number_id"],
            ["whatsapp_numbers.id"],
            name=op.f("fk_number_pacing_number_id_whatsapp_numbers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number_id", name=op.f("pk_number_pacing")),
    )
    with op.batch_alter_table("whatsapp_numbers") as batch:
        batch.add_column(sa.Column("throughput_per_second", sa.Double(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("whatsapp_numbers") as batch:
        batch.drop_column("throughput_per_second")
    op.drop_table("number_pacing")
