"""Seed a realistic demo workspace: contacts from Hong Kong, Taiwan and Thailand, with tags,
lists, custom fields, consent and a month of events. Deterministic (fixed random seed), so
screenshots and walkthroughs look the same on every machine."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from tidings.automation.defaults import install_defaults
from tidings.channels import service as channels
from tidings.contacts import service as contacts
from tidings.contacts.domain import Channel, ConsentPurpose, ConsentStatus, CustomFieldType
from tidings.kernel.sealing import SecretBox
from tidings.simulator.server import SimulatorConfig
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role
from tidings.workspaces.orm import Workspace

DEMO_SLUG = "demo"
DEMO_OWNER_EMAIL = "owner@demo-shop.example"
DEMO_PASSWORD = "tidings-demo"  # noqa: S105 - a documented demo login, refused outside demo mode

PEOPLE = [
    ("陳大文", "大文", "+85291234567", "zh-Hant-HK", "Asia/Hong_Kong"),
    ("李美玲", "美玲", "+85262345678", "zh-Hant-HK", "Asia/Hong_Kong"),
    ("黃志強", "志強", "+85251234987", "zh-Hant-HK", "Asia/Hong_Kong"),
    ("Chan Siu Ming", "Siu Ming", "+85298765432", "en-HK", "Asia/Hong_Kong"),
    ("林怡君", "怡君", "+886912345678", "zh-Hant-TW", "Asia/Taipei"),
    ("張家豪", "家豪", "+886922333444", "zh-Hant-TW", "Asia/Taipei"),
    ("王淑芬", "淑芬", "+886933456789", "zh-Hant-TW", "Asia/Taipei"),
    ("吳承恩", "承恩", "+886955111222", "zh-Hant-TW", "Asia/Taipei"),
    ("Lin Wei-Ting", "Wei-Ting", "+886987654321", "en", "Asia/Taipei"),
    ("สมชาย ใจดี", "สมชาย", "+66812345678", "th-TH", "Asia/Bangkok"),
    ("สุดารัตน์ แก้วมณี", "สุดารัตน์", "+66898765432", "th-TH", "Asia/Bangkok"),
    ("วิชัย ศรีสุข", "วิชัย", "+66861234567", "th-TH", "Asia/Bangkok"),
    ("นภา ทองดี", "นภา", "+66851112222", "th-TH", "Asia/Bangkok"),
    ("Ploy Srisawat", "Ploy", "+66823334444", "en", "Asia/Bangkok"),
    ("Emily Wong", "Emily", "+85269871234", "en-HK", "Asia/Hong_Kong"),
    ("David Tsai", "David", "+886911222333", "en", "Asia/Taipei"),
]
TAGS = ["vip", "price-sensitive", "new-customer", "wholesale", "returning", "ad-lead"]
LEVELS = ["new customer", "silver", "gold", "platinum"]
PRODUCTS = [
    ("APL-IP15PM", "iPhone 15 Pro Max", 38900),
    ("SMS-GS24U", "Galaxy S24 Ultra", 36900),
    ("APL-APP2", "AirPods Pro 2", 7490),
    ("XMI-RN13", "Redmi Note 13", 6990),
]


def find_demo_workspace(session: Session) -> Workspace | None:
    return workspaces.find_workspace(session, DEMO_SLUG)


def seed_demo(session: Session, *, now: datetime) -> tuple[Workspace, str]:
    """Create the demo workspace with its data; returns it and an admin API key (shown once).

    Precondition: no workspace with the demo slug exists. Runs in the caller's transaction.
    """
    rng = random.Random(20261122)
    workspace = workspaces.create_workspace(
        session,
        slug=DEMO_SLUG,
        settings=workspaces.WorkspaceSettings(
            "Demo Shop 示範商店", "HK", "Asia/Hong_Kong", "zh-Hant-HK"
        ),
        now=now,
    )
    owner = workspaces.create_user(
        session,
        workspace=workspace,
        email=DEMO_OWNER_EMAIL,
        name="Demo Owner",
        role=Role.OWNER,
        password=DEMO_PASSWORD,
        granted_by=Role.OWNER,
        now=now,
    )
    for email, name in (
        ("mei@demo-shop.example", "Mei (agent)"),
        ("somchai@demo-shop.example", "Somchai (agent)"),
    ):
        workspaces.create_user(
            session,
            workspace=workspace,
            email=email,
            name=name,
            role=Role.AGENT,
            password=DEMO_PASSWORD,
            granted_by=Role.OWNER,
            now=now,
        )
    _, key = workspaces.create_api_key(
        session,
        workspace=workspace,
        name="demo",
        role=Role.ADMIN,
        granted_by=Role.OWNER,
        created_by_user_id=owner.id,
        now=now,
    )
    contacts.create_field_definition(
        session,
        workspace=workspace,
        key="customer_level",
        label="Customer level",
        field_type=CustomFieldType.CHOICE,
        choices=LEVELS,
        now=now,
    )
    contacts.create_field_definition(
        session,
        workspace=workspace,
        key="total_spent",
        label="Total spent (HKD)",
        field_type=CustomFieldType.NUMBER,
        choices=None,
        now=now,
    )
    contacts.create_field_definition(
        session,
        workspace=workspace,
        key="birthday",
        label="Birthday",
        field_type=CustomFieldType.DATE,
        choices=None,
        now=now,
    )
    newsletter = contacts.create_list(
        session, workspace=workspace, name="Newsletter", description="Monthly news", now=now
    )
    vip_club = contacts.create_list(
        session, workspace=workspace, name="VIP club", description="Top customers", now=now
    )
    for index, (name, first, phone, locale, zone) in enumerate(PEOPLE):
        _seed_person(
            session,
            workspace,
            rng,
            index,
            (name, first, phone, locale, zone),
            list_ids=(newsletter.id, vip_club.id),
            now=now,
        )
    install_defaults(session, workspace, now=now)
    return workspace, key


def _seed_person(
    session: Session,
    workspace: Workspace,
    rng: random.Random,
    index: int,
    person: tuple[str, str, str, str, str],
    *,
    list_ids: tuple[int, int],
    now: datetime,
) -> None:
    name, first, phone, locale, zone = person
    created = now - timedelta(days=rng.randint(5, 120), minutes=rng.randint(0, 1440))
    contact = contacts.create_contact(
        session,
        workspace=workspace,
        data={
            "name": name,
            "first_name": first,
            "phone": phone,
            "locale": locale,
            "timezone": zone,
            "email": f"customer{index + 1}@example-shop.hk" if index % 3 else None,
            "lifecycle_stage": rng.choice(["lead", "customer", "customer", "opportunity"]),
            "score": rng.randint(0, 90),
            "lead_source": rng.choice(["whatsapp", "ad_referral", "qr_campaign"]),
            "custom_fields": {
                "customer_level": rng.choice(LEVELS),
                "total_spent": rng.randint(0, 60000),
            },
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "list_ids": [list_ids[0]] + ([list_ids[1]] if index % 4 == 0 else []),
        },
        source="demo",
        now=created,
    )
    contacts.set_consent(
        session,
        workspace=workspace,
        contact=contact,
        channel=Channel.WHATSAPP,
        purpose=ConsentPurpose.MARKETING,
        status=ConsentStatus.OPTED_IN if index % 5 else ConsentStatus.OPTED_OUT,
        source="form",
        now=created,
    )
    for _ in range(rng.randint(1, 6)):
        sku, product, price = rng.choice(PRODUCTS)
        kind = rng.choice(["product.viewed", "product.viewed", "link.clicked", "order.placed"])
        properties: dict[str, object] = {"sku": sku, "product": product}
        if kind == "order.placed":
            properties |= {
                "amount": price,
                "currency": "HKD",
                "payment_method": rng.choice(["card", "fps", "cod"]),
            }
        contacts.record_event(
            session,
            workspace=workspace,
            contact=contact,
            event_type=kind,
            occurred_at=now - timedelta(days=rng.randint(0, 30), minutes=rng.randint(0, 1440)),
            properties=properties,
            source="demo",
            idempotency_key=None,
            now=now,
        )


DEMO_NUMBER_NAME = "Demo shop (simulator)"


def connect_demo_number(
    session: Session,
    *,
    workspace: Workspace,
    box: SecretBox,
    simulator: SimulatorConfig,
    simulator_url: str,
    now: datetime,
) -> str:
    """The webhook path of the demo workspace's WhatsApp number, pointed at the local
    simulator (created once, re-pointed at each start since the simulator's port changes)."""
    for number in channels.list_numbers(session, workspace):
        if number.phone_number_id == simulator.phone_number_id:
            updated = channels.update_number(
                session,
                workspace=workspace,
                number_id=number.id,
                data={"api_base_url": simulator_url, "is_active": True},
                box=box,
                now=now,
            )
            return channels.webhook_path(updated)
    created = channels.add_number(
        session,
        workspace=workspace,
        data={
            "name": DEMO_NUMBER_NAME,
            "phone_number_id": simulator.phone_number_id,
            "business_account_id": simulator.business_account_id,
            "display_phone_number": "+" + simulator.display_phone_number,
            "api_base_url": simulator_url,
            "access_token": simulator.access_token,
            "app_secret": simulator.app_secret,
            "verify_token": "demo-verify-token",
        },
        box=box,
        now=now,
    )
    return channels.webhook_path(created)
