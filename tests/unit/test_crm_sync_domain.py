"""The pure rules of CRM sync: mapping with defaults and normalisation (C5), millisecond
times, and the per-field judgement (C4) — with the invariant that a change the other side made
is never dropped unseen: it is taken, or it is queued for review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.crm_sync.domain import (
    FieldRule,
    Winner,
    judge_fields,
    map_fields,
    parse_timestamp,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_defaults_fill_empty_values_and_bad_values_are_reported_alone() -> None:
    rules = [
        FieldRule(source="level", target="custom_fields.level", default="new customer"),
        FieldRule(source="product", target="custom_fields.sku", normalise="sku"),
        FieldRule(
            source="tier", target="custom_fields.tier", normalise="map", values={"VIP": "gold"}
        ),
        FieldRule(source="name", target="name", normalise="trim"),
    ]
    skus = {"iPhone15 Pro Max": "APL-IP15PM"}
    mapped, errors = map_fields(
        {"level": " ", "product": "iPhone15 Pro Max", "tier": "vip", "name": "  Nok "},
        rules,
        sku_for=skus.get,
    )
    assert mapped == {
        "custom_fields.level": "new customer",
        "custom_fields.sku": "APL-IP15PM",
        "custom_fields.tier": "gold",
        "name": "Nok",
    }
    assert errors == []
    mapped, errors = map_fields({"product": "Galaxy", "tier": "Bronze"}, rules, sku_for=skus.get)
    assert mapped == {"custom_fields.level": "new customer"}
    assert [e.field for e in errors] == ["product", "tier"]


def test_targets_are_ours() -> None:
    with pytest.raises(ValueError, match="custom_fields"):
        FieldRule(source="x", target="shoe_size")
    assert (
        FieldRule(source="x", target="custom_fields.shoe_size").target == "custom_fields.shoe_size"
    )


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("2026-11-24T09:00:00.123456Z", datetime(2026, 11, 24, 9, 0, 0, 123000, tzinfo=UTC)),
        ("2026-11-24T16:00:00.5+07:00", datetime(2026, 11, 24, 9, 0, 0, 500000, tzinfo=UTC)),
        (1795510800123, datetime(2026, 11, 24, 9, 0, 0, 123000, tzinfo=UTC)),  # HubSpot's ms
        ("1795510800123", datetime(2026, 11, 24, 9, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_times_to_the_millisecond(given_value: object, expected: datetime) -> None:
    assert parse_timestamp(given_value) == expected


@pytest.mark.parametrize("bad", ["2026-11-24T09:00:00", "yesterday", None, True, [1]])
def test_times_without_a_zone_or_unreadable_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"time|zone"):
        parse_timestamp(bad)


def test_a_millisecond_decides_and_a_tie_keeps_ours() -> None:
    ours, theirs, base = {"name": "A"}, {"name": "B"}, {"name": "C"}
    later = judge_fields(ours, theirs, base, ours_at=NOW, theirs_at=NOW + timedelta(milliseconds=1))
    assert later.take == {"name": "B"} and later.conflicts[0].winner is Winner.THEIRS
    tie = judge_fields(ours, theirs, base, ours_at=NOW, theirs_at=NOW + timedelta(microseconds=900))
    assert tie.take == {} and tie.conflicts[0].winner is Winner.OURS


VALUES = st.sampled_from(["a", "b", "c", None])
FIELDS = st.sampled_from(["name", "email", "custom_fields.level"])


@given(
    st.dictionaries(FIELDS, VALUES),
    st.dictionaries(FIELDS, VALUES),
    st.one_of(st.none(), st.dictionaries(FIELDS, VALUES)),
    st.booleans(),
)
def test_their_changes_are_taken_or_queued_never_dropped(
    ours: dict[str, object], theirs: dict[str, object], base: dict[str, object] | None, newer: bool
) -> None:
    theirs_at = NOW + (timedelta(seconds=1) if newer else -timedelta(seconds=1))
    judgement = judge_fields(ours, theirs, base, ours_at=NOW, theirs_at=theirs_at)
    queued = {c.field: c for c in judgement.conflicts}
    for name, value in theirs.items():
        they_changed = base is None or name not in base or base[name] != value
        differs = ours.get(name) != value
        if differs and they_changed:
            assert name in judgement.take or queued[name].winner is Winner.OURS
        if name in queued:
            lost = queued[name]
            assert (lost.winner is Winner.THEIRS) == (name in judgement.take)
            assert (lost.winner is Winner.THEIRS) == newer
        if not differs:
            assert name not in judgement.take and name not in queued


def test_pulls_every_fifteen_minutes_and_in_full_once_a_night_off_peak() -> None:
    from tidings.crm_sync.connector import pull_due

    bangkok = "Asia/Bangkok"  # UTC+7: 09:00 UTC is 16:00 there
    later = {"next_pull_at": (NOW + timedelta(minutes=15)).isoformat()}
    assert pull_due(later, NOW, bangkok) == (False, False)
    assert pull_due(later, NOW + timedelta(minutes=15), bangkok) == (True, False)
    night = NOW + timedelta(hours=12)  # 04:00 in Bangkok, inside 01:00-05:00
    assert pull_due({**later, "last_full_pull_day": None}, night, bangkok) == (True, True)
    done = {
        "next_pull_at": (night + timedelta(minutes=15)).isoformat(),
        "last_full_pull_day": "2026-11-25",
    }
    assert pull_due(done, night + timedelta(minutes=1), bangkok) == (False, False)


def test_our_values_go_back_through_the_mapping() -> None:
    from tidings.crm_sync.connector import outgoing_properties

    rules = [
        FieldRule(source="firstname", target="first_name"),
        FieldRule(
            source="level", target="custom_fields.level", normalise="map", values={"VIP": "gold"}
        ),
        FieldRule(source="product", target="custom_fields.sku", normalise="sku"),
        FieldRule(source="labels", target="tags"),
    ]
    values = {
        "first_name": "Nok",
        "custom_fields.level": "gold",
        "custom_fields.sku": "A1",
        "tags": ["x"],
    }
    assert outgoing_properties(rules, values) == {"firstname": "Nok", "level": "VIP"}
