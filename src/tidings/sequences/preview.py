"""Running a test lead through a sequence on a virtual clock (S7).

The preview uses the worker's own interpreter (``domain.advance`` and ``domain.react``) and the
sending policy (``decide_send``), so what it shows is what the lead would get: every message
with its time, every branch taken and why, deferrals by quiet hours or caps. The lead behaves
as told: ``"reads everything"``, ``"opens nothing"``, ``"clicks welcome"``, ``"replies offer"``,
``"orders on day 3"``, ``"event cart.abandoned on day 1"``, ``"tag vip on day 2"``. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tidings.conditions.domain import ContactFacts, Event, StepMessage, fold, tag_identity
from tidings.kernel.errors import invalid
from tidings.messaging.policy import (
    Decision,
    Defer,
    PastSend,
    Recipient,
    Skip,
    decide_send,
)
from tidings.sequences.definition import SequenceDefinition
from tidings.sequences.domain import (
    AddToScore,
    ChangeList,
    ChangeTag,
    Cursor,
    Decide,
    EmailText,
    EnrollInto,
    JumpToGoal,
    Lead,
    Leave,
    NotifyTeam,
    PostWebhook,
    SendEmailMessage,
    SendWhatsAppMessage,
    SetContactField,
    StepRun,
    Wake,
    advance,
    outgoing_of,
    react,
)
from tidings.workspaces.domain import WorkspacePolicy

HORIZON = timedelta(days=365)
MAX_ENTRIES = 2_000
DELIVERED_AFTER = timedelta(minutes=1)
READ_AFTER = timedelta(minutes=5)
CLICKED_AFTER = timedelta(minutes=10)
REPLIED_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Behaviour:
    """What the test lead does: ``reads``/``clicks``/``replies`` to a step's message (``*``:
    every one), or an event on a day after enrollment."""

    action: str  # reads, clicks, replies, event, tag
    step: str | None = None
    event: str | None = None
    day: float | None = None


_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"(?:opens|reads|clicks) nothing"), lambda m: None),
    (re.compile(r"(?:reads|opens) (?:everything|all)"), lambda m: Behaviour("reads", "*")),
    (re.compile(r"(?:reads|opens) (?:step )?(\S+)"), lambda m: Behaviour("reads", m[1])),
    (re.compile(r"clicks (?:everything|all)"), lambda m: Behaviour("clicks", "*")),
    (re.compile(r"clicks (?:step )?(\S+)"), lambda m: Behaviour("clicks", m[1])),
    (re.compile(r"replies (?:to )?(?:everything|all)"), lambda m: Behaviour("replies", "*")),
    (re.compile(r"replies (?:to )?(?:step )?(\S+)"), lambda m: Behaviour("replies", m[1])),
    (
        re.compile(r"orders on day (\d+(?:\.\d+)?)"),
        lambda m: Behaviour("event", event="order.placed", day=float(m[1])),
    ),
    (
        re.compile(r"event (\S+) on day (\d+(?:\.\d+)?)"),
        lambda m: Behaviour("event", event=m[1], day=float(m[2])),
    ),
    (
        re.compile(r"tag (\S+) on day (\d+(?:\.\d+)?)"),
        lambda m: Behaviour("tag", step=m[1], day=float(m[2])),
    ),
)
BEHAVIOUR_HELP = (
    '"reads everything", "opens nothing", "reads <step>", "clicks <step>", "replies <step>", '
    '"orders on day N", "event <type> on day N", "tag <name> on day N"'
)


def parse_behaviours(texts: Sequence[str]) -> list[Behaviour]:
    """Raises ``TidingsError`` (422) naming ``behaviours[i]`` for words it cannot read."""
    found = []
    for index, text in enumerate(texts):
        words = " ".join(text.strip().lower().split())
        for pattern, build in _PATTERNS:
            match = pattern.fullmatch(words)
            if match:
                behaviour = build(match)
                if behaviour is not None:
                    found.append(behaviour)
                break
        else:
            raise invalid(
                "invalid_behaviour",
                f"{text!r} is not a behaviour; say one of {BEHAVIOUR_HELP}",
                field=f"behaviours[{index}]",
            )
    return found


@dataclass(frozen=True)
class Entry:
    """One line of the preview: what happened to the lead, when, at which step."""

    at: datetime
    step_id: str | None
    kind: str  # message, email, branch, action, wait, goal, exit, end, behaviour, skipped
    text: str


@dataclass(frozen=True)
class Preview:
    entries: tuple[Entry, ...]
    ended: str | None  # completed, converted, exited; None when still running at the horizon
    end_reason: str | None

    @property
    def messages(self) -> list[Entry]:
        return [e for e in self.entries if e.kind in ("message", "email")]


@dataclass
class _Lead:
    """The simulated contact: what the behaviours and the steps have done to it so far."""

    behaviours: list[Behaviour]
    start: datetime
    tags: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    fields: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    messages: dict[str, StepMessage] = field(default_factory=dict)
    history: list[PastSend] = field(default_factory=list)
    last_inbound_at: datetime | None = None
    reached_goals: set[str] = field(default_factory=set)

    def facts(self, now: datetime) -> ContactFacts:
        return ContactFacts(
            tags=frozenset(tag_identity(t) for t in self.tags),
            lists=frozenset(fold(x) for x in self.lists),
            fields=self.fields,
            events=tuple(e for e in self.events if e.occurred_at <= now),
            enrolled_at=self.start,
            step_messages=self.messages,
        )

    def does(self, action: str, step: str) -> bool:
        return any(b.action == action and b.step in (step, "*") for b in self.behaviours)


def preview(
    definition: SequenceDefinition,
    *,
    start: datetime,
    behaviours: Sequence[Behaviour] = (),
    contact: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
    policy: WorkspacePolicy | None = None,
    workspace_name: str = "",
    email_templates: Mapping[str, EmailText] | None = None,
) -> Preview:
    """Run one test lead from ``start`` until it leaves the sequence or a year has passed.

    The lead has consented to marketing and utility messages; it has never written to us
    unless a behaviour says it replies (so free-form text waits for a reply, P1)."""
    contact = dict(contact or {})
    lead = _Lead(list(behaviours), start, fields=dict(contact.get("fields") or {}))
    lead.tags |= set(contact.get("tags") or ())
    variables = {
        "contact": {**contact, "fields": lead.fields},
        "workspace": {"name": workspace_name},
    }
    # The workspace's stored templates, else those the file carries (a file not yet imported).
    templates = {
        t.name: EmailText(t.subject, t.html, t.text) for t in definition.email_templates
    } | dict(email_templates or {})
    entries: list[Entry] = []
    pending = sorted(_scheduled(lead), key=lambda e: e.occurred_at)
    cursor, now = Cursor(definition.entry, start), start
    while len(entries) < MAX_ENTRIES:
        facts = lead.facts(now)
        known = Lead(
            1,
            timezone,
            variables,
            facts,
            lead.last_inbound_at,
            frozenset(lead.reached_goals),
            templates,
        )
        moved = advance(definition, cursor, known, now=now, decide=_policy(lead, policy, timezone))
        for run in moved.runs:
            entries.extend(_apply(run, lead, pending))
        if moved.reached_goal is not None:
            lead.reached_goals.add(moved.reached_goal)
        if moved.ended is not None:
            last = max([now, *(e.at for e in entries)])
            text = f"{moved.ended}: {moved.end_reason}"
            entries.append(Entry(last, moved.cursor.step_id, "end", text))
            return Preview(tuple(entries), moved.ended, moved.end_reason)
        cursor = moved.cursor
        due = moved.due_at or now
        if due - start > HORIZON:
            break
        pending.sort(key=lambda e: e.occurred_at)
        event = next((e for e in pending if e.occurred_at <= due), None)
        if event is None:
            now = due
            continue
        pending.remove(event)
        now = max(now, event.occurred_at)
        _happen(event, lead, entries)
        reaction = react(
            definition, cursor.step_id, event, reached_goals=frozenset(lead.reached_goals)
        )
        if isinstance(reaction, Leave):
            entries.append(Entry(now, cursor.step_id, "end", f"exited: {reaction.reason}"))
            return Preview(tuple(entries), "exited", reaction.reason)
        if isinstance(reaction, JumpToGoal):
            cursor = Cursor(reaction.goal_id, reaction.at, cursor.visit)
            entries.append(Entry(now, reaction.goal_id, "goal", f"pulled forward by {event.type}"))
        elif isinstance(reaction, Wake):
            pass  # the wait sees the event on the next advance
    return Preview(tuple(entries), None, None)


def _scheduled(lead: _Lead) -> list[Event]:
    found = []
    for behaviour in lead.behaviours:
        if behaviour.day is None:
            continue
        at = lead.start + timedelta(days=behaviour.day)
        if behaviour.action == "tag":
            found.append(Event("tag.added", at, {"tag": behaviour.step}))
        else:
            found.append(Event(behaviour.event or "event", at, {}))
    return found


def _happen(event: Event, lead: _Lead, entries: list[Entry]) -> None:
    lead.events.append(event)
    if event.type == "tag.added":
        lead.tags.add(str(event.properties.get("tag")))
    if event.type == "message.received":
        lead.last_inbound_at = max(lead.last_inbound_at or event.occurred_at, event.occurred_at)
    words = {
        "message.received": "the lead replies",
        "link.clicked": "the lead clicks a link",
        "tag.added": f"tag {event.properties.get('tag')} is added",
    }.get(event.type, f"the lead does {event.type}")
    entries.append(Entry(event.occurred_at, None, "behaviour", words))


def _policy(lead: _Lead, policy: WorkspacePolicy | None, timezone: str) -> Decide | None:
    """The sending policy for the test lead, who has consented to everything."""
    if policy is None:
        return None
    consents = {
        (channel, purpose): "opted_in"
        for channel in ("whatsapp", "email")
        for purpose in ("marketing", "transactional")
    }

    def decide(effect: SendWhatsAppMessage | SendEmailMessage, at: datetime) -> Decision:
        outgoing = outgoing_of(effect)
        recipient = Recipient(
            consents=consents, timezone=timezone, last_inbound_at=lead.last_inbound_at
        )
        decision = decide_send(outgoing, recipient, lead.history, policy, at)
        if not isinstance(decision, Skip):
            goes = decision.until if isinstance(decision, Defer) else at
            lead.history.append(
                PastSend(
                    goes,
                    outgoing.channel,
                    outgoing.purpose,
                    outgoing.is_template,
                    outgoing.content_digest,
                )
            )
        return decision

    return decide


def _apply(run: StepRun, lead: _Lead, pending: list[Event]) -> list[Entry]:
    effect = run.effect
    if run.outcome == "skipped":
        return [Entry(run.at, run.step_id, "skipped", run.detail)]
    if run.outcome == "branch":
        return [Entry(run.at, run.step_id, "branch", f"took {run.detail}")]
    if run.outcome in ("converted", "passed"):
        return [Entry(run.at, run.step_id, "goal", run.detail)]
    if run.outcome == "waited":
        return [Entry(run.at, run.step_id, "wait", run.detail or "waited")]
    if run.outcome == "exited":
        return []
    if isinstance(effect, SendWhatsAppMessage):
        return _send(run, effect, lead, pending)
    if isinstance(effect, SendEmailMessage):
        return [Entry(run.at, run.step_id, "email", f"{effect.subject}")]
    return [Entry(run.at, run.step_id, "action", _describe(effect, lead))]


def _send(
    run: StepRun, effect: SendWhatsAppMessage, lead: _Lead, pending: list[Event]
) -> list[Entry]:
    at, note = run.at, ""
    if isinstance(run.decision, Defer):
        at, note = run.decision.until, f" (deferred: {run.decision.reason})"
    read = lead.does("reads", run.step_id)
    lead.messages[run.step_id] = StepMessage(
        sent_at=at, delivered_at=at + DELIVERED_AFTER, read_at=at + READ_AFTER if read else None
    )
    if lead.does("clicks", run.step_id):
        pending.append(Event("link.clicked", at + CLICKED_AFTER, {"step": run.step_id}))
    if lead.does("replies", run.step_id):
        pending.append(Event("message.received", at + REPLIED_AFTER, {}))
    return [Entry(at, run.step_id, "message", _words(effect.content) + note)]


def _words(content: Mapping[str, Any]) -> str:
    if content["type"] == "text":
        return str(content["text"]["body"])
    template = content["template"]
    values = [
        p.get("text", "")
        for c in template.get("components") or []
        for p in c.get("parameters") or []
        if isinstance(p, Mapping)
    ]
    shown = f" ({', '.join(v for v in values if v)})" if any(values) else ""
    return f"template {template['name']} [{template['language']['code']}]{shown}"


def _describe(effect: Any, lead: _Lead) -> str:
    if isinstance(effect, ChangeTag):
        (lead.tags.add if effect.add else lead.tags.discard)(effect.tag)
        return f"{'add' if effect.add else 'remove'} tag {effect.tag}"
    if isinstance(effect, ChangeList):
        (lead.lists.add if effect.add else lead.lists.discard)(effect.list_name)
        return f"{'join' if effect.add else 'leave'} list {effect.list_name}"
    if isinstance(effect, SetContactField):
        lead.fields[effect.field] = effect.value
        return f"set {effect.field} = {effect.value!r}"
    if isinstance(effect, AddToScore):
        lead.fields["score"] = int(lead.fields.get("score") or 0) + effect.by
        return f"score {effect.by:+d}"
    if isinstance(effect, NotifyTeam):
        task = f", task due {effect.task_due:%Y-%m-%d %H:%M}" if effect.task_due else ""
        return f"notify {effect.agent or 'the team'}: {effect.message}{task}"
    if isinstance(effect, PostWebhook):
        return f"call webhook {effect.url}"
    if isinstance(effect, EnrollInto):
        return f"enroll in sequence {effect.sequence!r}"
    return repr(replace(effect))  # pragma: no cover
