"""Rule evaluation (#6, A1/A2): customers' messages per second through the rules engine with
100 active rules — keyword groups in Thai, Chinese and English, intents, sentiment and
activity scoring, conditions on the contact's history, tag and field actions — side by side
with the same work done one message per transaction.

    python -m bench.rule_throughput [--messages 20000] [--baseline 1000] [--database-url …]

The messages are stored on the timeline as the WhatsApp intake stores them; the engine reads
them in batches from its feed position, as the worker does.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from bench.common import fresh_installation, machine
from tidings.automation import service as automation
from tidings.automation.engine import RulesEngine
from tidings.bootstrap import Tidings, tune_garbage_collector
from tidings.contacts.orm import Contact, ContactEvent
from tidings.db.base import table_of
from tidings.workspaces import service as workspaces

TEXTS = (
    "มีส่วนลดไหมคะ",
    "ราคาเท่าไหร่คะ",
    "พัสดุอยู่ไหนคะ",
    "ร้านอยู่ที่ไหนคะ",
    "ขอบคุณค่ะ",
    "แพงเกินไปค่ะ",
    "สวัสดีค่ะ สนใจสินค้าตัวนี้",
    "有折扣吗？",
    "这个多少钱",
    "我的包裹在哪",
    "太贵了",
    "谢谢你",
    "Any discount today?",
    "how much is the blue one",
    "where is my parcel",
    "too expensive for me",
    "thanks, love it",
    "hello, is this in stock?",
)
GROUPS = {
    "discount": ["ส่วนลด", "折扣", "discount", "โปรโมชั่น"],
    "too expensive": ["แพงเกินไป", "太贵", "too expensive"],
    "stock": ["มีของไหม", "有货", "in stock"],
    "thanks": ["ขอบคุณ", "谢谢", "thanks"],
}


def rules(count: int) -> list[dict[str, object]]:
    """``count`` rules in the proportions a shop ends up with: 40% on keywords (count
    conditions over the contact's history), 30% on intents (conditions on fields), 15% on tags
    that other rules add (chains), 15% on every message with a narrow condition (a tag few
    have) — so every message is judged by dozens of rules and a few fire."""
    made: list[dict[str, object]] = []
    groups = list(GROUPS)
    intents = ["price", "order_status", "store_location", "complaint"]
    for n in range(count):
        share = n % 20
        if share < 8:
            group = groups[n % len(groups)]
            definition: dict[str, object] = {
                "trigger": {"on": "keyword", "keyword": group},
                "condition": {"keyword": group, "at_least": 2 + n % 3, "within": "30d"},
                "actions": [{"do": "add_tag", "tag": f"{group}-{n % 5}"}],
                "guard": {"times": 1, "per": "1d"},
            }
        elif share < 14:
            definition = {
                "trigger": {"on": "intent", "intent": intents[n % len(intents)]},
                "condition": {"field": "activity_score", "op": "gte", "value": n % 60},
                "actions": [{"do": "add_score", "by": 1}],
                "guard": {"times": 2, "per": "1h"},
            }
        elif share < 17:
            group = groups[n % len(groups)]
            definition = {
                "trigger": {"on": "tag_added", "tag": f"{group}-{n % 5}"},
                "condition": {"not": {"has_tag": "vip"}},
                "actions": [{"do": "set_field", "field": "lead_source", "value": group}],
            }
        else:
            definition = {
                "trigger": {"on": "message_received"},
                "condition": {
                    "all": [{"has_tag": "vip"}, {"field": "score", "op": "lt", "value": 1000}]
                },
                "actions": [{"do": "add_score", "by": 5}],
                "guard": {"times": 1, "per": "1h"},
            }
        made.append({"name": f"rule {n}", "definition": definition})
    return made


def prepare(inst: Tidings, messages: int, contacts: int, slug: str) -> int:
    now = inst.clock.now()
    with inst.db.transaction() as session:
        workspace = workspaces.create_workspace(
            session,
            slug=slug,
            settings=workspaces.WorkspaceSettings("Bench", "TH", "Asia/Bangkok", "th-TH"),
            now=now,
        )
        for name, terms in GROUPS.items():
            automation.save_keyword_group(
                session, workspace=workspace, name=name, terms=terms, now=now
            )
        for rule in rules(100):
            automation.save_rule(session, workspace=workspace, data=rule, now=now)
        workspace_id = workspace.id
    with inst.db.transaction() as session:
        RulesEngine().run_batch(session, now=now, limit=1)  # the feed starts here
    rng = random.Random(7)
    table = table_of(Contact)
    with inst.db.transaction() as session:
        ids = session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True),
            [
                {
                    "workspace_id": workspace_id,
                    "name": f"Customer {n}",
                    "lifecycle_stage": "lead",
                    "score": 0,
                    "custom_fields": {},
                    "do_not_contact": False,
                    "activity_score": 0,
                    "churn_risk": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(contacts)
            ],
        ).all()
        session.execute(
            insert(table_of(ContactEvent)),
            [
                {
                    "workspace_id": workspace_id,
                    "contact_id": ids[rng.randrange(len(ids))],
                    "event_type": "message.received",
                    "occurred_at": now,
                    "received_at": now,
                    "source": "whatsapp",
                    "properties": {"text": rng.choice(TEXTS), "type": "text", "wamid": f"w{n}"},
                    "depth": 0,
                }
                for n in range(messages)
            ],
        )
    return workspace_id


def drain(inst: Tidings, batch: int) -> float:
    engine = RulesEngine()
    started = time.perf_counter()
    while True:
        with inst.db.transaction() as session:
            if engine.run_batch(session, now=inst.clock.now(), limit=batch) == 0:
                break
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--database-url", default=os.environ.get("TIDINGS_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    tune_garbage_collector()
    console = Console()
    inst = fresh_installation(args.database_url)
    rows = []
    for label, count, batch in (
        ("batches of 500", args.messages, 500),
        ("one message per transaction", args.baseline, 1),
    ):
        prepare(inst, count, max(100, count // 10), slug=f"rules-{batch}")
        seconds = drain(inst, batch)
        rows.append((label, count, seconds))
    table = Table(title="Rules engine: 100 rules, keywords and intents in th/zh/en")
    table.add_column("way")
    table.add_column("messages", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("messages/s", justify="right")
    for label, count, seconds in rows:
        table.add_row(label, f"{count:,}", f"{seconds:.1f}", f"{count / seconds:,.0f}")
    console.print(table)
    fast, slow = rows[0][1] / rows[0][2], rows[1][1] / rows[1][2]
    console.print(f"× {fast / slow:.1f} · {inst.db.engine.dialect.name} · {machine()}")
    inst.close()


if __name__ == "__main__":
    main()
