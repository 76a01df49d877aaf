"""The worker's part of sequences: advancing due enrollments, and reacting to the timeline.

``SequenceRunner`` claims a batch of due enrollments (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), loads what their steps need about the contacts in a few queries, runs the pure
interpreter for each, and writes the outcome set-based: messages (through the outgoing
pipeline's ``queue_planned``, with the sending policy's decision), one step-run row per step,
and the enrollments' new positions — all in the batch's one transaction. A crash loses the
batch whole and it is claimed again: a step neither runs twice nor is lost; the messages'
idempotency keys (``sequence:<enrollment>:<visit>``) make sure of it.

``SequenceEvents`` reads the contacts' timeline in id order from a stored position: triggers
enroll, goals pull forward, replies and chosen events end enrollments, waits for an event end,
and an opt-out from marketing ends marketing sequences (P5).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tidings.automation.facts import segment_keys_of
from tidings.channels import service as channels
from tidings.conditions.domain import ContactFacts, Event, StepMessage
from tidings.contacts import service as contacts
from tidings.db.base import among, bulk_insert, bulk_update, table_of
from tidings.mailing import service as mailing
from tidings.mailing.domain import RenderedEmail
from tidings.messaging import inbox
from tidings.messaging import planned as mass
from tidings.messaging import service as messaging
from tidings.messaging.domain import Origin, Purpose, summary_of
from tidings.messaging.policy import (
    Decision,
    Send,
    Skip,
    history_horizon,
)
from tidings.messaging.service import PolicyFacts
from tidings.scheduler import service as scheduler
from tidings.scheduler.orm import BackgroundJob
from tidings.sequences import service
from tidings.sequences.definition import SendEmail, SendWhatsApp, SequenceDefinition
from tidings.sequences.domain import (
    AddToScore,
    Advance,
    ChangeList,
    ChangeTag,
    Cursor,
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
    email_template_names,
    needs_of,
    outgoing_of,
    react,
)
from tidings.sequences.orm import (
    Enrollment,
    EventFeedPosition,
    SequenceRecord,
    SequenceVersion,
    StepRunRecord,
)
from tidings.webhooks import service as webhooks
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)
WEBHOOK_JOB = "sequence.webhook"
NO_NUMBER = "the workspace has no active WhatsApp number"
NO_EMAIL = "the workspace has no active e-mail sender"


def claim_due(
    session: Session, *, now: datetime, limit: int, enrollment_ids: list[int] | None = None
) -> Sequence[Any]:
    """Lock up to ``limit`` due enrollments of running sequences (of ``enrollment_ids`` when
    given), oldest due first; rows a concurrent worker holds are skipped, not waited for."""
    query = (
        select(
            Enrollment.id,
            Enrollment.workspace_id,
            Enrollment.sequence_id,
            Enrollment.version_id,
            Enrollment.contact_id,
            Enrollment.step_id,
            Enrollment.arrived_at,
            Enrollment.visit,
            Enrollment.reached_goals,
            Enrollment.enrolled_at,
        )
        .join(SequenceRecord, SequenceRecord.id == Enrollment.sequence_id)
        .where(
            Enrollment.status == service.RUNNING,
            Enrollment.due_at <= now,
            SequenceRecord.status == service.RUNNING,  # a paused sequence's contacts wait
        )
        .order_by(Enrollment.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Enrollment)
    )
    if enrollment_ids is not None:
        query = query.where(among(session, Enrollment.id, enrollment_ids))
    return session.execute(query).all()


@dataclass
class SequenceRunner:
    """Advances due enrollments, a batch per transaction."""

    name: str = "sequences"

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        claimed = claim_due(session, now=now, limit=limit)
        if claimed:
            advance_enrollments(session, claimed, now=now)
        return len(claimed)


@dataclass
class _Batch:
    """What one batch knows and what it has decided so far."""

    now: datetime
    definitions: dict[int, SequenceDefinition]
    winners: dict[int, dict[str, int]]
    profiles: dict[int, contacts.Profile]
    workspaces: dict[int, Workspace]
    policy_facts: PolicyFacts | None = None
    tags: dict[int, set[str]] = field(default_factory=dict)
    lists: dict[int, set[str]] = field(default_factory=dict)
    events: dict[int, list[Event]] = field(default_factory=dict)
    messages: dict[int, dict[str, StepMessage]] = field(default_factory=dict)
    inbound: dict[int, datetime] = field(default_factory=dict)
    whatsapp_ids: dict[int, str] = field(default_factory=dict)
    bounced: dict[int, dict[str, str]] = field(default_factory=dict)  # workspace → address
    email_templates: dict[int, dict[str, EmailText]] = field(default_factory=dict)
    consents: dict[int, dict[tuple[str, str], str]] = field(default_factory=dict)
    last_messages: dict[int, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    segments: dict[int, set[str]] = field(default_factory=dict)
    purchases: dict[int, datetime] = field(default_factory=dict)
    policies: dict[int, WorkspacePolicy] = field(default_factory=dict)


def advance_enrollments(session: Session, claimed: Sequence[Any], *, now: datetime) -> None:
    """Run the due steps of the claimed enrollments and write everything they caused."""
    batch = _load(session, claimed, now)
    outcomes: list[tuple[Any, Advance]] = []
    for row in claimed:
        definition = batch.definitions.get(row.version_id)
        if definition is None:
            continue
        outcomes.append((row, _advance_one(row, definition, batch)))
    message_ids = _queue_messages(session, batch, outcomes)
    _write_runs(session, outcomes, message_ids)
    _carry_out(session, batch, outcomes)
    _move(session, outcomes, now)


def _load(session: Session, claimed: Sequence[Any], now: datetime) -> _Batch:
    definitions = service.definitions_by_version(session, {r.version_id for r in claimed})
    contact_ids = sorted({r.contact_id for r in claimed})
    batch = _Batch(
        now=now,
        definitions=definitions,
        winners=_winners(session, list(definitions)),
        profiles=contacts.profiles(session, contact_ids),
        workspaces={
            w: ws
            for w in {r.workspace_id for r in claimed}
            if (ws := workspaces.get_workspace(session, w)) is not None
        },
    )
    kinds: set[str] = set()
    types: set[str] = set()
    sends = emails = False
    for definition in definitions.values():
        needs = needs_of(definition)
        kinds |= needs.kinds
        types |= needs.event_types
        sends = sends or any(isinstance(s, SendWhatsApp | SendEmail) for s in definition.steps)
        emails = emails or any(isinstance(s, SendEmail) for s in definition.steps)
    if "tags" in kinds:
        batch.tags = contacts.tag_names(session, contact_ids)
    if "lists" in kinds:
        batch.lists = contacts.list_names(session, contact_ids)
    if types:
        batch.events = contacts.events_of(session, contact_ids, types=types)
    if "messages" in kinds:
        batch.messages = _step_messages(session, [r.id for r in claimed])
    if "consents" in kinds:
        batch.consents = contacts.consents_of(session, contact_ids)
    if "last_messages" in kinds:
        batch.last_messages = messaging.last_messages_of_contacts(session, contact_ids)
    if "segments" in kinds:
        batch.segments = segment_keys_of(session, contact_ids)
    if any(_mentions_purchase(d) for d in definitions.values()):
        batch.purchases = contacts.last_purchases(session, contact_ids)
    if sends:
        horizon = max(history_horizon(workspaces.policy_for(w)) for w in batch.workspaces.values())
        batch.policy_facts = PolicyFacts.load(session, contact_ids, since=now - horizon)
        batch.inbound = (
            messaging.last_inbound_of_contacts(session, contact_ids) if "window" in kinds else {}
        )
        batch.whatsapp_ids = contacts.whatsapp_ids(
            session, [c for c in contact_ids if c in batch.profiles and not batch.profiles[c].phone]
        )
    if emails:
        for workspace_id in batch.workspaces:
            addresses = [
                p.email or "" for p in batch.profiles.values() if p.workspace_id == workspace_id
            ]
            batch.bounced[workspace_id] = mailing.suppressed(session, workspace_id, addresses)
        names = set().union(*(email_template_names(d) for d in definitions.values()))
        for workspace_id in batch.workspaces if names else ():
            batch.email_templates[workspace_id] = {
                name: EmailText(t.subject, t.html, t.text)
                for name, t in mailing.templates_named(session, workspace_id, names).items()
            }
    return batch


def _mentions_purchase(definition: SequenceDefinition) -> bool:
    """Whether a message of the sequence speaks of the last purchase (worth a query)."""
    found = definition.remember("mentions_purchase", lambda: "last_purchase" in repr(definition))
    return bool(found)


def _winners(session: Session, version_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(SequenceVersion.id, SequenceVersion.winners).where(
            among(session, SequenceVersion.id, version_ids)
        )
    )
    return {vid: {k: int(v) for k, v in (w or {}).items()} for vid, w in rows}


def _step_messages(
    session: Session, enrollment_ids: list[int]
) -> dict[int, dict[str, StepMessage]]:
    """The message each step sent to each enrollment (the latest visit of a step wins)."""
    rows = session.execute(
        select(StepRunRecord.enrollment_id, StepRunRecord.step_id, StepRunRecord.message_id)
        .where(
            among(session, StepRunRecord.enrollment_id, enrollment_ids),
            StepRunRecord.message_id.is_not(None),
        )
        .order_by(StepRunRecord.visit)
    ).all()
    moments = messaging.message_moments(session, [int(r.message_id) for r in rows])
    found: dict[int, dict[str, StepMessage]] = defaultdict(dict)
    for enrollment_id, step_id, message_id in rows:
        known = moments.get(message_id or 0)
        if known is not None:
            found[enrollment_id][step_id] = StepMessage(
                known.sent_at, known.delivered_at, known.read_at, message_id
            )
    return found


def _advance_one(row: Any, definition: SequenceDefinition, batch: _Batch) -> Advance:
    profile = batch.profiles.get(row.contact_id)
    workspace = batch.workspaces.get(row.workspace_id)
    if profile is None or workspace is None:
        cursor = Cursor(row.step_id, row.arrived_at, row.visit)
        return Advance((), cursor, None, ended="exited", end_reason="the contact was deleted")
    timezone = profile.timezone or workspace.timezone
    inbound_at, outbound_at = batch.last_messages.get(row.contact_id, (None, None))
    facts = ContactFacts(
        tags=frozenset(batch.tags.get(row.contact_id, ())),
        lists=frozenset(batch.lists.get(row.contact_id, ())),
        fields=profile.condition_fields(),
        events=batch.events.get(row.contact_id, ()),
        enrolled_at=row.enrolled_at,
        step_messages=batch.messages.get(row.id, {}),
        consents=batch.consents.get(row.contact_id, {}),
        last_inbound_at=inbound_at,
        last_outbound_at=outbound_at,
        segments=frozenset(batch.segments.get(row.contact_id, ())),
    )
    lead = Lead(
        enrollment_id=row.id,
        timezone=timezone,
        variables={
            "contact": profile.variables(
                now=batch.now,
                last_purchase_at=batch.purchases.get(row.contact_id),
                default_locale=workspace.locale,
            ),
            "workspace": {"name": workspace.name},
        },
        facts=facts,
        last_inbound_at=batch.inbound.get(row.contact_id),
        reached_goals=frozenset(g for g in row.reached_goals.split(",") if g),
        email_templates=batch.email_templates.get(row.workspace_id, {}),
    )
    return advance(
        definition,
        Cursor(row.step_id, row.arrived_at, row.visit),
        lead,
        now=batch.now,
        winners=batch.winners.get(row.version_id),
        decide=_decider(batch, workspace, row.contact_id, profile),
    )


def _decider(
    batch: _Batch, workspace: Workspace, contact_id: int, profile: contacts.Profile
) -> Any:
    policy = batch.policies.get(workspace.id)
    if policy is None:
        policy = batch.policies[workspace.id] = workspaces.policy_for(workspace)
    reachable = bool(profile.phone) or contact_id in batch.whatsapp_ids
    bounced = batch.bounced.get(workspace.id, {}).get((profile.email or "").lower())

    def decide(effect: SendWhatsAppMessage | SendEmailMessage, at: datetime) -> Decision:
        if isinstance(effect, SendEmailMessage):
            if not profile.email:
                return Skip("the contact has no e-mail address")
            if bounced is not None:
                return Skip(f"the address is undeliverable: {bounced}")
        elif not reachable:
            return Skip("the contact has no WhatsApp number or id")
        assert batch.policy_facts is not None
        outgoing = outgoing_of(effect)
        decision = batch.policy_facts.decide(
            outgoing,
            contact_id,
            last_inbound_at=batch.inbound.get(contact_id),
            policy=policy,
            default_timezone=workspace.timezone,
            now=at,
        )
        if not isinstance(decision, Skip):
            goes = at if isinstance(decision, Send) else decision.until
            batch.policy_facts.planned(contact_id, outgoing, goes)
        return decision

    return decide


def _key(enrollment_id: int, visit: int) -> str:
    return f"sequence:{enrollment_id}:{visit}"


def _queue_messages(
    session: Session, batch: _Batch, outcomes: list[tuple[Any, Advance]]
) -> dict[str, int]:
    """Queue every message of the batch through the outgoing pipeline; key → message id."""
    groups: dict[tuple[int, int, str], list[mass.Planned]] = defaultdict(list)
    mails: dict[tuple[int, int, str], list[mass.Planned]] = defaultdict(list)
    numbers: dict[tuple[int, int | None], int | None] = {}
    senders: dict[int, int | None] = {}
    for row, moved in outcomes:
        for run in moved.runs:
            if run.decision is None:
                continue
            profile = batch.profiles[row.contact_id]
            if isinstance(run.effect, SendEmailMessage):
                if row.workspace_id not in senders:
                    senders[row.workspace_id] = mailing.sending_sender_id(
                        session, workspace_id=row.workspace_id, sender_id=None
                    )
                sender_id = senders[row.workspace_id]
                if sender_id is None:
                    continue
                step = {"sequence_id": row.sequence_id, "step_id": run.step_id}
                content = RenderedEmail(
                    run.effect.subject, run.effect.html, run.effect.text, list(run.effect.links)
                ).content(step)
                mails[(row.workspace_id, sender_id, run.effect.purpose)].append(
                    mass.Planned(
                        contact_id=row.contact_id,
                        recipient=profile.email or "",
                        content=content,
                        summary=run.effect.subject,
                        content_digest=run.effect.digest,
                        idempotency_key=_key(row.id, run.visit),
                        decision=run.decision,
                        send_at=batch.now,
                    )
                )
                continue
            if not isinstance(run.effect, SendWhatsAppMessage):
                continue
            definition = batch.definitions[row.version_id]
            number_id = _number(session, batch, row.workspace_id, definition, numbers)
            if number_id is None:
                continue
            groups[(row.workspace_id, number_id, run.effect.purpose)].append(
                mass.Planned(
                    contact_id=row.contact_id,
                    recipient=profile.phone or batch.whatsapp_ids.get(row.contact_id, ""),
                    content=run.effect.content,
                    summary=summary_of(run.effect.content),
                    content_digest=run.effect.digest,
                    idempotency_key=_key(row.id, run.visit),
                    decision=run.decision,
                    send_at=batch.now,
                )
            )
    keys: dict[int, list[str]] = defaultdict(list)
    for (workspace_id, number_id, purpose), planned in groups.items():
        mass.queue_planned(
            session,
            workspace_id=workspace_id,
            number_id=number_id,
            origin=Origin.SEQUENCE,
            purpose=Purpose(purpose),
            broadcast_id=None,
            planned=planned,
            now=batch.now,
        )
        keys[workspace_id].extend(p.idempotency_key for p in planned)
    for (workspace_id, sender_id, purpose), planned in mails.items():
        mass.queue_planned(
            session,
            workspace_id=workspace_id,
            number_id=None,
            sender_id=sender_id,
            origin=Origin.SEQUENCE,
            purpose=Purpose(purpose),
            broadcast_id=None,
            planned=planned,
            now=batch.now,
        )
        keys[workspace_id].extend(p.idempotency_key for p in planned)
    found: dict[str, int] = {}
    for workspace_id, wanted in keys.items():
        found |= mass.message_ids_by_key(session, workspace_id=workspace_id, keys=wanted)
    return found


def _number(
    session: Session,
    batch: _Batch,
    workspace_id: int,
    definition: SequenceDefinition,
    numbers: dict[tuple[int, int | None], int | None],
) -> int | None:
    key = (workspace_id, definition.settings.number_id)
    if key not in numbers:
        numbers[key] = channels.sending_number_id(
            session, workspace_id=workspace_id, number_id=definition.settings.number_id
        )
    return numbers[key]


def _write_runs(
    session: Session, outcomes: list[tuple[Any, Advance]], message_ids: dict[str, int]
) -> None:
    rows = []
    for row, moved in outcomes:
        for run in moved.runs:
            outcome, detail = run.outcome, run.detail
            message_id = message_ids.get(_key(row.id, run.visit))
            if isinstance(run.effect, SendWhatsAppMessage) and run.decision is not None:
                if message_id is None:
                    outcome, detail = "skipped", NO_NUMBER
                elif outcome == "done":
                    outcome = "sent" if isinstance(run.decision, Send) else "deferred"
            elif isinstance(run.effect, SendEmailMessage) and run.decision is not None:
                if message_id is None:
                    outcome, detail = "skipped", NO_EMAIL
                elif outcome == "done":
                    outcome = "sent" if isinstance(run.decision, Send) else "deferred"
            rows.append(
                {
                    "workspace_id": row.workspace_id,
                    "enrollment_id": row.id,
                    "sequence_id": row.sequence_id,
                    "version_id": row.version_id,
                    "contact_id": row.contact_id,
                    "step_id": run.step_id,
                    "visit": run.visit,
                    "outcome": outcome,
                    "detail": detail[:300],
                    "message_id": message_id,
                    "at": run.at,
                }
            )
        if moved.ended is not None:
            rows.append(_end_row(row, moved))
    if rows:
        bulk_insert(session, table_of(StepRunRecord), rows, skip_conflicts=True)
        _announce_steps(session, rows, now=rows[-1]["at"])


def _announce_steps(session: Session, rows: list[dict[str, Any]], *, now: datetime) -> None:
    """``sequence.step`` for webhook subscribers (X1); nothing when nobody subscribed."""
    by_workspace: dict[int, list[webhooks.Announcement]] = {}
    listened: dict[int, bool] = {}
    for step in rows:
        workspace_id = step["workspace_id"]
        if workspace_id not in listened:
            listened[workspace_id] = webhooks.is_listened(
                session, workspace_id=workspace_id, event_type="sequence.step"
            )
        if not listened[workspace_id]:
            continue
        by_workspace.setdefault(workspace_id, []).append(
            webhooks.Announcement(
                "sequence.step",
                f"step_{step['enrollment_id']}_{step['visit']}_{step['step_id']}",
                step["at"],
                {
                    "step": {
                        key: step[key]
                        for key in (
                            "sequence_id",
                            "enrollment_id",
                            "contact_id",
                            "step_id",
                            "visit",
                            "outcome",
                            "detail",
                            "message_id",
                        )
                    }
                },
            )
        )
    for workspace_id, events in by_workspace.items():
        webhooks.publish_many(session, workspace_id=workspace_id, events=events, now=now)


def _end_row(row: Any, moved: Advance) -> dict[str, Any]:
    """The enrollment's leaving, as a run of its last step (for "exited" statistics)."""
    last = moved.runs[-1] if moved.runs else None
    return {
        "workspace_id": row.workspace_id,
        "enrollment_id": row.id,
        "sequence_id": row.sequence_id,
        "version_id": row.version_id,
        "contact_id": row.contact_id,
        "step_id": moved.cursor.step_id,
        "visit": moved.cursor.visit,
        "outcome": "left",
        "detail": f"{moved.ended}: {moved.end_reason}"[:300],
        "message_id": None,
        "at": last.at if last is not None else row.arrived_at,
    }


def _move(session: Session, outcomes: list[tuple[Any, Advance]], now: datetime) -> None:
    """Each enrollment's new place, in one statement for the batch."""
    values = []
    for row, moved in outcomes:
        goals = row.reached_goals
        if moved.reached_goal and moved.reached_goal not in goals.split(","):
            goals = ",".join(sorted({g for g in goals.split(",") if g} | {moved.reached_goal}))
        converted = moved.reached_goal is not None or moved.ended == "converted"
        values.append(
            {
                "id": row.id,
                "step_id": moved.cursor.step_id,
                "arrived_at": moved.cursor.arrived_at,
                "visit": moved.cursor.visit,
                "due_at": moved.due_at,
                "status": moved.ended or service.RUNNING,
                "ended_at": now if moved.ended else None,
                "end_reason": moved.end_reason,
                "reached_goals": goals[:1000],
                "converted_at": now if converted else None,
                "updated_at": now,
            }
        )
    bulk_update(session, table_of(Enrollment), values, keep_existing=("converted_at",))


# --- effects other than messages ----------------------------------------------------------------


def _carry_out(session: Session, batch: _Batch, outcomes: list[tuple[Any, Advance]]) -> None:
    """Tags, lists, fields, score, notes, webhooks, other sequences: few per batch next to
    messages, so each goes through its own service use case (and its timeline event)."""
    for row, moved in outcomes:
        effects = [run for run in moved.runs if run.effect is not None and run.outcome == "done"]
        effects = [
            r for r in effects if not isinstance(r.effect, SendWhatsAppMessage | SendEmailMessage)
        ]
        if not effects:
            continue
        workspace = batch.workspaces[row.workspace_id]
        source = f"sequence:{row.sequence_id}"
        for run in effects:
            try:
                with session.begin_nested():
                    _carry_out_one(session, workspace, row, run, source, batch)
            except Exception as error:  # one contact's bad data must not stop the batch
                log.warning("sequence %s step %s: %s", row.sequence_id, run.step_id, error)


def _carry_out_one(
    session: Session, workspace: Workspace, row: Any, run: StepRun, source: str, batch: _Batch
) -> None:
    effect, now = run.effect, batch.now
    contact = contacts.get_contact_or_404(session, workspace, row.contact_id)
    if isinstance(effect, ChangeTag):
        if effect.add:
            contacts.add_tags(
                session,
                workspace=workspace,
                contact=contact,
                names=[effect.tag],
                source=source,
                now=now,
            )
        else:
            contacts.remove_tag(
                session,
                workspace=workspace,
                contact=contact,
                name=effect.tag,
                source=source,
                now=now,
            )
    elif isinstance(effect, ChangeList):
        contacts.change_list_by_name(
            session,
            workspace=workspace,
            contact=contact,
            name=effect.list_name,
            join=effect.add,
            source=source,
            now=now,
        )
    elif isinstance(effect, SetContactField | AddToScore):
        data = (
            {"score": contact.score + effect.by}
            if isinstance(effect, AddToScore)
            else contacts.field_change(effect.field, effect.value)
        )
        contacts.update_contact(
            session, workspace=workspace, contact_id=contact.id, data=data, source=source, now=now
        )
    elif isinstance(effect, NotifyTeam):
        _notify(session, workspace, row, effect, batch, now)
    elif isinstance(effect, PostWebhook):
        scheduler.enqueue_job(
            session,
            kind=WEBHOOK_JOB,
            workspace_id=workspace.id,
            payload={
                "url": effect.url,
                "body": {
                    "event": "sequence.step",
                    "sequence_id": row.sequence_id,
                    "step_id": run.step_id,
                    "contact_id": row.contact_id,
                    "enrollment_id": row.id,
                    "payload": effect.payload,
                },
                # Where a failure is reported: the step shows failed, not done.
                "report": {"enrollment_id": row.id, "step_id": run.step_id, "visit": run.visit},
            },
            now=now,
            idempotency_key=f"{_key(row.id, run.visit)}:webhook",
            max_attempts=5,
        )
    elif isinstance(effect, EnrollInto):
        other = service.find_sequence(session, workspace, effect.sequence)
        if other is not None and other.status == service.RUNNING:
            service.enroll_contacts(
                session,
                workspace=workspace,
                sequence=other,
                contact_ids=[row.contact_id],
                source=source,
                now=now,
            )


def _notify(
    session: Session,
    workspace: Workspace,
    row: Any,
    effect: NotifyTeam,
    batch: _Batch,
    now: datetime,
) -> None:
    """A note on the contact's conversation, through the inbox's follow-up task."""
    definition = batch.definitions[row.version_id]
    number_id = channels.sending_number_id(
        session, workspace_id=workspace.id, number_id=definition.settings.number_id
    )
    if number_id is None:
        raise LookupError(NO_NUMBER)
    inbox.notify_team(
        session,
        workspace=workspace,
        number_id=number_id,
        contact_id=row.contact_id,
        message=effect.message,
        agent_email=effect.agent,
        due=effect.task_due,
        author_label="sequence",
        now=now,
    )


# --- the timeline feed --------------------------------------------------------------------------

FEED = "sequences"


@dataclass
class SequenceEvents:
    """Reads the contacts' timeline for triggers, goals, exits and event waits."""

    name: str = "sequence_events"

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        # Start at the present: events from before the engine ran must not fire triggers now.
        position = scheduler.feed_position(
            session,
            EventFeedPosition,
            FEED,
            start=lambda: contacts.latest_event_id(session),
            now=now,
        )
        rows = contacts.settled_events_after(
            session, position=position.position, now=now, limit=limit
        )
        if not rows:
            return 0
        react_to_events(session, rows, now=now)
        position.position, position.updated_at = rows[-1].id, now
        return len(rows)


def react_to_events(session: Session, rows: Sequence[Any], *, now: datetime) -> None:
    by_workspace: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_workspace[row.workspace_id].append(row)
    for workspace_id, events in by_workspace.items():
        workspace = workspaces.get_workspace(session, workspace_id)
        if workspace is None:
            continue
        running = _running_definitions(session, workspace)
        if not running:
            continue
        _trigger(session, workspace, running, events, now)
        _opt_outs(session, running, events, now)
        _react(session, events, now)


def _running_definitions(
    session: Session, workspace: Workspace
) -> list[tuple[SequenceRecord, SequenceDefinition]]:
    found = []
    for sequence in service.list_sequences(session, workspace):
        if sequence.status == service.RUNNING:
            found.append((sequence, service.definition_of(service.get_version(session, sequence))))
    return found


def _trigger(
    session: Session,
    workspace: Workspace,
    running: list[tuple[SequenceRecord, SequenceDefinition]],
    events: list[Any],
    now: datetime,
) -> None:
    for sequence, definition in running:
        if not definition.triggers:
            continue
        matched: dict[int, str] = {}
        for event in events:
            for matcher in definition.triggers:
                if matcher.matches(event.event_type, event.properties or {}):
                    matched.setdefault(event.contact_id, event.event_type)
        if matched:
            for event_type in set(matched.values()):
                service.enroll_contacts(
                    session,
                    workspace=workspace,
                    sequence=sequence,
                    contact_ids=[c for c, t in matched.items() if t == event_type],
                    source=f"trigger:{event_type}",
                    now=now,
                )


def _opt_outs(
    session: Session,
    running: list[tuple[SequenceRecord, SequenceDefinition]],
    events: list[Any],
    now: datetime,
) -> None:
    """P5: an enrollment ends, with the reason ``opted_out``, once its contact has opted out
    of every (channel, purpose) its sequence sends on — nothing it holds can go out any more.
    A WhatsApp marketing opt-out ends every sequence with WhatsApp marketing sends at once
    (the customer said stop to promotions: the rest of a campaign is not what they want)."""
    opted_at: dict[int, datetime] = {}  # each contact's latest opt-out in these events
    for e in events:
        if e.event_type == "consent.changed" and (e.properties or {}).get("status") == "opted_out":
            opted_at[e.contact_id] = max(e.occurred_at, opted_at.get(e.contact_id, e.occurred_at))
    opting_out = sorted(opted_at)
    if not opting_out:
        return
    states = contacts.consents_of(session, opting_out)
    for sequence, definition in running:
        sends = _consents_needed(definition)
        if not sends:
            continue
        promotes = ("whatsapp", "marketing") in sends
        ended = [
            contact_id
            for contact_id in opting_out
            if all(states.get(contact_id, {}).get(pair) == "opted_out" for pair in sends)
            or (
                promotes
                and states.get(contact_id, {}).get(("whatsapp", "marketing")) == "opted_out"
            )
        ]
        for contact_id in ended:  # enrollments from after the opt-out are not its business
            service.end_for_contacts(
                session,
                contact_ids=[contact_id],
                sequence_ids=[sequence.id],
                reason="opted_out: the contact opted out of the messages this sequence sends (P5)",
                now=now,
                enrolled_before=opted_at[contact_id],
            )


def _consents_needed(definition: SequenceDefinition) -> set[tuple[str, str]]:
    """The (channel, consent purpose) of each send step: marketing, or transactional for
    utility messages."""
    needed: set[tuple[str, str]] = set()
    for step in definition.steps:
        if isinstance(step, SendWhatsApp | SendEmail):
            channel = "whatsapp" if isinstance(step, SendWhatsApp) else "email"
            purpose = "marketing" if step.purpose == "marketing" else "transactional"
            needed.add((channel, purpose))
    return needed


def _react(session: Session, events: list[Any], now: datetime) -> None:
    contact_ids = sorted({e.contact_id for e in events})
    enrollments = session.scalars(
        select(Enrollment)
        .where(
            among(session, Enrollment.contact_id, contact_ids), Enrollment.status == service.RUNNING
        )
        .with_for_update(skip_locked=True)
    ).all()
    if not enrollments:
        return
    definitions = service.definitions_by_version(session, {e.version_id for e in enrollments})
    by_contact: dict[int, list[Enrollment]] = defaultdict(list)
    for enrollment in enrollments:
        by_contact[enrollment.contact_id].append(enrollment)
    for row in events:
        event = Event(row.event_type, row.occurred_at, row.properties or {})
        for enrollment in by_contact.get(row.contact_id, ()):
            definition = definitions.get(enrollment.version_id)
            if definition is None or enrollment.status != service.RUNNING:
                continue
            if event.occurred_at < enrollment.enrolled_at:
                continue  # from before this enrollment: not its business
            goals = frozenset(g for g in enrollment.reached_goals.split(",") if g)
            reaction = react(definition, enrollment.step_id, event, reached_goals=goals)
            _apply_reaction(enrollment, reaction, now)


def _apply_reaction(enrollment: Enrollment, reaction: Any, now: datetime) -> None:
    if isinstance(reaction, Leave):
        enrollment.status, enrollment.due_at = "exited", None
        enrollment.ended_at, enrollment.end_reason = now, reaction.reason[:300]
    elif isinstance(reaction, JumpToGoal):
        enrollment.step_id, enrollment.arrived_at = reaction.goal_id, reaction.at
        enrollment.due_at = now
    elif isinstance(reaction, Wake):
        enrollment.due_at = now
    else:
        return
    enrollment.updated_at = now


def webhook_gave_up(session: Session, job: BackgroundJob, now: datetime) -> None:
    """A sequence step's webhook was given up: the step shows as failed, with the reason."""
    report = job.payload.get("report") or {}
    reason = f"webhook to {job.payload.get('url')} failed: {job.last_error or 'no answer'}"
    session.execute(
        update(StepRunRecord)
        .where(
            StepRunRecord.enrollment_id == report.get("enrollment_id"),
            StepRunRecord.step_id == report.get("step_id"),
            StepRunRecord.visit == report.get("visit"),
        )
        .values(outcome="failed", detail=reason[:300])
        .execution_options(synchronize_session=False)
    )
