"""Repair workspaces whose stored policy overrides can no longer be read.

Before 0015 a PATCH of the policy accepted ``1e309`` (read as infinity) for a price; JSON
stored it as ``null`` and from then on the workspace's policy could not be read (its reads
answered 500 and the worker gave up its inbound events). Each override is checked on its own
against the policy as it is now; those that fail are removed, so the figure falls back to its
default, and the removal is logged.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import json
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tidings.workspaces.domain import usable_overrides

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, policy_overrides FROM workspaces")).all()
    for workspace_id, stored in rows:
        overrides = json.loads(stored) if isinstance(stored, str) else (stored or {})
        kept, dropped = usable_overrides(overrides)
        if not dropped:
            continue
        log.warning("workspace %s: unusable policy overrides removed: %s", workspace_id, dropped)
        connection.execute(
            sa.text("UPDATE workspaces SET policy_overrides = :kept WHERE id = :id").bindparams(
                sa.bindparam("kept", type_=sa.JSON())
            ),
            {"kept": kept, "id": workspace_id},
        )


def downgrade() -> None:
    """Nothing to undo: the removed figures were unreadable."""
