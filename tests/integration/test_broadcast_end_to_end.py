"""A broadcast to 10,000 contacts through the WhatsApp simulator over real sockets (P8): the
simulator's ledger — what the provider actually accepted — equals exactly the set the rules
allow, with opted-out, never-opted-in and recently messaged contacts in the audience."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant
from tests.live import simulated_number
from tidings.bootstrap import Tidings
from tidings.simulator.server import RunningSimulator, SimulatorConfig

API = "/api/v1"
CONTACTS = 10_000


def opted_out(n: int) -> bool:
    return n % 7 == 0  # of marketing, on WhatsApp


def opted_in(n: int) -> bool:
    return n % 3 == 0  # to transactional messages on WhatsApp: no longer a stranger (P2)


def recent(n: int) -> bool:
    return n % 5 == 0  # got a parcel notice (a template) two hours before the sale


def phone(n: int) -> str:
    return f"+8869{10_000_000 + n:08d}"


@pytest.fixture
def simulator(tidings: Tidings, tenant: Tenant) -> Iterator[RunningSimulator]:
    # Statuses are not the point here, and the provider's own limits are lifted: the ledger
    # then shows only what our rules let through.
    config = SimulatorConfig(
        delivered_rate=0.0,
        read_rate=0.0,
        reply_rate=0.0,
        throughput_per_second=None,
        pair_interval=None,
    )
    with simulated_number(tidings, tenant, config) as (running, _, _):
        yield running


def import_audience(client: TestClient, tenant: Tenant) -> None:
    lines = ["name,phone,tags,consent.whatsapp.marketing,consent.whatsapp.transactional"]
    for n in range(CONTACTS):
        lines.append(
            ",".join(
                [
                    f"客戶{n}",
                    phone(n),
                    "recent" if recent(n) else "",
                    "no" if opted_out(n) else "",
                    "yes" if opted_in(n) else "",
                ]
            )
        )
    answer = client.post(
        f"{API}/contacts/import",
        content="\n".join(lines).encode(),
        headers={**tenant.headers(), "content-type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == CONTACTS


def accepted_since(simulator: RunningSimulator, seq: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(
        f"{simulator.url}/_simulator/ledger", params={"since": seq}, timeout=30
    ).json()["entries"]
    return [e for e in entries if e["outcome"] == "accepted"]


def send_all(client: TestClient, tenant: Tenant, tidings: Tidings, body: dict[str, Any]) -> int:
    answer = client.post(f"{API}/broadcasts", json=body, headers=tenant.headers())
    assert answer.status_code == 201, answer.text
    broadcast_id: int = answer.json()["broadcast"]["id"]
    worker = tidings.make_worker()
    for _ in range(500):
        if worker.run_once() == 0:
            break
    read = client.get(f"{API}/broadcasts/{broadcast_id}", headers=tenant.headers()).json()
    assert read["status"] in ("sending", "finished")
    return broadcast_id


def test_the_ledger_holds_exactly_what_the_rules_allow(
    client: TestClient, tidings: Tidings, tenant: Tenant, simulator: RunningSimulator
) -> None:
    # Our own P6 figures are lifted too: this test is about the contact rules (P1-P5).
    answer = client.patch(
        f"{API}/workspace",
        json={
            "policy": {
                "daily_quota_per_number": 1_000_000,
                "warmup_first_day_quota": None,
                "messaging_tier_limit": None,
                "throughput_per_number_per_second": 100_000,
            }
        },
        headers=tenant.headers(),
    )
    assert answer.status_code == 200
    import_audience(client, tenant)
    parcel = send_all(
        client,
        tenant,
        tidings,
        {
            "name": "Parcel notices",
            "purpose": "utility",
            "template": {"name": "parcel_shipped", "language": {"code": "zh_TW"}},
            "audience": {"tags": ["recent"]},
        },
    )
    first = accepted_since(simulator, 0)
    assert sorted(e["to"] for e in first) == sorted(
        phone(n).lstrip("+") for n in range(CONTACTS) if recent(n)
    )
    seq = max(e["seq"] for e in first)

    tidings.clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
    sale = send_all(
        client,
        tenant,
        tidings,
        {
            "name": "Winter sale",
            "purpose": "marketing",
            "template": {
                "name": "winter_sale",
                "language": {"code": "zh_TW"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "field": "name", "fallback": "朋友"}],
                    }
                ],
            },
        },
    )
    allowed = {
        phone(n).lstrip("+")
        for n in range(CONTACTS)
        if not opted_out(n) and not (recent(n) and not opted_in(n))
    }
    second = accepted_since(simulator, seq)
    stats = client.get(f"{API}/broadcasts/{sale}/statistics", headers=tenant.headers()).json()
    assert "uncertain" not in stats["outcomes"], stats["reasons"]  # no send cut off midway
    assert len(second) == len(allowed)  # nobody twice
    assert {e["to"] for e in second} == allowed

    assert stats["outcomes"]["accepted"] == len(allowed)
    skipped = stats["reasons"]["skipped"]
    deferred = stats["reasons"]["deferred"]
    assert sum(skipped.values()) == sum(1 for n in range(CONTACTS) if opted_out(n))
    assert all(reason.startswith("P5") for reason in skipped)
    strangers = sum(
        1 for n in range(CONTACTS) if recent(n) and not opted_in(n) and not opted_out(n)
    )
    assert sum(deferred.values()) == strangers
    assert all(reason.startswith("P2") for reason in deferred)
    parcel_stats = client.get(
        f"{API}/broadcasts/{parcel}/statistics", headers=tenant.headers()
    ).json()
    assert parcel_stats["outcomes"] == {"accepted": CONTACTS // 5}
