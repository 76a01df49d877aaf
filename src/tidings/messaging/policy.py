"""The sending policy (P1–P5, I3, quiet hours): may this message go to this contact now?

``decide_send`` is pure: it takes what is asked, what is known of the contact, what was sent
to the contact before, the workspace policy and the time, and returns :class:`Send`,
:class:`Defer` (the earliest time every rule allows, P7) or :class:`Skip` (a rule forbids it
for good). Every reason starts with the requirement ID, so a person reading a trace knows
which rule held a message back.

It is called twice for each message: when it is queued (so the caller learns at once) and
again by the dispatcher right before sending, on the history as it is then — two messages
queued at the same moment must not both pass a weekly cap.

Caps count across channels: a promotional e-mail and a promotional WhatsApp message in the
same week are two. Consent is separate for marketing and for transactional messages.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import orjson

from tidings.messaging.domain import Origin, Purpose
from tidings.workspaces.domain import WorkspacePolicy

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)
MAX_ROUNDS = 16  # each rule can only push the time forward; this bounds a pathological policy


@dataclass(frozen=True)
class Send:
    reason: str = "allowed by every rule"


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Skip:
    reason: str


Decision = Send | Defer | Skip


@dataclass(frozen=True)
class Outgoing:
    """What is asked: one message to one contact."""

    channel: str  # "whatsapp", "email" …
    purpose: Purpose
    origin: Origin
    is_template: bool  # a pre-approved template may open a closed WhatsApp window (P1)
    content_digest: str
    notification_type: str | None = None  # service notifications of one type: P4 gap
    # The one confirmation of an opt-out is sent to a contact who has just opted out (P5).
    confirms_opt_out: bool = False

    @property
    def automated(self) -> bool:
        """Sent by the machine rather than typed by an agent: I3 and quiet hours apply."""
        return self.origin != Origin.AGENT


@dataclass(frozen=True)
class Recipient:
    """What is known of the contact when deciding."""

    do_not_contact: bool = False
    # (channel, consent purpose) → "opted_in" | "opted_out"; absent means never asked.
    consents: Mapping[tuple[str, str], str] = field(default_factory=dict)
    timezone: str = "UTC"
    last_inbound_at: datetime | None = None  # on this channel: opens the P1 window
    automation_paused_until: datetime | None = None  # I3


@dataclass(frozen=True)
class PastSend:
    """A message that went (or may have gone) to the contact, on any channel."""

    at: datetime
    channel: str
    purpose: Purpose
    is_template: bool
    content_digest: str | None
    notification_type: str | None = None


def content_digest(content: Mapping[str, object]) -> str:
    """What makes two messages "the same content" (P3): the content without the quoted reply,
    in canonical form. Personalised parameters are part of it; the recipient is not."""
    canonical = {k: v for k, v in content.items() if k != "context"}
    encoded = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


# Punctuation a customer may add around the word: "Stop!", "ยกเลิก ค่ะ" is not matched (a
# sentence is not a command), but "退訂。" and " STOP. " are.
_AROUND = " \t\r\n.,!?;:'\"()[]…。，！？；：「」『』（）"


def is_keyword(text: str | None, keywords: Sequence[str]) -> bool:
    """Whether a customer's whole message is one of ``keywords`` (opt-out or opt-in, P5), in
    any case and width (NFKC: "ＳＴＯＰ" is "STOP")."""
    if not text:
        return False
    said = unicodedata.normalize("NFKC", text).strip(_AROUND).casefold()
    return any(said == unicodedata.normalize("NFKC", k).strip().casefold() for k in keywords)


OPT_OUT_CONFIRMATIONS = {
    "th": "คุณได้ยกเลิกการรับข้อความจากเราทาง WhatsApp แล้ว",
    "zh": "您已取消訂閱，我們不會再透過 WhatsApp 傳送訊息給您。",
    "en": "You have unsubscribed: we will not message you on WhatsApp any more.",
}


OPT_IN_CONFIRMATIONS = {
    "th": "คุณได้สมัครรับข้อความจากเราทาง WhatsApp อีกครั้งแล้ว ส่ง ยกเลิก เพื่อหยุดรับ",
    "zh": "您已重新訂閱，我們會透過 WhatsApp 與您聯絡。回覆「退訂」即可取消。",
    "en": "You are subscribed again on WhatsApp. Reply STOP to unsubscribe.",
}


def _in_language(texts: Mapping[str, str], locale: str | None) -> str:
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return texts.get(language, texts["en"])


def opt_out_confirmation(locale: str | None) -> str:
    """The one confirmation an opted-out contact receives, in their language (or English)."""
    return _in_language(OPT_OUT_CONFIRMATIONS, locale)


def opt_in_confirmation(locale: str | None) -> str:
    """The confirmation a contact who opts back in receives, in their language."""
    return _in_language(OPT_IN_CONFIRMATIONS, locale)


def consent_purpose(purpose: Purpose) -> str:
    return "marketing" if purpose == Purpose.MARKETING else "transactional"


def history_horizon(policy: WorkspacePolicy) -> timedelta:
    """How far back ``decide_send`` looks: the longest period of any cap."""
    return max(MONTH, WEEK, DAY, timedelta(hours=policy.service_same_event_gap_hours))


def decide_send(
    request: Outgoing,
    recipient: Recipient,
    history: Sequence[PastSend],
    policy: WorkspacePolicy,
    now: datetime,
) -> Decision:
    """Send, defer to the earliest allowed time, or skip with the rule's reason (P7)."""
    skip = _forbidden(request, recipient, policy, now)
    if skip is not None:
        return skip
    at, reasons = now, []
    case = Case(request, recipient, history, policy)
    for _ in range(MAX_ROUNDS):
        moved = False
        for rule in _TIMING_RULES:
            outcome = rule(case, at)
            if isinstance(outcome, Skip):
                return outcome
            if outcome is not None and outcome[0] > at:
                at, moved = outcome[0], True
                if outcome[1] not in reasons:
                    reasons.append(outcome[1])
        if not moved:
            break
    else:
        return Skip("P7: no time satisfies every rule of this workspace's policy")
    if at == now:
        return Send()
    if _needs_window(request, policy):
        closes = _window_closes(recipient, policy)
        if closes is None or at >= closes:
            return Skip(
                "P1: the 24-hour window closes before "
                + "; ".join(reasons)
                + " would let this free-form message go"
            )
    return Defer(at, "; ".join(reasons))


def _forbidden(
    request: Outgoing, recipient: Recipient, policy: WorkspacePolicy, now: datetime
) -> Skip | None:
    if request.confirms_opt_out:
        return None
    if recipient.do_not_contact:
        return Skip("P5: the contact is marked do-not-contact")
    wanted = consent_purpose(request.purpose)
    if recipient.consents.get((request.channel, wanted)) == "opted_out":
        return Skip(f"P5: the contact opted out of {wanted} messages on {request.channel}")
    if _needs_window(request, policy):
        closes = _window_closes(recipient, policy)
        if closes is None or now >= closes:
            return Skip("P1: the 24-hour window is closed and this is not an approved template")
    return None


def _needs_window(request: Outgoing, policy: WorkspacePolicy) -> bool:
    return request.channel == "whatsapp" and not request.is_template


def _window_closes(recipient: Recipient, policy: WorkspacePolicy) -> datetime | None:
    if recipient.last_inbound_at is None:
        return None
    return recipient.last_inbound_at + timedelta(hours=policy.service_window_hours)


# --- timing rules: each returns None (fine at ``at``), (later time, reason) or Skip -----------

TimingOutcome = tuple[datetime, str] | Skip | None


@dataclass(frozen=True)
class Case:
    """Everything a timing rule looks at, but the moment it is asked about."""

    request: Outgoing
    recipient: Recipient
    history: Sequence[PastSend]
    policy: WorkspacePolicy


def earliest_under_cap(
    times: Sequence[datetime], *, limit: int, period: timedelta, at: datetime
) -> datetime | None:
    """The earliest moment ≥ ``at`` when fewer than ``limit`` of ``times`` (all ≤ ``at``) lie in
    the trailing ``period``; None when ``limit`` is 0 (never)."""
    if limit <= 0:
        return None
    if len(times) < limit:
        return at
    recent = sorted(t for t in times if at - period < t <= at)
    if len(recent) < limit:
        return at
    return recent[len(recent) - limit] + period


def _cap(
    times: Sequence[datetime], limit: int, period: timedelta, at: datetime, reason: str
) -> TimingOutcome:
    allowed = earliest_under_cap(times, limit=limit, period=period, at=at)
    if allowed is None:
        return Skip(reason.split(";")[0] + "; the workspace allows none")
    return (allowed, reason) if allowed > at else None


def _automation_pause(case: Case, at: datetime) -> TimingOutcome:
    paused = case.recipient.automation_paused_until
    if (
        case.request.automated
        and not case.request.confirms_opt_out
        and paused is not None
        and at < paused
    ):
        return paused, "I3: automation waits after a human agent's reply"
    return None


def _non_opted_in_templates(case: Case, at: datetime) -> TimingOutcome:
    if (
        case.request.channel != "whatsapp"
        or not case.request.is_template
        or case.request.confirms_opt_out
    ):
        return None
    opted_in = any(
        status == "opted_in"
        for (channel, _), status in case.recipient.consents.items()
        if channel == case.request.channel
    )
    if opted_in:
        return None
    sent = [p.at for p in case.history if p.channel == case.request.channel and p.is_template]
    limit = case.policy.non_opted_in_templates_per_day
    return _cap(sent, limit, DAY, at, f"P2: at most {limit} template a day before opt-in")


def _same_content(case: Case, at: datetime) -> TimingOutcome:
    if not case.request.automated or case.request.confirms_opt_out:
        return None  # an agent typing "thank you" again is a conversation, not a campaign
    sent = [p.at for p in case.history if p.content_digest == case.request.content_digest]
    limit = case.policy.same_content_per_month
    return _cap(sent, limit, MONTH, at, f"P3: the same content at most {limit} times in 30 days")


def _promotional(case: Case, at: datetime) -> TimingOutcome:
    if case.request.purpose != Purpose.MARKETING:
        return None
    sent = [p.at for p in case.history if p.purpose == Purpose.MARKETING]
    limit = case.policy.promotional_per_week
    reason = f"P4: at most {limit} promotional message a week, across channels"
    outcome = _cap(sent, limit, WEEK, at, reason)
    if not isinstance(outcome, tuple):
        return outcome
    # A promotion held back by the cap goes out in the workspace's weekly slot.
    slot = next_weekly_slot(
        outcome[0],
        weekday=case.policy.promotional_slot_weekday,
        at_time=case.policy.promotional_slot_time,
        timezone=case.recipient.timezone,
    )
    return slot, reason + f"; next slot {_WEEKDAYS[case.policy.promotional_slot_weekday]} " + (
        f"{case.policy.promotional_slot_time:%H:%M} local time"
    )


def _same_notification(case: Case, at: datetime) -> TimingOutcome:
    kind = case.request.notification_type
    if kind is None or case.request.purpose == Purpose.MARKETING:
        return None
    gap = timedelta(hours=case.policy.service_same_event_gap_hours)
    if gap <= timedelta(0):
        return None
    sent = [p.at for p in case.history if p.notification_type == kind]
    hours = f"{case.policy.service_same_event_gap_hours:g}"
    return _cap(sent, 1, gap, at, f"P4: '{kind}' notifications at least {hours} h apart")


def _quiet_hours(case: Case, at: datetime) -> TimingOutcome:
    if not case.request.automated or case.request.confirms_opt_out:
        return None
    if case.request.purpose in (Purpose.SERVICE, Purpose.AUTHENTICATION):
        return None  # answers and one-time codes are awaited; they are not interruptions
    ends = quiet_hours_end(
        at,
        start=case.policy.quiet_hours_start,
        end=case.policy.quiet_hours_end,
        timezone=case.recipient.timezone,
    )
    if ends is None:
        return None
    return ends, (
        f"quiet hours {case.policy.quiet_hours_start:%H:%M}–{case.policy.quiet_hours_end:%H:%M} "
        "in the contact's time zone"
    )


_TIMING_RULES = (
    _automation_pause,
    _non_opted_in_templates,
    _same_content,
    _promotional,
    _same_notification,
    _quiet_hours,
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- local time ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):  # checked when stored; a stale name falls back to UTC
        return ZoneInfo("UTC")


@lru_cache(maxsize=4096)  # a mass send asks the same (time, zone) for thousands of contacts
def next_weekly_slot(at: datetime, *, weekday: int, at_time: time, timezone: str) -> datetime:
    """The first moment ≥ ``at`` that is ``weekday`` ``at_time`` in ``timezone`` (aware UTC)."""
    zone = zone_named(timezone)
    local = at.astimezone(zone)
    for offset in range(8):
        day = (local + timedelta(days=offset)).date()
        if day.weekday() != weekday:
            continue
        candidate = local_moment(day, at_time, zone)
        if candidate >= at:
            return candidate
    raise AssertionError("a weekday recurs within eight days")  # pragma: no cover


@lru_cache(maxsize=4096)
def quiet_hours_end(at: datetime, *, start: time, end: time, timezone: str) -> datetime | None:
    """When the quiet hours ``at`` falls in end (aware UTC), or None outside them.

    ``start`` after ``end`` spans midnight (21:00–09:00); equal times mean no quiet hours.
    """
    if start == end:
        return None
    zone = zone_named(timezone)
    local = at.astimezone(zone)
    now_time = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= now_time < end
        end_day = local.date()
    else:
        inside = now_time >= start or now_time < end
        end_day = local.date() + timedelta(days=1) if now_time >= start else local.date()
    if not inside:
        return None
    return max(local_moment(end_day, end, zone), at)


def local_moment(day: date, at_time: time, zone: ZoneInfo) -> datetime:
    # A wall time skipped by a DST jump resolves forwards (fold=0), never to an earlier instant.
    return datetime.combine(day, at_time, tzinfo=zone).astimezone(UTC)


# --- P6: what a number and a business portfolio may send ----------------------------------------


def daily_quota(policy: WorkspacePolicy, number_age: timedelta) -> int:
    """Messages a number may send in a rolling 24 h. A new number warms up: its first day's
    quota doubles every day until it reaches the workspace's daily quota."""
    full = policy.daily_quota_per_number
    first = policy.warmup_first_day_quota
    if first is None or first >= full:
        return full
    days = max(0, number_age // DAY)
    return full if days >= 31 else min(full, first * 2**days)


def capacity_frees_at(oldest_in_window: Sequence[datetime], *, used: int, limit: int) -> datetime:
    """When a rolling-24-h limit has room again: when enough of the oldest sends (ascending)
    leave the window for ``used`` to drop below ``limit``."""
    excess = used - limit  # ≥ 0 when called: the (excess+1)-th oldest must leave
    return oldest_in_window[min(excess, len(oldest_in_window) - 1)] + DAY


@dataclass(frozen=True)
class BatchPlan:
    """How a large send is spread out (P6 "batch mode"): ``size`` recipients every ``every``."""

    batches: int
    size: int
    every: timedelta
    reason: str


def plan_batches(recipients: int, *, daily_limit: int, policy: WorkspacePolicy) -> BatchPlan:
    """Estimate the load of a send (recipients × expected interactions); above the threshold
    of the daily limit, spread it over days in batches instead of letting sends fail."""
    expected = recipients * policy.interactions_per_recipient
    ceiling = max(1, int(daily_limit * policy.batch_mode_threshold))
    if expected <= ceiling or recipients == 0:
        return BatchPlan(1, recipients, timedelta(0), "P6: within the limit; one batch")
    per_day = max(1, ceiling // policy.interactions_per_recipient)
    batches = -(-recipients // per_day)
    return BatchPlan(
        batches,
        per_day,
        DAY,
        f"P6: {recipients:,} recipients × {policy.interactions_per_recipient} interactions = "
        f"{expected:,} > {policy.batch_mode_threshold:.0%} of {daily_limit:,} a day; "
        f"{batches} daily batches of {per_day:,}",
    )
