"""Conversation metrics (R1): the weekday × hour heat-map in the workspace's time, and agents'
response times that automation does not cut short."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tidings.messaging.activity import (
    ThreadMessage,
    activity_grid,
    agent_responses,
    response_times,
)

MONDAY_NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_grid_counts_in_the_workspace_time() -> None:
    # Monday 12:00 UTC is Monday 20:00 in Taipei; Sunday 20:30 UTC is Monday 04:30 there.
    grid = activity_grid(
        [MONDAY_NOON_UTC, MONDAY_NOON_UTC, datetime(2026, 11, 22, 20, 30, tzinfo=UTC)],
        "Asia/Taipei",
    )
    assert grid[0][20] == 2 and grid[0][4] == 1
    assert sum(map(sum, grid)) == 3 and len(grid) == 7 and all(len(row) == 24 for row in grid)


@given(
    st.lists(
        st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
        max_size=50,
    )
)
def test_every_moment_is_counted_once(moments: list[datetime]) -> None:
    assert sum(map(sum, activity_grid(moments, "America/New_York"))) == len(moments)


def at(minutes: float) -> datetime:
    return MONDAY_NOON_UTC + timedelta(minutes=minutes)


def test_the_clock_runs_from_the_first_unanswered_message_to_an_agents_answer() -> None:
    thread = [
        ThreadMessage(1, at(0), True, None),  # the customer writes
        ThreadMessage(1, at(1), True, None),  # and again: the clock does not restart
        ThreadMessage(1, at(2), False, None),  # an automatic reply: still waiting for a person
        ThreadMessage(1, at(5), False, 7),  # agent 7 answers after 5 minutes
        ThreadMessage(1, at(6), False, 7),  # a second message answers nothing
        ThreadMessage(1, at(30), True, None),
        ThreadMessage(1, at(31), False, 8),  # agent 8: 1 minute
        ThreadMessage(2, at(0), True, None),
        ThreadMessage(2, at(12), False, 7),  # agent 7 in another conversation: 12 minutes
        ThreadMessage(3, at(0), False, 8),  # an agent writing first answers nobody
    ]
    found = response_times(reversed(thread))
    assert {agent: sorted(seconds) for agent, seconds in found.items()} == {
        7: [300.0, 720.0],
        8: [60.0],
    }
    summaries = agent_responses(thread, slow_after_seconds=360)
    assert [s.agent_id for s in summaries] == [7, 8]  # the slowest median first
    seven, eight = summaries
    assert (seven.answered, seven.median_seconds, seven.within_target) == (2, 510.0, 0)
    assert seven.slow and seven.mean_seconds > 360
    assert (eight.answered, eight.within_target, eight.slow) == (1, 1, False)


def test_slow_is_the_workspaces_choice() -> None:
    thread = [ThreadMessage(1, at(0), True, None), ThreadMessage(1, at(5), False, 7)]
    assert agent_responses(thread, slow_after_seconds=240)[0].slow
    assert not agent_responses(thread, slow_after_seconds=600)[0].slow
