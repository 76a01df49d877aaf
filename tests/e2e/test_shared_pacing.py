"""Two `tidings worker` processes sending on one number stay under its throughput together
(#22, P6): each claim reserves its send slots from a bucket in the database, a headroom below
the number's limit, so the simulator — which enforces Meta's 80 messages/s per number and
answers 130429 above it — never sees a second over the limit, and every message goes once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Tenant
from tests.e2e.test_sequence_crash import WorkerProcess
from tests.live import Stack, fast_config, live_stack
from tidings.bootstrap import Tidings
from tidings.kernel.clock import SharedVirtualClock

MESSAGES = 600
LIMIT = 80


@pytest.fixture
def clock(tmp_path: Path) -> SharedVirtualClock:
    return SharedVirtualClock(tmp_path / "clock", start=datetime(2026, 11, 24, 2, tzinfo=UTC))


@pytest.fixture
def stack(tidings: Tidings, tenant: Tenant) -> Iterator[Stack]:
    config = fast_config(read_rate=0.0, delivered_rate=1.0, throughput_per_second=LIMIT)
    config.update({"pair_interval": None, "latency": 0.005})
    with live_stack(tidings, tenant, config) as running:
        yield running


def queue_messages(stack: Stack) -> None:
    api = stack.api
    policy = {
        "warmup_first_day_quota": None,
        "messaging_tier_limit": None,
        "daily_quota_per_number": 100_000,
    }
    assert api.patch("/api/v1/workspace", json={"policy": policy}).status_code == 200
    lines = ["name,phone"] + [f"Buyer {n},+8869{30_000_000 + n:08d}" for n in range(MESSAGES)]
    imported = api.post(
        "/api/v1/contacts/import",
        content="\n".join(lines).encode(),
        headers={"content-type": "text/csv"},
    )
    assert imported.status_code == 200 and imported.json()["created"] == MESSAGES
    contacts: list[dict[str, object]] = []
    cursor = None
    while True:
        page = api.get("/api/v1/contacts", params={"limit": 500, "cursor": cursor or ""}).json()
        contacts += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    for contact in contacts:
        answer = api.post(
            "/api/v1/messages",
            json={
                "contact_id": contact["id"],
                "purpose": "utility",
                "content": {
                    "type": "template",
                    "template": {"name": "order_shipped", "language": {"code": "en"}},
                },
            },
        )
        assert answer.status_code == 202, answer.text


def test_two_workers_share_one_numbers_throughput_and_send_each_message_once(
    tidings: Tidings, stack: Stack, clock: SharedVirtualClock, tmp_path: Path
) -> None:
    queue_messages(stack)
    workers = [WorkerProcess(tidings, clock, tmp_path / f"worker-{n}-data") for n in range(2)]
    for worker in workers:
        worker.env["TIDINGS_WORKER_BATCH_SIZE"] = "500"
        worker.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            sent = [e for e in stack.ledger() if e["outcome"] == "accepted"]
            if len(sent) >= MESSAGES:
                break
            for worker in workers:
                assert worker.process is not None and worker.process.poll() is None, worker.stderr()
            assert time.monotonic() < deadline, f"{len(sent)} of {MESSAGES} sent"
            clock.advance(timedelta(milliseconds=200))
            time.sleep(0.2)
        time.sleep(1.0)  # anything doubled would arrive now
    finally:
        for worker in workers:
            worker.stop()
    ledger = stack.ledger()
    accepted = [e for e in ledger if e["outcome"] == "accepted"]
    rate_limited = [e for e in ledger if e.get("error_code") == 130429]
    per_recipient = Counter(e["to"] for e in accepted)
    assert len(per_recipient) == MESSAGES and set(per_recipient.values()) == {1}
    per_second = Counter(e["second"] for e in ledger if e["outcome"] != "read_receipt")
    assert max(per_second.values()) <= LIMIT, sorted(per_second.items())
    assert rate_limited == []
    # SIGTERM ends each cleanly, after its batch in flight.
    assert all(w.process is not None and w.process.returncode == 0 for w in workers)
