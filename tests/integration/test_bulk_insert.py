"""The driver-level bulk insert writes exactly what SQLAlchemy's own insert writes, on SQLite
and PostgreSQL: times in UTC, JSON, booleans, NULLs, text in any script."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert, select

from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.contacts.orm import Contact
from tidings.db.base import bulk_insert, table_of

PREFIXES = ["core", "bulk", "once", "naive"]


def rows(workspace_id: int, prefix: str) -> list[dict[str, Any]]:
    taipei = timezone(timedelta(hours=8))
    return [
        {
            "workspace_id": workspace_id,
            "name": f"{prefix} 林怡君 ทดสอบ {n}",
            "phone": f"+8869{n:02d}{PREFIXES.index(prefix)}00000",
            "lifecycle_stage": "customer",
            "score": n * 1.5,
            "custom_fields": {"level": "gold", "since": "2026-01-02", "n": n, "ok": n % 2 == 0},
            "do_not_contact": n % 2 == 0,
            "timezone": None if n % 3 else "Asia/Taipei",
            "created_at": datetime(2026, 11, 23, 14, 0, 0, 123456, tzinfo=taipei),
            "updated_at": datetime(2026, 11, 23, 6, 0, n, tzinfo=UTC),
        }
        for n in range(5)
    ]


def read(tidings: Tidings, prefix: str) -> list[dict[str, Any]]:
    table = table_of(Contact)
    with tidings.db.reading() as session:
        found = session.execute(
            select(table).where(table.c.name.like(f"{prefix} %")).order_by(table.c.phone)
        ).mappings()
        return [{k: v for k, v in row.items() if k not in ("id", "name", "phone")} for row in found]


def test_bulk_insert_stores_what_sqlalchemy_stores(tidings: Tidings, tenant: Tenant) -> None:
    with tidings.db.transaction() as session:
        session.execute(insert(table_of(Contact)), rows(tenant.workspace_id, "core"))
        bulk_insert(session, table_of(Contact), rows(tenant.workspace_id, "bulk"))
    core, bulk = read(tidings, "core"), read(tidings, "bulk")
    assert len(bulk) == 5 and bulk == core
    assert bulk[0]["created_at"] == datetime(2026, 11, 23, 6, 0, 0, 123456, tzinfo=UTC)


def test_conflicts_are_skipped_when_asked_and_refused_otherwise(
    tidings: Tidings, tenant: Tenant
) -> None:
    with tidings.db.transaction() as session:
        bulk_insert(session, table_of(Contact), rows(tenant.workspace_id, "once"))
    with tidings.db.transaction() as session:
        bulk_insert(
            session, table_of(Contact), rows(tenant.workspace_id, "once"), skip_conflicts=True
        )
    assert len(read(tidings, "once")) == 5
    with pytest.raises(Exception, match=r"(?i)unique"), tidings.db.transaction() as session:
        bulk_insert(session, table_of(Contact), rows(tenant.workspace_id, "once"))


def test_naive_times_are_refused(tidings: Tidings, tenant: Tenant) -> None:
    bad = rows(tenant.workspace_id, "naive")
    bad[0]["updated_at"] = datetime(2026, 11, 23, 6, 0)
    with pytest.raises(Exception, match="naive"), tidings.db.transaction() as session:
        bulk_insert(session, table_of(Contact), bad)
    assert read(tidings, "naive") == []
