"""Clock, policy defaults and the scheduler's timing rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tidings.kernel.clock import SharedVirtualClock, VirtualClock, ensure_utc
from tidings.kernel.errors import TidingsError
from tidings.kernel.localization import check_locale
from tidings.scheduler.domain import PeriodicJob, retry_delay, slot_start
from tidings.workspaces.domain import Role, WorkspacePolicy, check_can_grant


def test_virtual_clock_moves_only_forward_when_told() -> None:
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.sleep(90)
    assert clock.now() == datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ensure_utc(datetime(2026, 1, 1))


def test_policy_defaults_are_the_spec_figures() -> None:
    policy = WorkspacePolicy()
    assert policy.service_window_hours == 24  # P1
    assert policy.same_content_per_month == 5  # P3
    assert policy.promotional_slot_weekday == 2  # P4: Wednesday
    assert policy.daily_quota_per_number == 1000  # P6
    assert policy.human_reply_pause_hours == 12  # I3
    assert "退訂" in policy.opt_out_keywords  # P5


def test_policy_overrides_are_validated() -> None:
    assert WorkspacePolicy(daily_quota_per_number=250).daily_quota_per_number == 250
    with pytest.raises(ValidationError):
        WorkspacePolicy(retention_days=30)  # C6: at least 180 days
    with pytest.raises(ValidationError):
        WorkspacePolicy(no_such_rule=1)  # type: ignore[call-arg]


def test_nobody_grants_more_than_they_hold() -> None:
    check_can_grant(Role.ADMIN, Role.AGENT)
    with pytest.raises(TidingsError) as caught:
        check_can_grant(Role.ADMIN, Role.OWNER)
    assert caught.value.http_status == 403


def test_locales_come_out_in_bcp47_form() -> None:
    assert check_locale("zh_Hant_TW") == "zh-Hant-TW"
    assert check_locale("th") == "th"
    with pytest.raises(TidingsError):
        check_locale("xx-nowhere")


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=1, max_value=86_400),
)
def test_a_moment_lies_in_exactly_one_slot(moment: datetime, seconds: int) -> None:
    every = timedelta(seconds=seconds)
    start = slot_start(moment, every)
    assert start <= moment < start + every
    assert slot_start(start + every, every) == start + every


def test_periodic_jobs_share_slots_across_workers() -> None:
    job = PeriodicJob("digest", timedelta(minutes=15))
    first = job.slot_for(datetime(2026, 1, 1, 10, 7, tzinfo=UTC))
    assert first == job.slot_for(datetime(2026, 1, 1, 10, 14, 59, tzinfo=UTC))
    assert first == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_retry_delay_grows_exponentially_up_to_a_cap() -> None:
    delays = [
        retry_delay(n, base=timedelta(seconds=30), cap=timedelta(minutes=5)) for n in range(1, 6)
    ]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 300)]


def test_a_shared_virtual_clock_is_one_time_for_every_process_reading_its_file(
    tmp_path: Path,
) -> None:
    start = datetime(2026, 11, 24, 2, tzinfo=UTC)
    controller = SharedVirtualClock(tmp_path / "clock", start=start)
    reader = SharedVirtualClock(tmp_path / "clock")  # as `tidings worker` opens it
    assert reader.now() == start
    controller.advance(timedelta(days=1))
    assert reader.now() == start + timedelta(days=1)
    reader.sleep(0.001)  # waits for real: only the controller moves this time
    assert controller.now() == start + timedelta(days=1)
    with pytest.raises(ValueError, match="backwards"):
        controller.advance(timedelta(seconds=-1))
    (tmp_path / "clock").write_text("not a time")
    with pytest.raises(ValueError, match="holds no time"):
        reader.now()
