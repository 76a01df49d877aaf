"""The sending policy (P1–P5, P7, I3, quiet hours): examples of each rule, then properties over
random histories and message streams — no rule is ever broken and no request ever vanishes."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.messaging.domain import Origin, Purpose
from tidings.messaging.policy import (
    Defer,
    Outgoing,
    PastSend,
    Recipient,
    Send,
    Skip,
    content_digest,
    decide_send,
    earliest_under_cap,
    next_weekly_slot,
    quiet_hours_end,
)
from tidings.workspaces.domain import WorkspacePolicy

# Monday 2026-11-23, 10:00 in Bangkok (UTC+7): inside every default sending window.
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
BANGKOK = "Asia/Bangkok"
POLICY = WorkspacePolicy()
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def outgoing(**changes: object) -> Outgoing:
    base = Outgoing(
        channel="whatsapp",
        purpose=Purpose.UTILITY,
        origin=Origin.AUTOMATION,
        is_template=True,
        content_digest="digest-a",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


OPTED_IN = {("whatsapp", "marketing"): "opted_in", ("whatsapp", "transactional"): "opted_in"}
CONTACT = Recipient(consents=OPTED_IN, timezone=BANGKOK, last_inbound_at=NOW - HOUR)


def past(at: datetime, **changes: object) -> PastSend:
    base = PastSend(
        at=at,
        channel="whatsapp",
        purpose=Purpose.UTILITY,
        is_template=True,
        content_digest="other",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- examples, one rule at a time ----------------------------------------------------------


def test_a_clean_request_is_sent() -> None:
    assert decide_send(outgoing(), CONTACT, [], POLICY, NOW) == Send()


def test_do_not_contact_and_opt_out_skip_with_p5_and_separate_purposes() -> None:
    flagged = replace(CONTACT, do_not_contact=True)
    assert decide_send(outgoing(), flagged, [], POLICY, NOW).reason.startswith("P5")  # type: ignore[union-attr]
    no_marketing = replace(CONTACT, consents={**OPTED_IN, ("whatsapp", "marketing"): "opted_out"})
    promo = decide_send(outgoing(purpose=Purpose.MARKETING), no_marketing, [], POLICY, NOW)
    assert isinstance(promo, Skip) and promo.reason.startswith("P5")
    # Opting out of marketing does not stop a parcel notification (HubSpot separates them).
    assert decide_send(outgoing(), no_marketing, [], POLICY, NOW) == Send()
    # Opting out on WhatsApp says nothing of e-mail.
    assert decide_send(outgoing(channel="email"), no_marketing, [], POLICY, NOW) == Send()
    # The one confirmation of the opt-out still goes.
    everything_off = replace(CONTACT, consents={("whatsapp", "transactional"): "opted_out"})
    confirm = outgoing(purpose=Purpose.SERVICE, is_template=False, confirms_opt_out=True)
    assert decide_send(confirm, everything_off, [], POLICY, NOW) == Send()


def test_free_form_needs_the_24_hour_window_p1() -> None:
    free_form = outgoing(purpose=Purpose.SERVICE, is_template=False)
    assert decide_send(free_form, CONTACT, [], POLICY, NOW) == Send()
    closed = replace(CONTACT, last_inbound_at=NOW - 25 * HOUR)
    decision = decide_send(free_form, closed, [], POLICY, NOW)
    assert isinstance(decision, Skip) and decision.reason.startswith("P1")
    never = replace(CONTACT, last_inbound_at=None)
    assert isinstance(decide_send(free_form, never, [], POLICY, NOW), Skip)
    # A template needs no window; e-mail has none.
    assert decide_send(outgoing(), closed, [], POLICY, NOW) == Send()
    assert decide_send(replace(free_form, channel="email"), closed, [], POLICY, NOW) == Send()


def test_free_form_deferred_past_the_window_is_skipped_not_sent_late() -> None:
    free_form = outgoing(purpose=Purpose.UTILITY, is_template=False, notification_type="parcel")
    history = [past(NOW - HOUR, notification_type="parcel")]  # next allowed at NOW + 5 h
    closing = replace(CONTACT, last_inbound_at=NOW - 22 * HOUR)  # closes at NOW + 2 h
    decision = decide_send(free_form, closing, history, POLICY, NOW)
    assert isinstance(decision, Skip) and decision.reason.startswith("P1")
    open_long = replace(CONTACT, last_inbound_at=NOW - HOUR)
    assert decide_send(free_form, open_long, history, POLICY, NOW) == Defer(
        NOW + 5 * HOUR, "P4: 'parcel' notifications at least 6 h apart"
    )


def test_one_template_a_day_before_opt_in_p2() -> None:
    stranger = replace(CONTACT, consents={})
    history = [past(NOW - 3 * HOUR)]
    decision = decide_send(outgoing(), stranger, history, POLICY, NOW)
    # Free again at 07:00 Bangkok tomorrow: still quiet hours, so 09:00 (02:00 UTC).
    assert isinstance(decision, Defer) and decision.until == NOW + 23 * HOUR
    assert decision.reason.startswith("P2") and "quiet hours" in decision.reason
    assert decide_send(outgoing(), CONTACT, history, POLICY, NOW) == Send()  # opted in
    # An e-mail template does not count against WhatsApp's rule.
    email_history = [past(NOW - 3 * HOUR, channel="email")]
    assert decide_send(outgoing(), stranger, email_history, POLICY, NOW) == Send()


def test_the_same_content_five_times_a_month_p3() -> None:
    history = [past(NOW - (d + 1) * DAY, content_digest="digest-a") for d in range(5)]
    decision = decide_send(outgoing(), CONTACT, history, POLICY, NOW)
    # The oldest of the five (five days ago) leaves the 30 days in 25 days.
    assert isinstance(decision, Defer) and decision.until == NOW - 5 * DAY + 30 * DAY
    assert decision.reason.startswith("P3")
    # Agents are in a conversation: their repeated words are not a campaign.
    agent = outgoing(origin=Origin.AGENT, is_template=False, purpose=Purpose.SERVICE)
    assert decide_send(agent, CONTACT, history, POLICY, NOW) == Send()


def test_one_promotion_a_week_across_channels_then_the_wednesday_slot_p4() -> None:
    promo = outgoing(purpose=Purpose.MARKETING)
    history = [past(NOW - 2 * DAY, channel="email", purpose=Purpose.MARKETING)]
    decision = decide_send(promo, CONTACT, history, POLICY, NOW)
    assert isinstance(decision, Defer) and decision.reason.startswith("P4")
    # Free again on Saturday 10:00 Bangkok; the next Wednesday 14:00 Bangkok is 2 Dec 07:00 UTC.
    assert decision.until == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert decide_send(promo, CONTACT, [], POLICY, NOW) == Send()


def test_service_notifications_of_one_type_six_hours_apart_p4() -> None:
    parcel = outgoing(notification_type="parcel_update")
    history = [past(NOW - 2 * HOUR, notification_type="parcel_update")]
    assert decide_send(parcel, CONTACT, history, POLICY, NOW) == Defer(
        NOW + 4 * HOUR, "P4: 'parcel_update' notifications at least 6 h apart"
    )
    other_type = outgoing(notification_type="payment_received")
    assert decide_send(other_type, CONTACT, history, POLICY, NOW) == Send()


def test_automation_waits_twelve_hours_after_a_human_reply_i3() -> None:
    paused = replace(CONTACT, automation_paused_until=NOW + 5 * HOUR)
    decision = decide_send(outgoing(), paused, [], POLICY, NOW)
    assert isinstance(decision, Defer) and decision.until == NOW + 5 * HOUR
    assert decision.reason.startswith("I3")
    agent = outgoing(origin=Origin.AGENT)
    assert decide_send(agent, paused, [], POLICY, NOW) == Send()


def test_quiet_hours_in_the_contacts_time_zone() -> None:
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 22:30 in Bangkok
    decision = decide_send(outgoing(), CONTACT, [], POLICY, late)
    # 09:00 Bangkok next morning.
    assert isinstance(decision, Defer) and decision.until == datetime(2026, 11, 24, 2, tzinfo=UTC)
    # The same instant is 15:30 in London: fine there.
    london = replace(CONTACT, timezone="Europe/London")
    assert decide_send(outgoing(), london, [], POLICY, late) == Send()
    # Answers and one-time codes are awaited, not interruptions.
    answer = outgoing(purpose=Purpose.SERVICE)
    assert decide_send(answer, CONTACT, [], POLICY, late) == Send()


def test_rules_combine_to_the_earliest_time_every_rule_allows() -> None:
    promo = outgoing(purpose=Purpose.MARKETING)
    # Paused until Wednesday; a promotion went out today, so the weekly cap holds it until
    # next Monday, and then it waits for the Wednesday 14:00 slot (2 Dec, 07:00 UTC).
    paused = replace(CONTACT, automation_paused_until=NOW + 2 * DAY)
    history = [past(NOW, purpose=Purpose.MARKETING)]
    decision = decide_send(promo, paused, history, POLICY, NOW)
    assert isinstance(decision, Defer)
    assert decision.until == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert "I3" in decision.reason and "P4" in decision.reason
    # Paused beyond the cap: the cap no longer holds it, so it goes when the pause ends —
    # here at 08:00 Bangkok, still quiet, so at 09:00.
    thursday = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    later = replace(CONTACT, automation_paused_until=thursday)
    decision = decide_send(promo, later, history, POLICY, NOW)
    assert isinstance(decision, Defer) and decision.until == thursday + HOUR


def test_a_policy_that_allows_none_skips() -> None:
    none_allowed = POLICY.model_copy(update={"promotional_per_week": 0})
    decision = decide_send(outgoing(purpose=Purpose.MARKETING), CONTACT, [], none_allowed, NOW)
    assert isinstance(decision, Skip) and decision.reason.startswith("P4")


def test_local_time_helpers() -> None:
    assert earliest_under_cap([], limit=1, period=DAY, at=NOW) == NOW
    assert earliest_under_cap([NOW - HOUR], limit=1, period=DAY, at=NOW) == NOW + 23 * HOUR
    assert earliest_under_cap([NOW], limit=0, period=DAY, at=NOW) is None
    wednesday_slot = next_weekly_slot(NOW, weekday=2, at_time=time(14), timezone=BANGKOK)
    assert wednesday_slot == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    exactly = next_weekly_slot(wednesday_slot, weekday=2, at_time=time(14), timezone=BANGKOK)
    assert exactly == wednesday_slot
    assert quiet_hours_end(NOW, start=time(21), end=time(9), timezone=BANGKOK) is None
    early = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)  # 07:30 Bangkok
    assert quiet_hours_end(early, start=time(21), end=time(9), timezone=BANGKOK) == NOW - HOUR
    assert quiet_hours_end(early, start=time(9), end=time(9), timezone=BANGKOK) is None
    assert quiet_hours_end(NOW, start=time(9), end=time(17), timezone=BANGKOK) == datetime(
        2026, 11, 23, 10, 0, tzinfo=UTC
    )


def test_content_digest_ignores_the_quoted_reply_only() -> None:
    text = {"type": "text", "text": {"body": "สวัสดีค่ะ"}}
    quoted = {**text, "context": {"message_id": "wamid.X"}}
    assert content_digest(text) == content_digest(quoted)
    assert content_digest(text) != content_digest({"type": "text", "text": {"body": "你好"}})


# --- properties over random streams ----------------------------------------------------------

CHANNELS = ("whatsapp", "email")


@dataclass(frozen=True)
class Ask:
    offset: timedelta
    request: Outgoing


asks = st.builds(
    Ask,
    offset=st.integers(0, 40 * 24 * 60).map(lambda m: timedelta(minutes=m)),
    request=st.builds(
        Outgoing,
        channel=st.sampled_from(CHANNELS),
        purpose=st.sampled_from(list(Purpose)),
        origin=st.sampled_from(list(Origin)),
        is_template=st.booleans(),
        content_digest=st.sampled_from(["a", "b", "c"]),
        notification_type=st.sampled_from([None, "parcel", "payment"]),
    ),
)
scenarios = st.fixed_dictionaries(
    {
        "asks": st.lists(asks, max_size=40),
        "inbound": st.lists(
            st.integers(0, 40 * 24 * 60).map(lambda m: timedelta(minutes=m)), max_size=8
        ),
        "opted_in": st.booleans(),
        "marketing_opt_out": st.booleans(),
        "paused_for": st.integers(0, 48).map(lambda h: timedelta(hours=h)),
        "timezone": st.sampled_from([BANGKOK, "Asia/Taipei", "Asia/Hong_Kong", "UTC"]),
        "quiet": st.booleans(),
    }
)


@dataclass
class Outcome:
    sent: list[tuple[datetime, Outgoing, datetime | None]]  # time, request, last inbound then
    skipped: list[tuple[Outgoing, str]]
    asked: int


def run_stream(scenario: dict[str, object]) -> Outcome:
    """Decide every request at its time; deferred ones come back at the time they were given,
    exactly as the dispatcher re-decides a deferred row when it falls due."""
    start = NOW
    inbound = sorted(start + t for t in scenario["inbound"])  # type: ignore[attr-defined]
    consents: dict[tuple[str, str], str] = {}
    if scenario["opted_in"]:
        consents[("whatsapp", "transactional")] = "opted_in"
    if scenario["marketing_opt_out"]:
        consents[("whatsapp", "marketing")] = "opted_out"
    policy = (
        POLICY
        if scenario["quiet"]
        else POLICY.model_copy(update={"quiet_hours_start": time(0), "quiet_hours_end": time(0)})
    )
    paused_until = start + scenario["paused_for"]  # type: ignore[operator]
    queue: list[tuple[datetime, int, Outgoing, int]] = []
    for order, ask in enumerate(scenario["asks"]):  # type: ignore[attr-defined]
        heapq.heappush(queue, (start + ask.offset, order, ask.request, 0))
    history: list[PastSend] = []
    outcome = Outcome([], [], len(queue))
    while queue:
        at, order, request, rounds = heapq.heappop(queue)
        assert rounds < 200, "a request kept being deferred"
        last_inbound = max((t for t in inbound if t <= at), default=None)
        recipient = Recipient(
            consents=consents,
            timezone=str(scenario["timezone"]),
            last_inbound_at=last_inbound,
            automation_paused_until=paused_until,
        )
        decision = decide_send(request, recipient, history, policy, at)
        if isinstance(decision, Send):
            history.append(
                PastSend(
                    at=at,
                    channel=request.channel,
                    purpose=request.purpose,
                    is_template=request.is_template,
                    content_digest=request.content_digest if request.automated else None,
                    notification_type=request.notification_type,
                )
            )
            outcome.sent.append((at, request, last_inbound))
        elif isinstance(decision, Defer):
            assert decision.until > at and decision.reason
            heapq.heappush(queue, (decision.until, order, request, rounds + 1))
        else:
            assert decision.reason[:2] in ("P1", "P2", "P3", "P4", "P5", "P7", "I3")
            outcome.skipped.append((request, decision.reason))
    return outcome


def within(times: list[datetime], period: timedelta) -> int:
    """The most of ``times`` that fall in any half-open window of length ``period``."""
    ordered = sorted(times)
    best = 0
    for i, first in enumerate(ordered):
        best = max(best, sum(1 for t in ordered[i:] if t < first + period))
    return best


@settings(max_examples=300, deadline=None)
@given(scenarios)
def test_no_request_vanishes_and_no_rule_is_ever_broken(scenario: dict[str, object]) -> None:
    outcome = run_stream(scenario)
    # Every request ends sent or skipped with a reason; deferrals came back (P7).
    assert len(outcome.sent) + len(outcome.skipped) == outcome.asked
    for at, request, last_inbound in outcome.sent:
        # P1: free-form WhatsApp only within 24 h of the contact's last message.
        if request.channel == "whatsapp" and not request.is_template:
            assert last_inbound is not None and at < last_inbound + timedelta(hours=24)
        # P5: nothing marketing after a marketing opt-out.
        if scenario["marketing_opt_out"] and request.channel == "whatsapp":
            assert request.purpose != Purpose.MARKETING
    # P4: at most one promotional message in any 7 days, across channels.
    promos = [at for at, r, _ in outcome.sent if r.purpose == Purpose.MARKETING]
    assert within(promos, timedelta(days=7)) <= 1
    # P2: before opt-in, at most one WhatsApp template in any 24 h.
    if not scenario["opted_in"]:
        templates = [at for at, r, _ in outcome.sent if r.channel == "whatsapp" and r.is_template]
        assert within(templates, timedelta(hours=24)) <= 1
    # P3: the same automated content at most 5 times in any 30 days.
    for digest in ("a", "b", "c"):
        same = [at for at, r, _ in outcome.sent if r.automated and r.content_digest == digest]
        assert within(same, timedelta(days=30)) <= 5
    # P4: notifications of one type at least 6 h apart.
    for kind in ("parcel", "payment"):
        times = sorted(
            at
            for at, r, _ in outcome.sent
            if r.notification_type == kind and r.purpose != Purpose.MARKETING
        )
        assert all(b - a >= timedelta(hours=6) for a, b in itertools.pairwise(times))


@settings(max_examples=150, deadline=None)
@given(scenarios)
def test_automated_messages_never_go_out_during_the_pause_or_quiet_hours(
    scenario: dict[str, object],
) -> None:
    outcome = run_stream({**scenario, "quiet": True})
    paused_until = NOW + scenario["paused_for"]  # type: ignore[operator]
    for at, request, _ in outcome.sent:
        if not request.automated:
            continue
        assert at >= paused_until
        if request.purpose in (Purpose.SERVICE, Purpose.AUTHENTICATION):
            continue
        assert (
            quiet_hours_end(at, start=time(21), end=time(9), timezone=str(scenario["timezone"]))
            is None
        )


@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_decision_names_its_rule(purpose: Purpose) -> None:
    history = [past(NOW - HOUR, purpose=p, content_digest="digest-a") for p in Purpose] * 3
    stranger = replace(CONTACT, consents={}, automation_paused_until=NOW + HOUR)
    decision = decide_send(outgoing(purpose=purpose), stranger, history, POLICY, NOW)
    assert not isinstance(decision, Send)
    assert decision.reason[:2] in ("P2", "P3", "P4", "I3")


# --- P6: numbers and portfolios ------------------------------------------------------------


def test_a_new_number_warms_up_by_doubling_its_daily_quota() -> None:
    from tidings.messaging.policy import daily_quota

    quotas = [daily_quota(POLICY, timedelta(days=d, hours=5)) for d in range(4)]
    assert quotas == [250, 500, 1000, 1000]
    no_warmup = POLICY.model_copy(update={"warmup_first_day_quota": None})
    assert daily_quota(no_warmup, timedelta(0)) == 1000
    assert daily_quota(POLICY, timedelta(days=400)) == 1000


def test_a_rolling_limit_frees_when_enough_old_sends_leave_the_day() -> None:
    from tidings.messaging.policy import capacity_frees_at

    oldest = [NOW - 20 * HOUR, NOW - 10 * HOUR, NOW - 5 * HOUR]
    assert capacity_frees_at(oldest, used=5, limit=5) == NOW + 4 * HOUR
    assert capacity_frees_at(oldest, used=7, limit=5) == NOW + 19 * HOUR


def test_a_large_send_is_spread_into_daily_batches_above_80_percent() -> None:
    from tidings.messaging.policy import plan_batches

    small = plan_batches(200, daily_limit=1000, policy=POLICY)  # 600 expected ≤ 800
    assert small.batches == 1 and small.size == 200
    large = plan_batches(1000, daily_limit=1000, policy=POLICY)  # 3,000 expected > 800
    assert (large.batches, large.size, large.every) == (4, 266, DAY)
    assert large.reason.startswith("P6") and "3,000" in large.reason
    assert plan_batches(0, daily_limit=1000, policy=POLICY).batches == 1
