"""Conversation metrics (R1), pure: when customers write (an hour × weekday heat-map in the
workspace's time) and how long agents take to answer them.

A response time runs from the first customer message that nobody has answered yet to the next
message an agent wrote in that conversation; automated messages (rules, sequences, broadcasts)
do not stop the clock, since the customer is still waiting for a person. Further customer
messages while waiting do not restart it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

TARGET_SECONDS = 180  # R4: answer within 3 minutes


def activity_grid(moments: Iterable[datetime], timezone: str) -> list[list[int]]:
    """How many of ``moments`` fall in each hour of each weekday in ``timezone``:
    ``grid[weekday][hour]``, Monday first."""
    zone = ZoneInfo(timezone)
    grid = [[0] * 24 for _ in range(7)]
    for moment in moments:
        local = moment.astimezone(zone)
        grid[local.weekday()][local.hour] += 1
    return grid


@dataclass(frozen=True)
class ThreadMessage:
    """A message of a conversation as response times see it."""

    conversation_id: int
    at: datetime
    inbound: bool
    author_id: int | None  # the agent who wrote an outbound message; None for automation


@dataclass(frozen=True)
class AgentResponses:
    agent_id: int
    answered: int
    median_seconds: float
    mean_seconds: float
    within_target: int  # answered within TARGET_SECONDS
    slow: bool  # the mean is above the workspace's limit (R1: 6 minutes by default)


def response_times(messages: Iterable[ThreadMessage]) -> dict[int, list[float]]:
    """Seconds each agent took to answer, per answer; ``messages`` in any order."""
    by_conversation: dict[int, list[ThreadMessage]] = defaultdict(list)
    for message in messages:
        by_conversation[message.conversation_id].append(message)
    found: dict[int, list[float]] = defaultdict(list)
    for thread in by_conversation.values():
        waiting_since: datetime | None = None
        for message in sorted(thread, key=lambda m: m.at):
            if message.inbound:
                waiting_since = waiting_since or message.at
            elif message.author_id is not None and waiting_since is not None:
                found[message.author_id].append((message.at - waiting_since).total_seconds())
                waiting_since = None
    return dict(found)


def agent_responses(
    messages: Iterable[ThreadMessage], *, slow_after_seconds: float
) -> list[AgentResponses]:
    """Each agent's answers: how many, median and mean seconds, how many within target, and
    whether the mean is above ``slow_after_seconds``; the slowest median first."""
    summaries = [
        AgentResponses(
            agent_id=agent_id,
            answered=len(seconds),
            median_seconds=statistics.median(seconds),
            mean_seconds=statistics.fmean(seconds),
            within_target=sum(1 for s in seconds if s <= TARGET_SECONDS),
            slow=statistics.fmean(seconds) > slow_after_seconds,
        )
        for agent_id, seconds in response_times(messages).items()
    ]
    return sorted(summaries, key=lambda s: (-s.median_seconds, s.agent_id))
