"""Alembic environment: migrations run on the connection that ``tidings.db.migrate`` passes."""

from __future__ import annotations

from alembic import context

from tidings.db.metadata import target_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tidings.db.migrate (tidings init)")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
