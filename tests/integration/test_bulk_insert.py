"""The driver-level bulk insert and update write exactly what SQLAlchemy's own statements
write, on SQLite and PostgreSQL: times in UTC, JSON, booleans, NULLs, text in any script."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.contacts.orm import Contact
from tidings.db.base import bulk_insert, bulk_update, table_of

PREFIXES = ["core", "bulk", "once", "naive", "upd"]


def rows(workspace_id: int, prefix: str) -> list[dict[str, Any]]:
    taipei = timezone(timedelta(hours=8))
    return [
        {
            "workspace_id": workspace_id,
            "name": f'{prefix} 林怡君 ทดสอบ "quoted" back\\slash\nline {{brace}} {n}',
            "phone": f"+8869{n:02d}{PREFIXES.index(prefix)}00000",
            "lifecycle_stage": "customer",
            "score": n * 3 - 2,
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


def test_bulk_update_stores_what_sqlalchemy_stores(tidings: Tidings, tenant: Tenant) -> None:
    table = table_of(Contact)
    with tidings.db.transaction() as session:
        bulk_insert(session, table, rows(tenant.workspace_id, "core"))
        bulk_insert(session, table, rows(tenant.workspace_id, "upd"))
    with tidings.db.reading() as session:
        ids = {
            prefix: list(
                session.scalars(
                    select(table.c.id)
                    .where(table.c.name.like(f"{prefix} %"))
                    .order_by(table.c.phone)
                )
            )
            for prefix in ("core", "upd")
        }
    later = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=7)))

    def changes(n: int) -> dict[str, Any]:
        return {
            "custom_fields": {"level": "silver", "note": 'say "hi"\\', "n": n},
            "do_not_contact": n % 2 == 1,
            "timezone": "Asia/Bangkok" if n % 2 else None,
            "lead_source": "ร้านค้า 店舖" if n else "web",
            "updated_at": later,
        }

    with tidings.db.transaction() as session:
        for n, contact_id in enumerate(ids["core"]):
            session.execute(update(table).where(table.c.id == contact_id).values(**changes(n)))
        bulk_update(session, table, [{"id": c, **changes(n)} for n, c in enumerate(ids["upd"])])
    core, updated = read(tidings, "core"), read(tidings, "upd")
    assert updated == core
    assert updated[1]["lead_source"] == "ร้านค้า 店舖"
    assert updated[0]["updated_at"] == datetime(2026, 11, 23, 18, 2, 3, 456789, tzinfo=UTC)


def test_bulk_update_keeps_what_is_already_there_when_asked(
    tidings: Tidings, tenant: Tenant
) -> None:
    table = table_of(Contact)
    with tidings.db.transaction() as session:
        bulk_insert(session, table, rows(tenant.workspace_id, "once"))
        first, second = session.scalars(
            select(table.c.id).where(table.c.name.like("once %")).order_by(table.c.phone).limit(2)
        ).all()
        session.execute(update(table).where(table.c.id == first).values(lead_source="kept"))
        bulk_update(
            session,
            table,
            [{"id": first, "lead_source": "new"}, {"id": second, "lead_source": "new"}],
            keep_existing=("lead_source",),
        )
    with tidings.db.reading() as session:
        sources = session.execute(
            select(table.c.id, table.c.lead_source).where(table.c.id.in_([first, second]))
        ).all()
    assert dict(sources) == {first: "kept", second: "new"}


def test_bulk_update_refuses_naive_times_and_changes_nothing(
    tidings: Tidings, tenant: Tenant
) -> None:
    table = table_of(Contact)
    with tidings.db.transaction() as session:
        bulk_insert(session, table, rows(tenant.workspace_id, "naive"))
    before = read(tidings, "naive")
    with tidings.db.reading() as session:
        ids = list(session.scalars(select(table.c.id).where(table.c.name.like("naive %"))))
    with pytest.raises(Exception, match="naive"), tidings.db.transaction() as session:
        bulk_update(
            session,
            table,
            [{"id": i, "score": 99, "updated_at": datetime(2026, 11, 24, 6, 0)} for i in ids],
        )
    assert read(tidings, "naive") == before
