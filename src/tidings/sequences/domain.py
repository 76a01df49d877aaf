"""How an enrollment moves through its sequence: the pure interpreter shared by the worker and
the preview (S7).

``advance`` takes where an enrollment stands (its cursor), what is known of the contact and
``now``; it runs every step that is due, in order, and stops at the first one that must wait.
It returns what ran (each with the effect to carry out) and where the enrollment now waits.
``react`` says what an event does to an enrollment (leave, jump to a goal, end a wait).

Time is measured from when the enrollment *should* have reached a step, not from when a worker
got to it, so a late worker never stretches the schedule. Nothing here reads a clock or storage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

from tidings.broadcasts.domain import personalise
from tidings.conditions.domain import ContactFacts, Event, EventMatcher, evaluate, needs
from tidings.kernel.errors import TidingsError
from tidings.kernel.templating import render_template
from tidings.mailing.domain import RenderedEmail, render_email
from tidings.messaging.domain import Origin, Purpose
from tidings.messaging.policy import (
    Decision,
    Defer,
    Outgoing,
    Skip,
    content_digest,
    local_moment,
    zone_named,
)
from tidings.sequences.definition import (
    WEEKDAYS,
    AddTag,
    AddToList,
    CallWebhook,
    ChangeScore,
    EnrollElsewhere,
    Exit,
    Goal,
    IfElse,
    Notify,
    RemoveFromList,
    RemoveTag,
    SendEmail,
    SendWhatsApp,
    SequenceDefinition,
    SetField,
    Split,
    Wait,
    WeeklyTime,
    Window,
)

MAX_STEPS_PER_ADVANCE = 200  # the graph check forbids loops without a wait; this is a guard
WINDOW_HOURS = 24  # P1: a free-form message only while the customer wrote within 24 hours


@dataclass(frozen=True)
class Cursor:
    """Where an enrollment stands: the step it is at and when it (should have) arrived there.
    ``visit`` counts the steps it has run: the next run's idempotency key."""

    step_id: str
    arrived_at: datetime
    visit: int = 0


@dataclass(frozen=True)
class Lead:
    """What the interpreter needs to know of one enrolled contact."""

    enrollment_id: int
    timezone: str
    variables: Mapping[str, Any]  # for rendering: {"contact": {...}, "workspace": {...}}
    facts: ContactFacts = field(default_factory=ContactFacts)
    last_inbound_at: datetime | None = None  # opens the WhatsApp window (P1)
    reached_goals: frozenset[str] = frozenset()
    # The workspace's stored e-mail templates that the definition names, by name.
    email_templates: Mapping[str, EmailText] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailText:
    """A stored e-mail template's parts, as a ``send_email`` step naming it renders them."""

    subject: str
    html: str
    text: str | None = None


def email_template_names(definition: SequenceDefinition) -> set[str]:
    """The stored e-mail templates the definition's steps name."""
    return {s.template for s in definition.steps if isinstance(s, SendEmail) and s.template}


# --- effects: what a step asks the outside world to do ------------------------------------------


@dataclass(frozen=True)
class SendWhatsAppMessage:
    content: dict[str, Any]
    purpose: str

    @cached_property
    def digest(self) -> str:
        """The P3 content digest, worked out once (the policy and the outbox both want it)."""
        return content_digest(self.content)


@dataclass(frozen=True)
class SendEmailMessage:
    subject: str
    html: str
    text: str
    links: tuple[str, ...]
    purpose: str

    @property
    def content(self) -> dict[str, Any]:
        return RenderedEmail(self.subject, self.html, self.text, list(self.links)).content()

    @cached_property
    def digest(self) -> str:
        return content_digest(self.content)


@dataclass(frozen=True)
class ChangeTag:
    tag: str
    add: bool


@dataclass(frozen=True)
class ChangeList:
    list_name: str
    add: bool


@dataclass(frozen=True)
class SetContactField:
    field: str
    value: Any


@dataclass(frozen=True)
class AddToScore:
    by: int


@dataclass(frozen=True)
class NotifyTeam:
    message: str
    agent: str | None
    task_due: datetime | None


@dataclass(frozen=True)
class PostWebhook:
    url: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class EnrollInto:
    sequence: str


Effect = (
    SendWhatsAppMessage
    | SendEmailMessage
    | ChangeTag
    | ChangeList
    | SetContactField
    | AddToScore
    | NotifyTeam
    | PostWebhook
    | EnrollInto
)


@dataclass(frozen=True)
class StepRun:
    """One step run by one enrollment: the trace of S5 statistics and of "why"."""

    step_id: str
    visit: int
    at: datetime  # the moment the step ran for (its scheduled time, ≤ now)
    outcome: str  # done, waited, branch, converted, passed, skipped, exited
    detail: str = ""
    effect: Effect | None = None
    decision: Decision | None = None  # the sending policy's, for a message


@dataclass(frozen=True)
class Advance:
    runs: tuple[StepRun, ...]
    cursor: Cursor  # where it waits, or the last step when it ended
    due_at: datetime | None  # when to look again; None once it ended
    ended: str | None = None  # completed, converted, exited
    end_reason: str | None = None
    reached_goal: str | None = None


Decide = Callable[["SendWhatsAppMessage | SendEmailMessage", datetime], Decision]


def outgoing_of(effect: SendWhatsAppMessage | SendEmailMessage) -> Outgoing:
    """A step's message as the sending policy sees it."""
    if isinstance(effect, SendEmailMessage):
        return Outgoing(
            channel="email",
            purpose=Purpose(effect.purpose),
            origin=Origin.SEQUENCE,
            is_template=False,
            content_digest=effect.digest,
        )
    return Outgoing(
        channel="whatsapp",
        purpose=Purpose(effect.purpose),
        origin=Origin.SEQUENCE,
        is_template=effect.content["type"] == "template",
        content_digest=effect.digest,
    )


def advance(
    definition: SequenceDefinition,
    cursor: Cursor,
    lead: Lead,
    *,
    now: datetime,
    winners: Mapping[str, int] | None = None,
    decide: Decide | None = None,
) -> Advance:
    """Run every step of ``cursor``'s enrollment that is due at ``now``.

    ``decide`` is the sending policy for this contact (it remembers what it let through, so
    a second message in the same advance sees the first). A message it defers holds the
    enrollment until the message goes, so later steps never overtake it; one it skips does not.
    """
    runs: list[StepRun] = []
    reached: str | None = None
    for _ in range(MAX_STEPS_PER_ADVANCE):
        step = definition.step(cursor.step_id)
        outcome = _run_step(definition, step, cursor, lead, now, winners or {})
        if isinstance(outcome, _Waiting):
            return Advance(tuple(runs), cursor, outcome.until, reached_goal=reached)
        decision = None
        if isinstance(outcome.effect, SendWhatsAppMessage | SendEmailMessage) and decide:
            decision = decide(outcome.effect, max(outcome.at, now))
            outcome = _after_decision(outcome, decision)
        run = StepRun(
            step.id,
            cursor.visit,
            outcome.at,
            outcome.outcome,
            outcome.detail,
            outcome.effect,
            decision,
        )
        runs.append(run)
        if outcome.outcome == "converted":
            reached = step.id
        ended = outcome.ends or (None if outcome.next else "completed")
        if ended is not None:
            reason = outcome.detail if outcome.ends else "reached the end of the sequence"
            if reached is not None and ended == "completed":
                ended = "converted"
            return Advance(
                tuple(runs),
                replace(cursor, visit=cursor.visit + 1),
                None,
                ended=ended,
                end_reason=reason,
                reached_goal=reached,
            )
        assert outcome.next is not None
        cursor = Cursor(outcome.next, outcome.next_arrival or outcome.at, cursor.visit + 1)
    return Advance(tuple(runs), cursor, now, reached_goal=reached)  # guard: continue next batch


def _after_decision(outcome: _Ran, decision: Decision) -> _Ran:
    if isinstance(decision, Skip):
        return replace(outcome, outcome="skipped", detail=decision.reason[:300])
    if isinstance(decision, Defer):
        return replace(outcome, detail=decision.reason[:300], next_arrival=decision.until)
    return outcome


@dataclass(frozen=True)
class _Waiting:
    until: datetime


@dataclass(frozen=True)
class _Ran:
    at: datetime
    outcome: str
    next: str | None
    detail: str = ""
    effect: Effect | None = None
    ends: str | None = None  # "exited" for an exit step
    next_arrival: datetime | None = None


def _run_step(
    definition: SequenceDefinition,
    step: Any,
    cursor: Cursor,
    lead: Lead,
    now: datetime,
    winners: Mapping[str, int],
) -> _Waiting | _Ran:
    ready = cursor.arrived_at + (step.delay or timedelta())
    window = step.window or (
        definition.settings.window if isinstance(step, SendWhatsApp | SendEmail) else None
    )
    if isinstance(step, Wait):
        return _wait(step, ready, lead, now, window)
    at = first_moment_in_window(ready, window, lead.timezone) if window else ready
    if isinstance(step, IfElse):
        judged = at + definition.settings.settle  # S8: late events have had time to arrive
        if judged > now:
            return _Waiting(judged)
        holds = evaluate(step.if_, lead.facts, at)
        return _Ran(at, "branch", step.yes if holds else step.no, "yes" if holds else "no")
    if at > now:
        return _Waiting(at)
    if isinstance(step, Split):
        index = winners.get(step.id)
        chosen = index if index is not None else split_branch(lead.enrollment_id, step)
        branch = step.branches[chosen]
        return _Ran(at, "branch", branch.next, branch_label(step, chosen))
    if isinstance(step, Goal):
        return _goal(step, lead, at)
    if isinstance(step, Exit):
        return _Ran(at, "exited", None, step.reason or "an exit step", ends="exited")
    return _act(step, lead, at, now)


def _wait(
    step: Wait, ready: datetime, lead: Lead, now: datetime, window: Window | None
) -> _Waiting | _Ran:
    if step.until_event is not None:
        assert step.timeout is not None
        deadline = ready + step.timeout
        for event in sorted(lead.facts.events, key=lambda e: e.occurred_at):
            if ready <= event.occurred_at <= min(now, deadline) and step.until_event.matches(
                event.type, event.properties
            ):
                return _Ran(event.occurred_at, "waited", step.next, f"{event.type} happened")
        if deadline > now:
            return _Waiting(deadline)
        return _Ran(deadline, "waited", step.on_timeout or step.next, "timed out")
    if step.duration is not None:
        until = ready + step.duration
    else:
        assert step.until is not None
        until = next_weekly_time(ready, step.until, lead.timezone)
    if window is not None:
        until = first_moment_in_window(until, window, lead.timezone)
    if until > now:
        return _Waiting(until)
    return _Ran(until, "waited", step.next)


def _goal(step: Goal, lead: Lead, at: datetime) -> _Ran:
    since = lead.facts.enrolled_at
    happened = step.id in lead.reached_goals or any(
        step.when.matches(e.type, e.properties)
        and (since is None or e.occurred_at >= since)
        and e.occurred_at <= at
        for e in lead.facts.events
    )
    if happened:
        return _Ran(at, "converted", step.next, f"converted ({step.when.event})")
    return _Ran(at, "passed", step.next, "goal not reached yet")


def _act(step: Any, lead: Lead, at: datetime, now: datetime) -> _Ran:
    try:
        effect = _effect_of(step, lead, at, now)
    except TidingsError as error:  # a user's template that will not render: say so, go on
        return _Ran(at, "skipped", step.next, f"{error.field}: {error.message}"[:300])
    if isinstance(effect, str):
        return _Ran(at, "skipped", step.next, effect)
    return _Ran(at, "done", step.next, "", effect)


def _effect_of(step: Any, lead: Lead, at: datetime, now: datetime) -> Effect | str:
    if isinstance(step, SendWhatsApp):
        return whatsapp_content(step, lead, now)
    if isinstance(step, SendEmail):
        if step.template is not None:
            stored = lead.email_templates.get(step.template)
            if stored is None:
                return f"the e-mail template {step.template!r} no longer exists"
            parts = stored
        else:
            parts = EmailText(str(step.subject), str(step.body), step.text)
        rendered = render_email(
            subject=parts.subject, html=parts.html, text=parts.text, variables=lead.variables
        )
        return SendEmailMessage(
            rendered.subject, rendered.html, rendered.text, tuple(rendered.links), step.purpose
        )
    simple: dict[type, Any] = {
        AddTag: lambda s: ChangeTag(s.tag, add=True),
        RemoveTag: lambda s: ChangeTag(s.tag, add=False),
        AddToList: lambda s: ChangeList(s.list, add=True),
        RemoveFromList: lambda s: ChangeList(s.list, add=False),
        SetField: lambda s: SetContactField(s.field, s.value),
        ChangeScore: lambda s: AddToScore(s.by),
        CallWebhook: lambda s: PostWebhook(s.url, s.payload),
        EnrollElsewhere: lambda s: EnrollInto(s.sequence),
    }
    if isinstance(step, Notify):
        message = render_template(step.message, lead.variables, field="message").strip()
        due = at + step.task_due if step.task_due is not None else None
        return NotifyTeam(message, step.agent, due)
    return simple[type(step)](step)  # type: ignore[no-any-return]


def whatsapp_content(step: SendWhatsApp, lead: Lead, now: datetime) -> SendWhatsAppMessage | str:
    """Free-form text while the window is open, the template otherwise (P1); a reason string
    when neither may go."""
    window_open = lead.last_inbound_at is not None and now < lead.last_inbound_at + timedelta(
        hours=WINDOW_HOURS
    )
    if step.text is not None and (window_open or step.template is None):
        if not window_open:
            return "P1: the 24-hour window is closed and the step has no template"
        text = render_template(step.text, lead.variables, field="text").strip()
        if not text:
            return "the text rendered empty for this contact"
        return SendWhatsAppMessage({"type": "text", "text": {"body": text}}, step.purpose)
    assert step.template is not None
    template: dict[str, Any] = {
        "name": step.template.name,
        "language": {"code": step.template.language},
    }
    if step.template.components:
        flat = dict(lead.variables.get("contact", {}))
        flat.update(flat.pop("fields", {}) or {})
        template["components"] = personalise(list(step.template.components), flat)
    return SendWhatsAppMessage({"type": "template", "template": template}, step.purpose)


def split_branch(enrollment_id: int, step: Split) -> int:
    """A stable pick by the percentages: the same enrollment always takes the same branch."""
    digest = hashlib.blake2b(f"{enrollment_id}:{step.id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest) % 100
    total = 0
    for index, branch in enumerate(step.branches):
        total += branch.percent
        if point < total:
            return index
    return len(step.branches) - 1


def branch_label(step: Split, index: int) -> str:
    """How a step run names the branch taken (its statistics and the winner read it back)."""
    return step.branches[index].name or f"branch {index + 1}"


@dataclass(frozen=True)
class BranchResult:
    entered: int
    succeeded: int  # by the split's metric

    @property
    def rate(self) -> float:
        return self.succeeded / self.entered if self.entered else 0.0


def choose_winner(step: Split, results: Mapping[int, BranchResult]) -> int | None:
    """The branch with the best rate of the split's metric; on a tie, the earlier branch.
    None while some branch has had nobody to judge it by."""
    if len(results) < len(step.branches) or any(r.entered == 0 for r in results.values()):
        return None
    return max(range(len(step.branches)), key=lambda i: (results[i].rate, -i))


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leave:
    reason: str


@dataclass(frozen=True)
class JumpToGoal:
    goal_id: str
    at: datetime


@dataclass(frozen=True)
class Wake:
    pass


Reaction = Leave | JumpToGoal | Wake


def react(
    definition: SequenceDefinition,
    step_id: str,
    event: Event,
    *,
    reached_goals: frozenset[str] = frozenset(),
) -> Reaction | None:
    """What ``event`` does to an enrollment waiting at ``step_id``: leave (a reply or a chosen
    event, as HubSpot), jump to a goal not reached yet (as ActiveCampaign), or end a wait for
    that event. None when it does nothing."""
    settings = definition.settings
    if settings.exit_on_reply and event.type == "message.received":
        return Leave("the contact replied")
    for matcher in settings.exit_on:
        if matcher.matches(event.type, event.properties):
            return Leave(f"event {event.type}")
    for goal in definition.goals():
        if (
            goal.id != step_id
            and goal.id not in reached_goals
            and goal.when.matches(event.type, event.properties)
        ):
            return JumpToGoal(goal.id, event.occurred_at)
    step = definition.step(step_id)
    if (
        isinstance(step, Wait)
        and step.until_event is not None
        and step.until_event.matches(event.type, event.properties)
    ):
        return Wake()
    return None


def listens_to(definition: SequenceDefinition) -> set[str]:
    """The event types ``react`` may act on for this sequence."""
    types = {m.event for m in definition.settings.exit_on}
    types |= {g.when.event for g in definition.goals()}
    types |= {
        s.until_event.event for s in definition.steps if isinstance(s, Wait) and s.until_event
    }
    if definition.settings.exit_on_reply:
        types.add("message.received")
    return types


def trigger_matches(matchers: Sequence[EventMatcher], event: Event) -> bool:
    return any(m.matches(event.type, event.properties) for m in matchers)


@dataclass(frozen=True)
class Needs:
    """Which facts the steps of a sequence read, so a batch loads only those."""

    kinds: frozenset[str]
    event_types: frozenset[str]


def needs_of(definition: SequenceDefinition) -> Needs:
    found = definition.remember("needs", lambda: _needs_of(definition))
    assert isinstance(found, Needs)
    return found


def _needs_of(definition: SequenceDefinition) -> Needs:
    kinds: set[str] = set()
    types = set(listens_to(definition))
    for step in definition.steps:
        if isinstance(step, IfElse):
            kinds |= needs(step.if_)
            types |= _event_types(step.if_)
        if isinstance(step, SendWhatsApp) and step.text is not None:
            kinds.add("window")
    if types:
        kinds.add("events")
    return Needs(frozenset(kinds), frozenset(types))


def _event_types(condition: Any) -> set[str]:
    found: set[str] = set()
    data = condition.model_dump(by_alias=True) if hasattr(condition, "model_dump") else condition

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("event"), str):
                found.add(node["event"])
            if "clicked" in node:
                found.add("link.clicked")
            if "opened" in node and node.get("human"):
                found.add("email.opened")
            if "replied" in node:
                found.add("message.received")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return found


# --- local time ---------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def first_moment_in_window(at: datetime, window: Window, timezone: str) -> datetime:
    """``at`` if it falls inside the window (its weekdays, between start and end, local time),
    otherwise the window's next opening."""
    zone = zone_named(timezone)
    local_day = at.astimezone(zone).date()
    days = {WEEKDAYS.index(d) for d in window.days}
    wraps = window.end < window.start
    for offset in range(-1 if wraps else 0, 9):
        day = local_day + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens = local_moment(day, window.start, zone)
        closes = local_moment(day + timedelta(days=1) if wraps else day, window.end, zone)
        if at < closes:
            return max(at, opens)
    raise AssertionError("every window opens within a week")  # pragma: no cover


def next_weekly_time(at: datetime, until: WeeklyTime, timezone: str) -> datetime:
    """The first moment ≥ ``at`` on one of the weekdays at the local time."""
    zone = zone_named(timezone)
    local_day = at.astimezone(zone).date()
    days = {WEEKDAYS.index(d) for d in until.days}
    for offset in range(9):
        day = local_day + timedelta(days=offset)
        if day.weekday() in days:
            moment = local_moment(day, until.time, zone)
            if moment >= at:
                return moment
    raise AssertionError("a weekday recurs within a week")  # pragma: no cover
