"""Roles, workspace settings and the sending-policy figures, as pure values.

The policy defaults are the figures of the requirements (IDs in each field's description);
each workspace may override any of them, and the override is validated here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tidings.kernel.errors import forbidden, invalid


class Role(enum.StrEnum):
    """What a user or API key may do; each role includes the ones below it."""

    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"

    @property
    def rank(self) -> int:
        return {Role.OWNER: 3, Role.ADMIN: 2, Role.AGENT: 1}[self]

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


def check_role(actual: Role, required: Role, *, action: str) -> None:
    """Raise unless ``actual`` may do what needs ``required``.

    Raises:
        TidingsError: 403 naming the action and the role it needs.
    """
    if not actual.includes(required):
        raise forbidden(f"{action} needs the {required.value} role; you are {actual.value}")


def check_can_grant(granter: Role, granted: Role) -> None:
    """Nobody hands out more power than they hold.

    Raises:
        TidingsError: 403 when ``granted`` outranks ``granter``.
    """
    if not granter.includes(granted):
        raise forbidden(f"a {granter.value} cannot grant the {granted.value} role")


class WorkspacePolicy(BaseModel):
    """Sending and automation policy; every figure is a default a workspace may change."""

    # No infinities or NaN: a figure must be a number that JSON can store and read back.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    service_window_hours: int = Field(24, ge=1, le=168, description="P1 free-form window")
    non_opted_in_templates_per_day: int = Field(1, ge=0, description="P2")
    same_content_per_month: int = Field(5, ge=1, description="P3")
    promotional_per_week: int = Field(1, ge=0, description="P4")
    promotional_slot_weekday: int = Field(2, ge=0, le=6, description="P4, Monday=0; Wednesday")
    promotional_slot_time: time = Field(time(14, 0), description="P4 local send slot")
    service_same_event_gap_hours: float = Field(6, ge=0, le=720, description="P4")
    quiet_hours_start: time = Field(
        time(21, 0), description="no automated marketing or utility messages from (local time)"
    )
    quiet_hours_end: time = Field(time(9, 0), description="… until (local); equal = none")
    opt_out_keywords: tuple[str, ...] = Field(
        (
            "STOP",
            "UNSUBSCRIBE",
            "ยกเลิก",
            "ยกเลิกรับข่าวสาร",
            "退訂",
            "取消訂閱",
            "退訂閱",
            "退订",
            "取消订阅",
            "退订阅",
        ),
        description="P5: English, Thai, Traditional and Simplified Chinese",
    )
    opt_in_keywords: tuple[str, ...] = Field(
        ("START", "SUBSCRIBE", "เริ่ม", "訂閱", "订阅"), description="P5: opting back in"
    )
    daily_quota_per_number: int = Field(1000, ge=1, description="P6")
    messaging_tier_limit: int | None = Field(
        250, ge=1, description="P6 unique contacts outside the window per 24 h; None = unlimited"
    )
    warmup_first_day_quota: int | None = Field(
        250, ge=1, description="P6 warm-up: a new number's first-day quota, doubling daily"
    )
    throughput_per_number_per_second: float = Field(
        80, gt=0, description="P6, unless the number has its own tier"
    )
    pacing_headroom: float = Field(
        0.1, ge=0, le=0.5, description="P6: send this share below a number's throughput"
    )
    same_user_min_interval_seconds: float = Field(6, ge=0, description="P6")
    batch_mode_threshold: float = Field(0.8, gt=0, le=1, description="P6")
    interactions_per_recipient: int = Field(3, ge=1, description="P6 load estimate")
    price_currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="P9")
    message_prices: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            # Meta's 2025 per-message rates for "Rest of Asia Pacific" (HK, TW, TH … are
            # billed there), USD per delivered template; set your own card per country.
            "*": {"marketing": 0.0732, "utility": 0.0113, "authentication": 0.0113},
        },
        description="P9 price per delivered template: country (ISO, or * for the rest) → "
        "category (marketing, utility, authentication) → price",
    )
    human_reply_pause_hours: float = Field(12, ge=0, description="I3")
    reply_assigns_agent: bool = Field(
        True,
        description="an agent's reply to a conversation nobody is assigned to assigns it to "
        "them, so two agents do not answer the same customer",
    )
    auto_answer_max_age_minutes: float = Field(
        60,
        gt=0,
        description="A2: messages older than this (a backlog after downtime) get no automatic "
        "answer; an agent answers them",
    )
    message_retries: int = Field(
        2, ge=0, le=10, description="X3: resends of a message whose fate is uncertain"
    )
    message_validity_hours: float = Field(
        24, gt=0, le=720, description="X3: transient failures are retried this long"
    )
    sync_retries: int = Field(3, ge=0, le=10, description="X3")
    sync_retry_interval_minutes: int = Field(5, ge=1, description="X3")
    retention_days: int = Field(180, ge=180, description="C6: at least 180 days")
    image_compress_over_bytes: int = Field(5 * 1024 * 1024, ge=1, description="I5")
    duplicate_name_ratio: float = Field(80, ge=0, le=100, description="C3")
    duplicate_evidence_days: int = Field(90, ge=1, description="C3")
    slow_response_seconds: int = Field(360, ge=1, description="R1: flag agents above 6 min")
    email_tracking: bool = Field(True, description="e-mail open pixel and click-redirect links")
    agents_may_export_contacts: bool = Field(
        False, description="agents may download every contact as CSV (admins always may)"
    )
    email_machine_seconds: float = Field(
        10, ge=0, le=3600, description="opens and clicks this soon after sending count as machine"
    )

    @field_validator("message_prices")
    @classmethod
    def _prices_make_sense(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if "*" not in value:
            raise ValueError("give a '*' row: the price for countries not listed (P9)")
        for country, row in value.items():
            if country != "*" and not (len(country) == 2 and country.isalpha()):
                raise ValueError(f"{country!r} is not a two-letter country code")
            for category, price in row.items():
                if category not in ("marketing", "utility", "authentication", "service"):
                    raise ValueError(f"{category!r} is not a template category")
                if price < 0:
                    raise ValueError("prices are not negative")
        return {c.upper() if c != "*" else c: dict(row) for c, row in value.items()}

    @field_validator("opt_out_keywords")
    @classmethod
    def _keywords_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(k.strip() for k in value if k.strip())
        if not cleaned:
            raise ValueError("at least one opt-out keyword is required (P5)")
        return cleaned


SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def check_slug(slug: str) -> str:
    """Return ``slug`` if it is a valid workspace slug.

    Raises:
        TidingsError: 422 on ``slug``.
    """
    if not SLUG_PATTERN.match(slug):
        raise invalid(
            "invalid_slug", "use 1-64 lowercase letters, digits and inner hyphens", field="slug"
        )
    return slug


class Principal(BaseModel):
    """Who is calling: a user or an API key, always inside exactly one workspace."""

    model_config = ConfigDict(frozen=True)

    workspace_id: int
    role: Role
    user_id: int | None = None
    api_key_id: int | None = None
    label: str

    def require(self, role: Role, *, action: str) -> None:
        """Raises ``TidingsError`` (403) unless this principal holds ``role``."""
        check_role(self.role, role, action=action)


def usable_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The stored overrides that still make a valid policy, and the names of those that do
    not (written by an older version, or by hand): each is judged on its own, so one bad
    figure falls back to its default instead of making the whole policy unreadable."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in overrides.items():
        try:
            WorkspacePolicy(**{name: value})
        except (ValidationError, TypeError):
            dropped.append(name)
        else:
            kept[name] = value
    return kept, dropped


# Sign-in throttling: an account may fail this many times, an address (which may be a whole
# office behind one router) more, before each further try must wait; the wait doubles with
# each failure up to a cap, and the count is forgotten an hour after the last failure.
ACCOUNT_FREE_FAILURES = 5
ADDRESS_FREE_FAILURES = 20
MAX_SIGN_IN_WAIT = timedelta(minutes=15)
SIGN_IN_MEMORY = timedelta(hours=1)


def sign_in_wait(failures: int, *, free: int) -> timedelta:
    """How long to refuse every try after ``failures`` failures in a row."""
    if failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - free, 20)), MAX_SIGN_IN_WAIT)
