"""What every new workspace starts with (A2, A3, A5): the seed documents' keyword groups,
segments and rules, in the workspace's language; replies carry their Thai, Chinese and English
texts, so that each customer is answered in theirs. Rules that send offers start switched off:
their codes are the shop's to choose. Rules that only answer questions or tell the team start
switched on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tidings.automation import service
from tidings.automation.answers import language_of
from tidings.workspaces.orm import Workspace

KEYWORDS = {
    "discount": ["ส่วนลด", "โปรโมชั่น", "ลดราคา", "折扣", "優惠", "优惠", "discount", "promo code"],
    "too expensive": ["แพงเกินไป", "แพงไป", "太贵", "太貴", "too expensive", "too pricey"],
}

SEGMENTS: list[dict[str, Any]] = [
    {
        "name": "High intent",
        "description": "More than 3 price or product questions within 7 days.",
        "condition": {"intent": "price", "at_least": 4, "within": "7d"},
    },
    {
        "name": "Potential",
        "description": "1-2 messages from the customer within 30 days.",
        "condition": {"event": "message.received", "at_least": 1, "at_most": 2, "within": "30d"},
    },
    {
        "name": "Lost",
        "description": "No message from the customer for more than 60 days.",
        "condition": {"last_inbound": {"older_than": "60d"}},
    },
]

TEXTS = {
    "code": {
        "th": "คุณ{{ contact.first_name | fallback('ลูกค้า') }} รับส่วนลด 10% ด้วยโค้ด WELCOME10 ได้เลยค่ะ",
        "zh-Hant": "{{ contact.first_name | fallback('您好') }}，輸入優惠碼 WELCOME10 即享 9 折！",
        "zh-Hans": "{{ contact.first_name | fallback('您好') }}，输入优惠码 WELCOME10 即享 9 折！",
        "en": "{{ contact.first_name | fallback('Hi') }}, here is 10% off: use code WELCOME10.",
    },
    "instalment": {
        "th": "สินค้านี้ผ่อน 0% ได้สูงสุด 10 เดือนค่ะ สนใจให้แอดมินช่วยคำนวณไหมคะ",
        "zh-Hant": "本商品可 0 利率分期，最長 10 期。需要幫您試算嗎？",
        "zh-Hans": "本商品可 0 利率分期，最长 10 期。需要帮您试算吗？",
        "en": "You can pay in up to 10 interest-free instalments. Shall we work it out for you?",
    },
    "follow_up": {
        "th": "ลูกค้ากลุ่มมีแนวโน้ม: ทักไปติดตามภายในสัปดาห์นี้",
        "zh-Hant": "潛在客戶：本週內跟進",
        "zh-Hans": "潜在客户：本周内跟进",
        "en": "Potential customer: follow up this week",
    },
    "rescue": {
        "th": "คุณ{{ contact.first_name | fallback('ลูกค้า') }} ขอโทษที่ทำให้ไม่ประทับใจค่ะ "
        "รับส่วนลด 20% ด้วยโค้ด SORRY20 นะคะ",
        "zh-Hant": "很抱歉讓您失望了，送上 8 折優惠碼 SORRY20，希望再為您服務。",
        "zh-Hans": "很抱歉让您失望了，送上 8 折优惠码 SORRY20，希望再为您服务。",
        "en": "We are sorry we let you down. Here is 20% off with code SORRY20.",
    },
    "handoff": {
        "th": "ลูกค้าขอคุยกับพนักงาน",
        "zh-Hant": "客戶要求真人客服",
        "zh-Hans": "客户要求人工客服",
        "en": "The customer asked for a person",
    },
}


def _rules(language: str) -> list[dict[str, Any]]:
    def text(key: str) -> str:
        return TEXTS[key][language]

    def reply(key: str, **more: Any) -> dict[str, Any]:
        # Customers are answered in their own language (Thai, Chinese, English); the
        # workspace's is the text for any other.
        return {"do": "reply", "text": text(key), "translations": dict(TEXTS[key]), **more}

    return [
        {
            "name": "Price-sensitive",
            "enabled": False,
            "definition": {
                "trigger": {"on": "keyword", "keyword": "discount"},
                "condition": {"keyword": "discount", "at_least": 4, "within": "30d"},
                "actions": [
                    {"do": "add_tag", "tag": "price-sensitive"},
                    reply("code", offer="WELCOME10"),
                ],
                "guard": {"times": 1, "per": "30d"},
            },
        },
        {
            "name": "Instalment plan",
            "enabled": False,
            "definition": {
                "trigger": {"on": "keyword", "keyword": "too expensive"},
                "condition": {"keyword": "too expensive", "in_a_row": 2},
                "actions": [reply("instalment")],
                "guard": {"times": 1, "per": "1d"},
            },
        },
        {
            "name": "High intent: 10% code",
            "enabled": False,
            "definition": {
                "trigger": {"on": "segment_entered", "segment": "High intent"},
                "actions": [reply("code", offer="WELCOME10")],
                "guard": {"times": 1, "per": "30d"},
            },
        },
        {
            "name": "Potential: weekly follow-up",
            "enabled": True,
            "definition": {
                "trigger": {"on": "schedule", "every": "1w", "weekday": "mon", "at": "09:00"},
                "condition": {"in_segment": "Potential"},
                "actions": [{"do": "notify", "message": text("follow_up"), "due_in": "1d"}],
                "guard": {"times": 1, "per": "6d"},
            },
        },
        {
            "name": "Lost: low priority",
            "enabled": True,
            "definition": {
                "trigger": {"on": "segment_entered", "segment": "Lost"},
                "actions": [{"do": "join_list", "list": "Low priority"}],
            },
        },
        {
            "name": "Where is my parcel",
            "enabled": True,
            "definition": {
                "trigger": {"on": "intent", "intent": "order_status"},
                "actions": [{"do": "answer_order_status"}],
                "guard": {"times": 3, "per": "1h"},
            },
        },
        {
            "name": "Store questions",
            "enabled": True,
            "definition": {
                "trigger": {"on": "intent", "intent": "store_location"},
                "actions": [{"do": "answer_nearest_store"}],
                "guard": {"times": 3, "per": "1h"},
            },
        },
        {
            "name": "Shared location",
            "enabled": True,
            "definition": {
                "trigger": {
                    "on": "event",
                    "event": "message.received",
                    "where": {"type": "location"},
                },
                "actions": [{"do": "answer_nearest_store"}],
            },
        },
        {
            "name": "Churn risk: rescue offer",
            "enabled": False,
            "definition": {
                "trigger": {"on": "event", "event": "churn.risk_raised"},
                "actions": [
                    {"do": "add_tag", "tag": "churn-risk"},
                    reply("rescue", offer="SORRY20"),
                ],
                "guard": {"times": 1, "per": "30d"},
            },
        },
        {
            "name": "Asked for a person",
            "enabled": True,
            "definition": {
                "trigger": {"on": "intent", "intent": "human_handoff"},
                "actions": [{"do": "notify", "message": text("handoff")}],
            },
        },
    ]


def install_defaults(session: Session, workspace: Workspace, *, now: datetime) -> None:
    """Create the defaults a workspace does not have yet (by name): safe to run again."""
    language = language_of(workspace.locale)
    known_groups = {g.name for g in service.list_keyword_groups(session, workspace)}
    for name, terms in KEYWORDS.items():
        if name not in known_groups:
            service.save_keyword_group(
                session, workspace=workspace, name=name, terms=terms, now=now
            )
    known_segments = {s.name for s in service.list_segments(session, workspace)}
    for segment in SEGMENTS:
        if segment["name"] not in known_segments:
            service.save_segment(session, workspace=workspace, data=segment, now=now)
    known_rules = {r.name for r in service.list_rules(session, workspace)}
    for rule in _rules(language):
        if rule["name"] not in known_rules:
            service.save_rule(session, workspace=workspace, data=rule, now=now)
