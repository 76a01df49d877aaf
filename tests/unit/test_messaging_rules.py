"""Pure rules of the outgoing pipeline and the inbox: content limits, the 24-hour window (P1),
retries (X3), forward-only statuses, pacing (P6) and conversation states."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.channels.domain import FailureAction, FailureClass
from tidings.kernel.errors import TidingsError
from tidings.kernel.templating import render_template
from tidings.messaging.domain import (
    PROGRESS,
    ConversationStatus,
    GiveUp,
    MessageStatus,
    Retry,
    after_failure,
    check_label,
    check_outbound_content,
    check_shortcut,
    check_snooze,
    grant_slots,
    is_window_open,
    next_outbound_status,
    paced_interval,
    status_after_inbound,
    summary_of,
)

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def field_of(content: dict[str, Any]) -> str | None:
    with pytest.raises(TidingsError) as caught:
        check_outbound_content(content)
    assert caught.value.http_status == 422
    return caught.value.field


VALID: list[dict[str, Any]] = [
    {"type": "text", "text": {"body": "สวัสดีค่ะ", "preview_url": True}},
    {"type": "image", "image": {"id": "1479537139650973", "caption": "新款"}},
    {"type": "document", "document": {"link": "https://x.example/a.pdf", "filename": "a.pdf"}},
    {"type": "audio", "audio": {"id": "123"}},
    {"type": "sticker", "sticker": {"id": "456"}},
    {"type": "video", "video": {"link": "https://x.example/v.mp4"}},
    {
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "zh_TW"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "怡君"}]}],
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Change or cancel?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "change", "title": "Change"}},
                    {"type": "reply", "reply": {"id": "cancel", "title": "Cancel"}},
                ]
            },
        },
    },
    {"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}},
    {"type": "location", "location": {"latitude": 13.75, "longitude": 100.5, "name": "Siam"}},
    {"type": "contacts", "contacts": [{"name": {"formatted_name": "Shop", "first_name": "S"}}]},
]


@pytest.mark.parametrize("content", VALID, ids=[c["type"] for c in VALID])
def test_every_supported_kind_passes_in_canonical_form(content: dict[str, Any]) -> None:
    checked = check_outbound_content(content)
    assert checked["type"] == content["type"]
    assert summary_of(checked)


def test_bad_content_is_refused_naming_the_field() -> None:
    assert field_of({"type": "fax"}) == "content.type"
    assert field_of({"type": "text", "text": {"body": "  "}}) == "content.text.body"
    assert field_of({"type": "text", "text": {"body": "x" * 4097}}) == "content.text.body"
    assert field_of({"type": "image", "image": {"id": "1", "link": "https://a"}}) == "content.image"
    assert field_of({"type": "image", "image": {"link": "ftp://a"}}) == "content.image.link"
    assert (
        field_of({"type": "image", "image": {"id": "1", "caption": "c" * 1025}})
        == "content.image.caption"
    )
    assert field_of({"type": "audio", "audio": {"id": "1", "caption": "no"}}) == (
        "content.audio.caption"
    )
    assert field_of({"type": "template", "template": {"name": "Bad Name"}}) == (
        "content.template.name"
    )
    assert field_of(
        {"type": "template", "template": {"name": "ok", "language": {"code": "english"}}}
    ) == ("content.template.language.code")
    four = [{"type": "reply", "reply": {"id": str(i), "title": f"B{i}"}} for i in range(4)]
    assert field_of(
        {
            "type": "interactive",
            "interactive": {"type": "button", "body": {"text": "?"}, "action": {"buttons": four}},
        }
    ) == ("content.interactive.action.buttons")
    long_title = [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]
    assert field_of(
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "?"},
                "action": {"buttons": long_title},
            },
        }
    ) == ("content.interactive.action.buttons[0].reply.title")
    rows = [{"id": str(i), "title": f"r{i}"} for i in range(11)]
    assert field_of(
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "?"},
                "action": {"button": "Pick", "sections": [{"title": "A", "rows": rows}]},
            },
        }
    ) == ("content.interactive.action.sections")
    assert field_of({"type": "location", "location": {"latitude": 91, "longitude": 0}}) == (
        "content.location.latitude"
    )
    assert field_of({"type": "text", "text": {"body": "hi"}, "context": {"message_id": ""}}) == (
        "content.context.message_id"
    )


def test_the_window_is_open_for_24_hours_after_the_last_inbound_message() -> None:
    assert not is_window_open(None, NOW, DAY)
    assert is_window_open(NOW - DAY + timedelta(seconds=1), NOW, DAY)
    assert not is_window_open(NOW - DAY, NOW, DAY)


def test_transient_failures_back_off_and_permanent_ones_fail_at_once() -> None:
    transient = FailureClass(FailureAction.RETRY, "throughput")
    first = after_failure(transient, attempts=1, max_retries=2, now=NOW, jitter_seed=1)
    second = after_failure(transient, attempts=2, max_retries=2, now=NOW, jitter_seed=1)
    assert isinstance(first, Retry) and isinstance(second, Retry)
    assert timedelta(seconds=30) <= first.at - NOW < timedelta(seconds=37)
    assert second.at - NOW >= 4 * (first.at - NOW) * 0.8
    third = after_failure(transient, attempts=3, max_retries=2, now=NOW, jitter_seed=1)
    assert isinstance(third, GiveUp) and "X3" in third.reason
    # With a validity, a transient failure is retried until it ends, whatever the count.
    valid = NOW + timedelta(hours=24)
    late = after_failure(
        transient, attempts=12, max_retries=2, now=NOW, jitter_seed=1, valid_until=valid
    )
    assert isinstance(late, Retry) and late.at - NOW <= timedelta(hours=1, minutes=12)
    ended = after_failure(
        transient,
        attempts=3,
        max_retries=2,
        now=valid - timedelta(minutes=1),
        jitter_seed=1,
        valid_until=valid,
    )
    assert isinstance(ended, GiveUp) and "validity" in ended.reason
    permanent = FailureClass(FailureAction.FIX_REQUEST, "bad number")
    assert isinstance(
        after_failure(
            permanent, attempts=1, max_retries=2, now=NOW, jitter_seed=1, valid_until=valid
        ),
        GiveUp,
    )
    window = FailureClass(FailureAction.SEND_TEMPLATE, "more than 24 hours")
    assert after_failure(window, attempts=1, max_retries=2, now=NOW, jitter_seed=1) == GiveUp(
        "P1: more than 24 hours"
    )
    pair = FailureClass(FailureAction.RETRY_RECIPIENT_LATER, "pair")
    again = after_failure(pair, attempts=1, max_retries=2, now=NOW, jitter_seed=1)
    assert isinstance(again, Retry) and again.at - NOW < timedelta(seconds=8)


REPORTS = [
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.FAILED,
    MessageStatus.ACCEPTED,
]


@given(st.lists(st.sampled_from(REPORTS), max_size=12))
def test_a_message_never_moves_backwards_whatever_order_reports_arrive_in(
    reports: list[MessageStatus],
) -> None:
    status = MessageStatus.SENDING
    history = [status]
    for report in reports:
        changed = next_outbound_status(status, report)
        if changed is not None:
            status = changed
            history.append(status)
    progress = [PROGRESS.get(s, -1) for s in history if s != MessageStatus.FAILED]
    assert progress == sorted(progress)
    if MessageStatus.FAILED in history:
        assert history[-1] == MessageStatus.FAILED  # failed is final
        assert MessageStatus.DELIVERED not in history[: history.index(MessageStatus.FAILED)]


def test_a_late_delivered_after_read_changes_nothing() -> None:
    assert next_outbound_status(MessageStatus.READ, MessageStatus.DELIVERED) is None
    assert next_outbound_status(MessageStatus.DELIVERED, MessageStatus.FAILED) is None
    assert next_outbound_status(MessageStatus.SENT, MessageStatus.FAILED) == MessageStatus.FAILED
    assert next_outbound_status(MessageStatus.SKIPPED, MessageStatus.SENT) is None


def test_slots_are_granted_from_the_next_free_one_and_never_past_the_horizon() -> None:
    interval = paced_interval(80, 0.1)
    assert interval == pytest.approx(1 / 72)
    first = grant_slots(0.0, wanted=500, now=100.0, horizon=2.0, interval=interval)
    assert (first.start, first.count) == (100.0, 144)  # idle time is not banked into a burst
    second = grant_slots(first.end, wanted=500, now=100.0, horizon=2.0, interval=interval)
    assert second.start == pytest.approx(102.0) and second.count == 0  # another worker's turn
    later = grant_slots(first.end, wanted=10, now=101.0, horizon=2.0, interval=interval)
    assert later.start == pytest.approx(102.0) and later.count == 10


@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(0, 300)), min_size=1, max_size=40),
    st.sampled_from([80.0, 1000.0]),
)
def test_claims_from_any_number_of_workers_never_exceed_the_paced_rate(
    claims: list[tuple[float, int]], throughput: float
) -> None:
    """Whatever the order and size of the workers' claims, the slots handed out on a number
    are ``interval`` apart at least: no second ever holds more than the paced rate."""
    interval = paced_interval(throughput, 0.1)
    next_slot, now, slots = 0.0, 1000.0, []
    for step, wanted in claims:
        now += step
        grant = grant_slots(next_slot, wanted=wanted, now=now, horizon=2.0, interval=interval)
        slots += [grant.start + k * interval for k in range(grant.count)]
        next_slot = max(next_slot, grant.end)
        assert all(slot <= now + 2.0 for slot in slots[len(slots) - grant.count :])
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap >= interval - 1e-9 for gap in gaps)


def test_conversation_states_labels_shortcuts_and_snoozes() -> None:
    assert status_after_inbound(ConversationStatus.RESOLVED) == ConversationStatus.OPEN
    assert status_after_inbound(ConversationStatus.SNOOZED) == ConversationStatus.OPEN
    assert status_after_inbound(ConversationStatus.PENDING) == ConversationStatus.PENDING
    assert check_label(" VIP ") == "vip" and check_label("ลูกค้าใหม่") == "ลูกค้าใหม่"
    assert check_shortcut("/Ship") == "ship"
    with pytest.raises(TidingsError) as caught:
        check_label("two words")
    assert caught.value.field == "labels"
    with pytest.raises(TidingsError) as caught:
        check_snooze(NOW - timedelta(minutes=1), NOW)
    assert caught.value.field == "snoozed_until"


def test_user_templates_render_in_the_sandbox_and_report_the_broken_line() -> None:
    text = render_template(
        "Hi {{ contact.first_name }}{{ contact.missing.deeper }}!", {"contact": {}}, field="body"
    )
    assert text == "Hi !"
    with pytest.raises(TidingsError) as caught:
        render_template("line one\n{{ contact.name ", {}, field="body")
    assert caught.value.field == "body" and "line 2" in caught.value.message
    # Private attributes are invisible in the sandbox; huge ranges are refused.
    assert render_template("{{ ''.__class__.__mro__ }}", {}, field="body") == ""
    with pytest.raises(TidingsError) as caught:
        render_template("{% for i in range(10**9) %}{% endfor %}", {}, field="body")
    assert caught.value.code == "unsafe_template"
