"""Migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from tidings.bootstrap import Tidings
from tidings.db.metadata import target_metadata
from tidings.db.migrate import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)


def test_the_migrated_schema_matches_the_models(tidings: Tidings) -> None:
    with tidings.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, target_metadata) == []
    assert current_revision(tidings.db.engine) == head_revision()


def test_upgrading_twice_is_harmless(tidings: Tidings) -> None:
    upgrade(tidings.db.engine)
    assert current_revision(tidings.db.engine) == head_revision()


def test_every_migration_goes_down_and_up_again_to_the_same_schema(tidings: Tidings) -> None:
    """An operator who rolls a release back runs the downgrades: each one, from the head to
    nothing, must run, and upgrading again must rebuild exactly the models' schema."""
    engine = tidings.db.engine
    revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    assert len(revisions) > 20 and revisions[0] == head_revision()
    try:
        for older in [*revisions[1:], "base"]:  # one step at a time, newest first
            downgrade(engine, older)
            assert current_revision(engine) == (None if older == "base" else older)
        with engine.connect() as connection:
            left = set(inspect(connection).get_table_names()) - {"alembic_version"}
        assert left == set()  # nothing half-removed
    finally:
        upgrade(engine)  # the next test needs the schema, whatever happened here
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, target_metadata) == []
