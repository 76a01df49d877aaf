"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tidings.bootstrap import Tidings
from tidings.db.metadata import target_metadata
from tidings.db.migrate import current_revision, head_revision, upgrade


def test_the_migrated_schema_matches_the_models(tidings: Tidings) -> None:
    with tidings.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, target_metadata) == []
    assert current_revision(tidings.db.engine) == head_revision()


def test_upgrading_twice_is_harmless(tidings: Tidings) -> None:
    upgrade(tidings.db.engine)
    assert current_revision(tidings.db.engine) == head_revision()
