"""Sign-in attempts are pruned past their retention period: an index on their time (#21).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sign_in_records_at", "sign_in_records", ["at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_records_at", table_name="sign_in_records")
