"""The sequence model and interpreter, pure (S1, S3, S6, S7, S8): the shipped examples preview
as their seeds describe, the file format round-trips, windows and splits behave."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.conditions.domain import ContactFacts, Event, evaluate, parse_duration
from tidings.kernel.errors import TidingsError
from tidings.sequences.definition import Split, Window, parse_definition
from tidings.sequences.domain import EmailText, first_moment_in_window, split_branch
from tidings.sequences.files import read_sequence_file, write_sequence_file
from tidings.sequences.preview import parse_behaviours, preview
from tidings.workspaces.domain import WorkspacePolicy

EXAMPLES = Path(__file__).parents[2] / "examples" / "sequences"
MONDAY = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Taipei


def run(name: str, *behaviours: str, start: datetime = MONDAY) -> list[tuple[str, str, str]]:
    definition = read_sequence_file((EXAMPLES / name).read_text())
    result = preview(
        definition,
        start=start,
        behaviours=parse_behaviours(list(behaviours)),
        contact={"first_name": "Mei"},
        timezone="Asia/Taipei",
        policy=WorkspacePolicy(),
    )
    return [(e.at.isoformat(), e.step_id or "", e.kind) for e in result.entries]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_shipped_example_reads_and_round_trips_exactly(name: str) -> None:
    first = write_sequence_file(read_sequence_file((EXAMPLES / name).read_text()))
    assert write_sequence_file(read_sequence_file(first)) == first
    as_json = write_sequence_file(read_sequence_file(first), as_json=True)
    assert write_sequence_file(read_sequence_file(as_json)) == first


def test_welcome_series_sends_at_once_then_a_day_then_two_days_branching_on_read() -> None:
    reader = [e for e in run("welcome.yaml", "reads everything") if e[2] == "message"]
    assert [(at, step) for at, step, _ in reader] == [
        ("2026-03-02T01:00:00+00:00", "welcome"),
        ("2026-03-03T01:00:00+00:00", "tips"),
        ("2026-03-05T01:00:00+00:00", "offer"),
    ]
    ignorer = [e[1] for e in run("welcome.yaml", "opens nothing") if e[2] == "message"]
    assert ignorer == ["welcome", "tips", "reminder"]


def test_welcome_series_waits_for_the_sending_window_in_the_contacts_zone() -> None:
    late = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 22:00 in Taipei
    first = next(e for e in run("welcome.yaml", start=late) if e[2] == "message")
    assert first[0] == "2026-03-03T01:00:00+00:00"  # 09:00 the next morning


def test_high_intent_code_goes_only_after_three_views_in_a_week() -> None:
    assert [e[1] for e in run("high-intent-code.yaml") if e[2] == "message"] == []
    views = ["event product.viewed on day 0", "event product.viewed on day 0.1"]
    keen = run("high-intent-code.yaml", *views, "event product.viewed on day 0.2")
    assert [e[1] for e in keen if e[2] == "message"] == []  # enrolled before the views
    definition = read_sequence_file((EXAMPLES / "high-intent-code.yaml").read_text())
    facts = ContactFacts(
        events=[Event("product.viewed", MONDAY - timedelta(days=d)) for d in (1, 2, 3)]
    )
    assert evaluate(definition.step("check").if_, facts, MONDAY)


def test_clicked_but_no_order_in_72_hours_gets_the_nudge_and_an_order_stops_it() -> None:
    waiting = run("clicked-no-order.yaml", "event link.clicked on day 0")
    assert [e[1] for e in waiting if e[2] == "message"] == ["nudge"]
    nudge = next(e for e in waiting if e[2] == "message")
    assert nudge[0] >= (MONDAY + timedelta(hours=72)).isoformat()
    ordered = run("clicked-no-order.yaml", "event link.clicked on day 0", "orders on day 2")
    assert [e[1] for e in ordered if e[2] == "message"] == []
    assert ordered[-1][2] == "end"


def test_store_visit_coupon_comes_seven_days_later_within_opening_hours_not_on_sunday() -> None:
    saturday_evening = datetime(2026, 3, 7, 11, 30, tzinfo=UTC)  # 19:30 Saturday, Taipei
    coupon = next(
        e for e in run("store-visit-coupon.yaml", start=saturday_evening) if e[2] == "message"
    )
    assert coupon[0] == "2026-03-16T02:00:00+00:00"  # Sunday is closed: Monday 10:00
    converted = run("store-visit-coupon.yaml", "orders on day 8")
    assert converted[-1][2] == "end"


@pytest.mark.parametrize(("text", "hours"), [("30m", 0.5), ("72h", 72), ("1d12h", 36), ("2w", 336)])
def test_durations_read_as_people_write_them(text: str, hours: float) -> None:
    assert parse_duration(text) == timedelta(hours=hours)


def test_a_condition_naming_a_missing_step_is_refused() -> None:
    with pytest.raises(TidingsError) as caught:
        parse_definition(
            {
                "name": "x",
                "steps": [
                    {
                        "id": "c",
                        "type": "condition",
                        "if": {"read": "nowhere"},
                        "yes": "e",
                        "no": "e",
                    },
                    {"id": "e", "type": "exit"},
                ],
            }
        )
    assert caught.value.field == "steps[0].if"


@given(st.integers(min_value=1, max_value=10**9))
def test_a_split_always_sends_the_same_enrollment_the_same_way(enrollment_id: int) -> None:
    split = Split.model_validate(
        {
            "id": "s",
            "type": "split",
            "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
        }
    )
    assert split_branch(enrollment_id, split) == split_branch(enrollment_id, split)


def test_a_split_follows_its_percentages() -> None:
    split = Split.model_validate(
        {
            "id": "s",
            "type": "split",
            "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
        }
    )
    counts = Counter(split_branch(i, split) for i in range(10_000))
    assert 2_700 < counts[0] < 3_300


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
def test_the_window_moment_is_never_earlier_and_always_inside_the_window(at: datetime) -> None:
    window = Window(
        days=("mon", "wed", "fri"),
        start=datetime.min.time().replace(hour=9),
        end=datetime.min.time().replace(hour=17),
    )
    moment = first_moment_in_window(at.replace(tzinfo=UTC), window, "Asia/Bangkok")
    local = moment.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Bangkok"))
    assert moment >= at.replace(tzinfo=UTC)
    assert local.weekday() in (0, 2, 4)
    assert 9 <= local.hour < 17


def test_the_winner_is_the_best_rate_and_waits_for_every_branch() -> None:
    from tidings.sequences.definition import Split
    from tidings.sequences.domain import BranchResult, choose_winner

    step = Split.model_validate(
        {
            "id": "ab",
            "type": "split",
            "branches": [
                {"percent": 50, "next": "a"},
                {"percent": 30, "next": "b"},
                {"percent": 20, "next": "c"},
            ],
            "winner": {"metric": "read", "after": "2d"},
        }
    )
    results = {0: BranchResult(100, 30), 1: BranchResult(60, 21), 2: BranchResult(40, 14)}
    assert choose_winner(step, results) == 1  # 35% beats 30%, and ties with c: earlier wins
    assert choose_winner(step, {**results, 2: BranchResult(0, 0)}) is None  # c untested
    assert choose_winner(step, {0: results[0], 1: results[1]}) is None


def test_a_preview_renders_the_email_template_the_file_carries() -> None:
    definition = parse_definition(
        {
            "name": "Welcome",
            "steps": [{"id": "welcome", "type": "send_email", "template": "welcome"}],
            "email_templates": [
                {"name": "welcome", "subject": "Hi {{ contact.first_name }}", "html": "<p>Hi</p>"}
            ],
        }
    )
    shown = preview(definition, start=datetime(2026, 11, 24, 3, tzinfo=UTC),
                    contact={"first_name": "Ann"})  # fmt: skip
    assert next((e.kind, e.text) for e in shown.entries) == ("email", "Hi Ann")
    # The workspace's stored template wins over the copy the file carries.
    stored = {"welcome": EmailText("Dear {{ contact.first_name }}", "<p>Dear</p>")}
    shown = preview(definition, start=datetime(2026, 11, 24, 3, tzinfo=UTC),
                    contact={"first_name": "Ann"}, email_templates=stored)  # fmt: skip
    assert next((e.kind, e.text) for e in shown.entries) == ("email", "Dear Ann")
