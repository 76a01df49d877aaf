"""CSV import and export (X5): per-row errors, idempotent re-runs, round trips."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import Tenant
from tidings.bootstrap import Tidings
from tidings.contacts import jobs
from tidings.contacts.csv_import import write_export
from tidings.contacts.domain import CustomFieldType
from tidings.contacts.orm import Contact, ContactEvent
from tidings.contacts.service import create_field_definition
from tidings.kernel.errors import TidingsError
from tidings.workspaces.orm import Workspace

T = TypeVar("T")

GOOD_AND_BAD = """\ufeff姓名,手機,Email,Tags,level,Lists
陳大文,9123 4567,tai.man@example.com,vip;new,gold,Newsletter
สมชาย ใจดี,+66 81 234 5678,somchai@example.co.th,price-sensitive,silver,
"Lin, Yi-Jun",12345,broken-email,vip,bronze,Newsletter
No Identity,,,vip,,
李美玲,6234 5678,,returning,gold,VIP club
"""


def workspace_of(tidings: Tidings, tenant: Tenant) -> Workspace:
    with tidings.db.reading() as session:
        found = session.get(Workspace, tenant.workspace_id)
        assert found is not None
        return found


def per_batch(tidings: Tidings) -> jobs.RunBatch:
    def run(work: Callable[[Session], T]) -> T:
        with tidings.db.transaction() as session:
            return work(session)

    return run


def run_import(
    tidings: Tidings, workspace: Workspace, path: Path, **kwargs: object
) -> jobs.ImportReport:
    return jobs.import_csv_file(
        path,
        workspace=workspace,
        run_batch=per_batch(tidings),
        clock=tidings.clock,
        source="import:test",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def hk_workspace(tidings: Tidings) -> Workspace:
    from tests.conftest import make_tenant

    tenant = make_tenant(tidings, "hk-shop", region="HK", timezone="Asia/Hong_Kong")
    workspace = workspace_of(tidings, tenant)
    with tidings.db.transaction() as session:
        create_field_definition(
            session,
            workspace=workspace,
            key="level",
            label="Level",
            field_type=CustomFieldType.CHOICE,
            choices=["gold", "silver"],
            now=tidings.clock.now(),
        )
    return workspace


def counts(tidings: Tidings) -> tuple[int, int]:
    with tidings.db.reading() as session:
        return (
            int(session.scalar(select(func.count(Contact.id))) or 0),
            int(session.scalar(select(func.count(ContactEvent.id))) or 0),
        )


def test_valid_rows_are_imported_and_bad_rows_reported_with_line_and_column(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    report = run_import(tidings, hk_workspace, source)
    assert (report.rows, report.created, report.failed) == (5, 3, 2)
    problems = {(line, p.column, p.code) for line, p in report.problems}
    assert problems == {
        (4, "手機", "invalid_phone"),
        (4, "Email", "invalid_email"),
        (4, "level", "invalid_value"),
        (5, "", "no_identity"),
    }
    errors = list(csv.reader((tmp_path / "customers.errors.csv").open(encoding="utf-8")))
    assert errors[0] == ["line", "column", "value", "code", "message"]
    assert {row[0] for row in errors[1:]} == {"4", "5"}
    with tidings.db.reading() as session:
        stored = {c.phone: c for c in session.scalars(select(Contact))}
    assert set(stored) == {"+85291234567", "+66812345678", "+85262345678"}
    assert stored["+85291234567"].name == "陳大文"
    assert stored["+85291234567"].custom_fields == {"level": "gold"}
    assert stored["+66812345678"].country == "TH"


def test_re_running_the_same_file_changes_nothing(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    from datetime import timedelta

    source = tmp_path / "customers.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    run_import(tidings, hk_workspace, source)
    before = counts(tidings)
    with tidings.db.reading() as session:
        stamps = sorted(str(c.updated_at) for c in session.scalars(select(Contact)))
    tidings.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    again = run_import(tidings, hk_workspace, source)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert counts(tidings) == before
    with tidings.db.reading() as session:
        assert sorted(str(c.updated_at) for c in session.scalars(select(Contact))) == stamps


def test_a_changed_row_updates_only_that_contact(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    run_import(tidings, hk_workspace, source)
    source.write_text(
        GOOD_AND_BAD.replace("陳大文,9123 4567", "陳大文 (Tai Man),9123 4567"), encoding="utf-8"
    )
    report = run_import(tidings, hk_workspace, source)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 2)


def test_a_phone_repeated_later_in_the_file_updates_the_first_row(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "dupes.csv"
    source.write_text("name,phone,tags\nA,91234567,x\nA later,+852 9123 4567,y\n", encoding="utf-8")
    report = run_import(tidings, hk_workspace, source)
    assert (report.created, report.updated) == (1, 1)
    with tidings.db.reading() as session:
        (only,) = session.scalars(select(Contact)).all()
    assert only.name == "A later"


def test_file_level_problems_are_errors_with_a_line(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    no_identity = tmp_path / "names.csv"
    no_identity.write_text("name,city\nA,Taipei\n", encoding="utf-8")
    with pytest.raises(TidingsError) as caught:
        run_import(tidings, hk_workspace, no_identity)
    assert caught.value.code == "no_identity_column" and caught.value.field == "line 1"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"name,phone\nA,91234567\n" + "Jos\xe9,61234567\n".encode("latin-1"))
    with pytest.raises(TidingsError) as caught:
        run_import(tidings, hk_workspace, latin1)
    assert caught.value.code == "not_utf8"
    with pytest.raises(TidingsError) as caught:
        run_import(tidings, hk_workspace, tmp_path / "missing.csv")
    assert caught.value.code == "no_such_file"


def test_explicit_column_mapping_and_unknown_columns(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "crm.csv"
    source.write_text("Mobile No,Favourite colour,HubSpot ID\n91234567,red,501\n", encoding="utf-8")
    report = run_import(
        tidings,
        hk_workspace,
        source,
        column_map={"Mobile No": "phone", "HubSpot ID": "external_ids.hubspot"},
    )
    assert report.created == 1
    assert any("Favourite colour" in w for w in report.warnings)
    with pytest.raises(TidingsError) as caught:
        run_import(tidings, hk_workspace, source, column_map={"Mobile No": "telephone_number"})
    assert caught.value.code == "unknown_target"


def test_export_then_import_round_trips_exactly(
    tidings: Tidings, hk_workspace: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(GOOD_AND_BAD, encoding="utf-8")
    run_import(tidings, hk_workspace, source)
    exported = tmp_path / "export.csv"
    with tidings.db.reading() as session, exported.open("w", encoding="utf-8", newline="") as out:
        list(write_export(session, workspace=hk_workspace, out=out))
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    assert len(rows) == 3
    assert {r["tags"] for r in rows} == {"new;vip", "price-sensitive", "returning"}
    before = counts(tidings)
    report = run_import(tidings, hk_workspace, exported)
    assert (report.created, report.updated, report.unchanged, report.failed) == (0, 0, 3, 0)
    assert counts(tidings) == before
