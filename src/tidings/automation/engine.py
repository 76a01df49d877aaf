"""The rules engine: reads the contacts' timeline in id order, turns customers' messages into
keyword detections, and runs the rules whose trigger an event fires (A1, A2).

For each fired rule and contact: the loop guard first (causation depth of the event, and the
rule's per-contact rate), then the condition on the contact's facts, then the actions, each
through its own package's use case — tags and lists through contacts, replies through the
outgoing pipeline (so the sending policy applies), enrollments through sequences. Every
evaluation leaves a ``rule_runs`` row saying what happened and why. Events the actions write
carry the depth + 1, so rules triggering rules stop at ``MAX_DEPTH``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.automation import service
from tidings.automation.answers import (
    ORDER_EVENTS,
    language_for,
    latest_order,
    locale_of_country,
    nearest,
    order_answer,
    store_answer,
    text_in,
)
from tidings.automation.domain import (
    AddScore,
    Answer,
    Assign,
    ChangeList,
    ChangeTag,
    Enrollment,
    Notify,
    OnSchedule,
    Reply,
    RuleDefinition,
    SetField,
    Webhook,
    fires,
    guard_verdict,
    next_run,
)
from tidings.automation.facts import gather_facts, sources_for
from tidings.automation.intents import Detection, built_in_detector
from tidings.automation.language import KeywordIndex, streaks
from tidings.automation.orm import Rule, RuleFeedPosition, RuleRun
from tidings.automation.products import Catalogue, wants_to_buy
from tidings.automation.scoring import (
    Interactions,
    SentimentLexicon,
    activity_score,
    churn_risk,
)
from tidings.channels import service as channels
from tidings.conditions.domain import (
    INTENT_EVENT,
    KEYWORD_EVENT,
    Event,
    evaluate,
    event_types,
    fold,
    needs,
    tag_identity,
)
from tidings.contacts import service as contacts
from tidings.db.base import among, bulk_insert, table_of
from tidings.kernel.templating import render_template
from tidings.messaging import inbox
from tidings.messaging import service as messaging
from tidings.messaging.domain import Origin, Purpose
from tidings.scheduler import service as scheduler
from tidings.scheduler.orm import BackgroundJob
from tidings.sequences import service as sequences
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

log = logging.getLogger(__name__)

FEED = "rules"
WEBHOOK_JOB = "rule.webhook"
OFFER_EVENT = "offer.sent"  # on the contact's timeline: which offer, by which rule


@dataclass
class RulesEngine:
    """Work source of the worker: one batch of timeline events per call."""

    name: str = "rules"

    def run_batch(self, session: Session, *, now: datetime, limit: int) -> int:
        position = scheduler.feed_position(
            session,
            RuleFeedPosition,
            FEED,
            start=lambda: contacts.latest_event_id(session),
            now=now,
        )
        rows = contacts.settled_events_after(
            session, position=position.position, now=now, limit=limit
        )
        if not rows:
            return 0
        react(session, rows, now=now)
        position.position, position.updated_at = rows[-1].id, now
        return len(rows)


@dataclass
class _Workspace:
    workspace: Workspace
    rules: list[tuple[Rule, RuleDefinition]]
    keywords: KeywordIndex | None = None
    products: Catalogue | None = None
    detections: int = field(default=0)


def react(session: Session, rows: Sequence[Any], *, now: datetime) -> None:
    by_workspace: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_workspace[row.workspace_id].append(row)
    for workspace_id, events in by_workspace.items():
        workspace = workspaces.get_workspace(session, workspace_id)
        if workspace is None:
            continue
        known = _Workspace(workspace, _enabled_rules(session, workspace))
        ledger = _Ledger.load(session, known, events, now)
        said = _Messages.read(session, events, now)
        held = contacts.hold_contacts(session, workspace, {e.contact_id for e in events})
        touched: set[int] = set()
        for event in events:
            mark = len(ledger.runs)
            try:
                # One event's trouble (a contact deleted meanwhile, bad data) must neither
                # stop the batch for ever nor leave half of its work written.
                with session.begin_nested():
                    _react_to(session, known, event, now, ledger, said, touched)
            except Exception:
                log.exception("rules: event %s could not be handled; moving on", event.id)
                del ledger.runs[mark:]  # its traces go with the work they described
                ledger.forget(event.contact_id)
        ledger.write(session)
        del held  # kept until here so the actions find the contacts without a query each
        if touched:
            service.refresh_contacts(session, workspace, sorted(touched), now=now)


def _react_to(
    session: Session,
    known: _Workspace,
    event: Any,
    now: datetime,
    ledger: _Ledger,
    said: _Messages,
    touched: set[int],
) -> None:
    if event.event_type == "message.received":
        _detect_keywords(session, known, event, now)
        intent = _detect_intent(session, known, event, said)
        _detect_products(session, known, event, intent)
        _score_activity(session, known, event, intent, now, said)
        ledger.forget(event.contact_id)
    for rule, definition in known.rules:
        if fires(definition.trigger, event.event_type, event.properties or {}):
            touched.add(event.contact_id)
            _run_rule(session, known.workspace, rule, definition, event, now, ledger)


@dataclass
class _Ledger:
    """What one batch knows about its contacts' rule history and facts, so that a hundred
    rules do not ask the database a hundred times per event; runs are written at the end in
    one statement."""

    firings: dict[tuple[int, int], list[datetime]]
    kinds: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[int, Any] = field(default_factory=dict)
    stale: set[int] = field(default_factory=set)

    @classmethod
    def load(
        cls, session: Session, known: _Workspace, events: Sequence[Any], now: datetime
    ) -> _Ledger:
        if not known.rules:
            return cls({})
        kinds: set[str] = set()
        types: set[str] = set()
        for _, definition in known.rules:
            if definition.condition is not None:
                kinds |= needs(definition.condition)
                types |= event_types(definition.condition)
        longest = max(definition.guard.per for _, definition in known.rules)
        contact_ids = sorted({e.contact_id for e in events})
        rows = session.execute(
            select(RuleRun.rule_id, RuleRun.contact_id, RuleRun.created_at).where(
                among(session, RuleRun.contact_id, contact_ids),
                RuleRun.status == "fired",
                RuleRun.created_at > now - longest,
            )
        )
        firings: dict[tuple[int, int], list[datetime]] = defaultdict(list)
        for rule_id, contact_id, at in rows:
            firings[(rule_id, contact_id)].append(at)
        ledger = cls(firings, kinds, types)
        ledger.stale.update(contact_ids)  # read together on first need, below
        return ledger

    def recent(self, rule_id: int, contact_id: int, since: datetime) -> int:
        return sum(1 for at in self.firings.get((rule_id, contact_id), ()) if at > since)

    def fired(self, rule_id: int, contact_id: int, at: datetime) -> None:
        self.firings.setdefault((rule_id, contact_id), []).append(at)

    def facts_for(self, session: Session, contact_id: int) -> Any:
        """What every rule's condition may read about the contact; the contacts whose facts
        are stale are read again together."""
        if contact_id in self.stale:
            wanted = sorted(self.stale)
            self.facts.update(dict.fromkeys(wanted))
            self.facts.update(gather_facts(session, wanted, self.kinds, self.types))
            self.stale.clear()
        return self.facts.get(contact_id)

    def forget(self, contact_id: int) -> None:
        """The contact changed (an action ran, a message came): its facts must be read again."""
        self.stale.add(contact_id)

    def applied(self, contact_id: int, action: Any) -> None:
        """Keep the contact's known facts true after an action, without reading them again
        when the action's effect is plain (a tag, a list, the score). A field is read again:
        storing it may convert the value (a number field keeps "5" as 5.0)."""
        known = self.facts.get(contact_id)
        if known is None or contact_id in self.stale:
            return
        match action:
            case ChangeTag():
                tags = set(known.tags)
                key = tag_identity(action.tag)
                (tags.add if action.do == "add_tag" else tags.discard)(key)
                self.facts[contact_id] = replace(known, tags=frozenset(tags))
            case ChangeList():
                lists = set(known.lists)
                (lists.add if action.do == "join_list" else lists.discard)(fold(action.list))
                self.facts[contact_id] = replace(known, lists=frozenset(lists))
            case AddScore():
                score = int(known.fields.get("score") or 0) + action.by
                self.facts[contact_id] = replace(known, fields={**known.fields, "score": score})
            case _:
                self.forget(contact_id)

    def write(self, session: Session) -> None:
        if self.runs:
            bulk_insert(session, table_of(RuleRun), self.runs)
            self.runs = []


def _enabled_rules(session: Session, workspace: Workspace) -> list[tuple[Rule, RuleDefinition]]:
    found = []
    for rule in service.list_rules(session, workspace):
        if rule.enabled:
            found.append((rule, RuleDefinition.model_validate(rule.definition)))
    return found


# --- keywords -----------------------------------------------------------------------------------


def _detect_keywords(session: Session, known: _Workspace, event: Any, now: datetime) -> None:
    """Record ``keyword.detected`` for each keyword group the message contains, with how many
    of the contact's messages in a row contained it (``streak``)."""
    text = (event.properties or {}).get("text")
    if not isinstance(text, str) or not text.strip():
        return
    if known.keywords is None:
        known.keywords = service.keyword_index(session, known.workspace.id)
    found = known.keywords.found_in(text)
    if not found:
        return
    previous = _previous_streaks(session, event)
    for name, streak in streaks([previous], found).items():
        contacts.log_event(
            session,
            known.workspace,
            event.contact_id,
            KEYWORD_EVENT,
            event.occurred_at,
            {"keyword": name, "streak": streak, "message_event_id": event.id},
            "keywords",
        )


def _previous_streaks(session: Session, event: Any) -> dict[str, int]:
    """The keyword streaks of the contact's message before this one (none if it had none)."""
    earlier = contacts.events_before(
        session,
        event.contact_id,
        types={"message.received", KEYWORD_EVENT},
        before_id=event.id,
        limit=200,
    )
    previous_message = next((e for e in earlier if e.event_type == "message.received"), None)
    if previous_message is None:
        return {}
    return {
        str(e.properties.get("keyword")): int(e.properties.get("streak") or 0)
        for e in earlier
        if e.event_type == KEYWORD_EVENT
        and (e.properties or {}).get("message_event_id") == previous_message.id
    }


def _text_of(event: Any) -> str | None:
    text = (event.properties or {}).get("text")
    return text if isinstance(text, str) and text.strip() else None


@dataclass
class _Messages:
    """What one batch's customer messages say, worked out together before any rule runs: the
    intent of each (one call to the learned model for all of them) and each sender's recent
    history and standing for activity scoring (one query each for all the senders), kept true
    in memory as the batch goes on."""

    intents: dict[int, Detection]
    history: dict[int, list[Event]]
    sentiment: dict[int, float | None]
    at_risk: dict[int, bool]

    @classmethod
    def read(cls, session: Session, events: Sequence[Any], now: datetime) -> _Messages:
        messages = [
            e for e in events if e.event_type == "message.received" and _text_of(e) is not None
        ]
        if not messages:
            return cls({}, {}, {}, {})
        detections = built_in_detector().detect_many([_text_of(e) for e in messages])
        senders = sorted({int(e.contact_id) for e in messages})
        history = contacts.events_of(
            session, senders, types={"message.received", INTENT_EVENT}, since=now - HISTORY
        )
        standing = contacts.profiles(session, senders)
        return cls(
            {e.id: d for e, d in zip(messages, detections, strict=True)},
            history,
            {contact_id: p.sentiment for contact_id, p in standing.items()},
            {contact_id: bool(p.churn_risk) for contact_id, p in standing.items()},
        )


HISTORY = timedelta(days=28)  # the activity score and churn risk look four weeks back


def _detect_intent(session: Session, known: _Workspace, event: Any, said: _Messages) -> str | None:
    """Record ``intent.detected`` when the message is understood as a built-in intent."""
    found = said.intents.get(event.id)
    if found is None or found.intent is None:
        return None
    contacts.log_event(
        session,
        known.workspace,
        event.contact_id,
        INTENT_EVENT,
        event.occurred_at,
        {
            "intent": found.intent,
            "score": found.score,
            "cues": list(found.cues)[:10],
            "message_event_id": event.id,
        },
        "intents",
    )
    return found.intent


def _detect_products(session: Session, known: _Workspace, event: Any, intent: str | None) -> None:
    """Record ``product.mentioned`` when the message names catalogue products, and
    ``order.intent`` when it also says the customer wants to buy (X1)."""
    text = _text_of(event)
    if text is None:
        return
    if known.products is None:
        known.products = service.catalogue(session, known.workspace.id)
    skus = known.products.mentioned(text)
    if not skus:
        return
    named = [{"sku": sku, "name": known.products.names[sku]} for sku in skus]
    common = {"products": named, "text": text[:1000], "message_event_id": event.id}
    contacts.log_event(
        session,
        known.workspace,
        event.contact_id,
        PRODUCT_EVENT,
        event.occurred_at,
        {"skus": skus, **common},
        "products",
    )
    if wants_to_buy(text, intent):
        contacts.log_event(
            session,
            known.workspace,
            event.contact_id,
            PURCHASE_EVENT,
            event.occurred_at,
            {"sku": skus[0], "product": named[0]["name"], **common},
            "products",
        )


PRODUCT_EVENT = "product.mentioned"
PURCHASE_EVENT = "order.intent"
ENQUIRY_INTENTS = frozenset({"price"})


@cache
def _lexicon() -> SentimentLexicon:
    return SentimentLexicon.built_in()


def _score_activity(
    session: Session,
    known: _Workspace,
    event: Any,
    intent: str | None,
    now: datetime,
    said: _Messages,
) -> None:
    """Update the contact's activity score, sentiment and churn risk after a message (A7);
    a newly raised risk goes on the timeline as ``churn.risk_raised`` for rules to answer."""
    contact_id = int(event.contact_id)
    if contact_id not in said.at_risk:
        return  # the contact was deleted since
    history = said.history.setdefault(contact_id, [])
    if intent is not None:  # detected in this batch: later messages of the batch count it
        history.append(Event(INTENT_EVENT, event.occurred_at, {"intent": intent}))
    messages = [e.occurred_at for e in history if e.type == "message.received"]
    enquiries = [
        e.occurred_at
        for e in history
        if e.type == INTENT_EVENT and e.properties.get("intent") in ENQUIRY_INTENTS
    ]
    text = _text_of(event)
    sentiment = _lexicon().score(text) if text is not None else None
    latest = sentiment if sentiment is not None else said.sentiment[contact_id]
    interactions = Interactions(messages, enquiries)
    risk = churn_risk(interactions, latest, now)
    contacts.set_activity(
        session,
        contact_id,
        activity_score=activity_score(interactions, now),
        sentiment=sentiment,
        churn_risk=risk,
    )
    was_at_risk = said.at_risk[contact_id]
    said.sentiment[contact_id], said.at_risk[contact_id] = latest, risk
    if risk and not was_at_risk:
        contacts.log_event(
            session,
            known.workspace,
            contact_id,
            "churn.risk_raised",
            now,
            {
                "sentiment": latest,
                "messages_last_7_days": sum(1 for t in messages if t > now - timedelta(days=7)),
            },
            "scoring",
        )


# --- one rule for one contact -------------------------------------------------------------------


def _run_rule(
    session: Session,
    workspace: Workspace,
    rule: Rule,
    definition: RuleDefinition,
    event: Any,
    now: datetime,
    ledger: _Ledger,
) -> None:
    depth = int(getattr(event, "depth", 0) or 0)
    contact_id = int(event.contact_id)
    run: dict[str, Any] = {
        "workspace_id": workspace.id,
        "rule_id": rule.id,
        "contact_id": contact_id,
        "event_id": event.id,
        "depth": depth,
        "created_at": now,
        "actions_done": {},
        "reason": "",
    }
    verdict = guard_verdict(
        definition.guard,
        depth=depth,
        recent_firings=ledger.recent(rule.id, contact_id, now - definition.guard.per),
    )
    if not verdict.allowed:
        ledger.runs.append(run | {"status": "skipped", "reason": verdict.reason})
        return
    if definition.condition is not None:
        facts = ledger.facts_for(session, contact_id)
        if facts is None:
            return  # the contact was deleted since
        if not evaluate(definition.condition, facts, now):
            reason = _why_not(definition.condition, facts, now)[:500]
            ledger.runs.append(run | {"status": "not_matched", "reason": reason})
            return
    done: list[str] = []
    failed: list[str] = []
    with contacts.caused_at_depth(depth + 1):
        for index, action in enumerate(definition.actions):
            try:
                with session.begin_nested():
                    note = _act(session, workspace, rule, action, event, now)
                done.append(f"{index}:{action.do}{note}")
                ledger.applied(contact_id, action)
            except Exception as error:  # one action's failure must not undo the others
                failed.append(f"{index}:{action.do}: {error}"[:300])
                log.info("rule %s action %s failed: %s", rule.id, index, error)
                ledger.forget(contact_id)
    status = "failed" if failed and not done else "fired"
    if status == "fired":
        ledger.fired(rule.id, contact_id, now)
    cause = event.event_type if event.id is None else f"{event.event_type} #{event.id}"
    reason = ("; ".join(failed))[:500] if failed else cause
    ledger.runs.append(
        run | {"status": status, "reason": reason, "actions_done": {"done": done, "failed": failed}}
    )


def _why_not(condition: Any, facts: Any, now: datetime) -> str:
    from tidings.automation.domain import failing_part

    return failing_part(condition, lambda part: evaluate(part, facts, now))


# --- actions ------------------------------------------------------------------------------------


def _act(
    session: Session, workspace: Workspace, rule: Rule, action: Any, event: Any, now: datetime
) -> str:
    """Carry out one action; returns a short note for the trace (what was sent …)."""
    source = f"rule:{rule.id}"
    contact_id = int(event.contact_id)
    needs_contact = isinstance(action, ChangeTag | ChangeList | AddScore)
    contact = contacts.get_contact_or_404(session, workspace, contact_id) if needs_contact else None
    match action:
        case ChangeTag():
            assert contact is not None
            if action.do == "add_tag":
                contacts.add_tags(
                    session,
                    workspace=workspace,
                    contact=contact,
                    names=[action.tag],
                    source=source,
                    now=now,
                )
            else:
                contacts.remove_tag(
                    session,
                    workspace=workspace,
                    contact=contact,
                    name=action.tag,
                    source=source,
                    now=now,
                )
        case ChangeList():
            assert contact is not None
            contacts.change_list_by_name(
                session,
                workspace=workspace,
                contact=contact,
                name=action.list,
                join=action.do == "join_list",
                source=source,
                now=now,
            )
        case SetField():
            contacts.update_contact(
                session,
                workspace=workspace,
                contact_id=contact_id,
                data=contacts.field_change(action.field, action.value),
                source=source,
                now=now,
            )
        case AddScore():
            assert contact is not None
            contacts.update_contact(
                session,
                workspace=workspace,
                contact_id=contact_id,
                data={"score": contact.score + action.by},
                source=source,
                now=now,
            )
        case Assign():
            return _assign(session, workspace, contact_id, action, event, now)
        case Reply():
            return _reply(session, workspace, rule, action, event, now)
        case Enrollment():
            sequence = sequences.find_sequence(session, workspace, action.sequence)
            if sequence is None:
                raise LookupError(f"no sequence {action.sequence!r}")
            if action.do == "enroll":
                sequences.enroll_contacts(
                    session,
                    workspace=workspace,
                    sequence=sequence,
                    contact_ids=[contact_id],
                    source=source,
                    now=now,
                )
            else:
                sequences.unenroll_contact(
                    session,
                    workspace=workspace,
                    sequence=sequence,
                    contact_id=contact_id,
                    reason=f"rule {rule.name!r}",
                    now=now,
                )
        case Notify():
            number_id = _number_of(session, workspace, event)
            inbox.notify_team(
                session,
                workspace=workspace,
                number_id=number_id,
                contact_id=contact_id,
                message=action.message,
                agent_email=action.agent,
                due=now + action.due_in if action.due_in is not None else None,
                author_label=f"rule {rule.name}",
                now=now,
            )
        case Answer():
            return _answer(session, workspace, rule, action, event, now)
        case Webhook():
            scheduler.enqueue_job(
                session,
                kind=WEBHOOK_JOB,
                workspace_id=workspace.id,
                payload={
                    "url": action.url,
                    "body": {
                        "event": "rule.fired",
                        "rule_id": rule.id,
                        "rule": rule.name,
                        "contact_id": contact_id,
                        "trigger_event": {"id": event.id, "type": event.event_type},
                        "payload": action.payload,
                    },
                    # Where a failure is reported: this run shows failed, not fired.
                    "report": {"rule_id": rule.id, "contact_id": contact_id, "event_id": event.id},
                },
                now=now,
                idempotency_key=f"rule:{rule.id}:{event.id}:webhook:{action.url}"[:200],
                max_attempts=4,
            )
    return ""


def _number_of(session: Session, workspace: Workspace, event: Any) -> int:
    wanted = (event.properties or {}).get("number_id")
    number_id = channels.sending_number_id(
        session, workspace_id=workspace.id, number_id=wanted if isinstance(wanted, int) else None
    )
    if number_id is None:
        raise LookupError("the workspace has no active WhatsApp number")
    return number_id


def _assign(
    session: Session,
    workspace: Workspace,
    contact_id: int,
    action: Assign,
    event: Any,
    now: datetime,
) -> str:
    conversation = inbox.ensure_conversation(
        session,
        workspace_id=workspace.id,
        number_id=_number_of(session, workspace, event),
        contact_id=contact_id,
        now=now,
    )
    changes: dict[str, Any] = {}
    if action.agent:
        agent = workspaces.find_user_by_email(session, workspace, action.agent)
        if agent is None:
            raise LookupError(f"no agent {action.agent!r}")
        changes["assignee_id"] = agent.id
    if action.team:
        team = workspaces.find_team(session, workspace, action.team)
        if team is None:
            raise LookupError(f"no team {action.team!r}")
        changes["team_id"] = team.id
    inbox.assign(
        session, workspace=workspace, conversation_id=conversation.id, changes=changes, now=now
    )
    return ""


def _variables(
    session: Session,
    workspace: Workspace,
    profile: contacts.Profile,
    source: str,
    event: Any,
    now: datetime,
) -> dict[str, Any]:
    """What a reply's text (``source``) may say (A6): ``contact.*`` (with
    ``last_purchase_ago`` in the contact's language), ``workspace.name``, and ``store.*`` —
    the store nearest to the customer, when the text speaks of it and we know where they
    are."""
    last = None
    if "last_purchase" in source:
        last = contacts.last_purchases(session, [profile.id]).get(profile.id)
    found: dict[str, Any] = {
        "contact": profile.variables(
            now=now, last_purchase_at=last, default_locale=workspace.locale
        ),
        "workspace": {"name": workspace.name},
    }
    if "store" in source:
        place = _place_of(_message_of(session, event), profile.custom_fields)
        best = nearest(service.store_infos(session, workspace.id), place) if place else None
        if best is not None:
            store, km = best
            found["store"] = {
                "name": store.name,
                "address": store.address,
                "distance_km": round(km, 1),
                "phone": store.phone or "",
                "map_url": store.map_url or "",
            }
    return found


def _reply(
    session: Session, workspace: Workspace, rule: Rule, action: Reply, event: Any, now: datetime
) -> str:
    number_id = _number_of(session, workspace, event)
    contact_id = int(event.contact_id)
    if action.offer is not None:
        made = contacts.events_of(
            session, [contact_id], types={OFFER_EVENT}, since=now - action.offer_every
        ).get(contact_id, [])
        earlier = [e for e in made if (e.properties or {}).get("offer") == action.offer]
        if earlier:
            return (
                f" → not sent: offer {action.offer} was made "
                f"{earlier[-1].occurred_at:%Y-%m-%d} (once per {action.offer_every})"
            )
    profile = contacts.profiles(session, [contact_id])[contact_id]
    text = action.text
    if text is not None and action.translations:
        language = language_for(
            _message_of(session, event).get("text") or _latest_text(session, event),
            profile.locale or locale_of_country(profile.country) or workspace.locale,
        )
        text = text_in(language, text, action.translations)
    source = text or " ".join(action.template.parameters if action.template else ())
    variables = _variables(session, workspace, profile, source, event, now)
    if action.template is not None:
        parameters = [
            {"type": "text", "text": render_template(p, variables, field="template.parameters")}
            for p in action.template.parameters
        ]
        template: dict[str, Any] = {
            "name": action.template.name,
            "language": {"code": action.template.language},
        }
        if parameters:
            template["components"] = [{"type": "body", "parameters": parameters}]
        content: dict[str, Any] = {"type": "template", "template": template}
    else:
        if action.quick_reply is not None:
            conversation = inbox.ensure_conversation(
                session,
                workspace_id=workspace.id,
                number_id=number_id,
                contact_id=contact_id,
                now=now,
            )
            body = inbox.render_quick_reply(
                session,
                workspace=workspace,
                shortcut=action.quick_reply,
                conversation_id=conversation.id,
                agent_name=None,
            )
        else:
            assert text is not None
            body = render_template(text, variables, field="text")
        content = {"type": "text", "text": {"body": body}}
    message = messaging.queue_message(
        session,
        workspace=workspace,
        request=messaging.SendRequest(
            contact_id=contact_id,
            content=content,
            origin=Origin.AUTOMATION,
            purpose=Purpose(action.purpose),
            number_id=number_id,
            idempotency_key=f"rule:{rule.id}:{event.id}",
        ),
        now=now,
    )
    if action.offer is not None and message.status not in ("skipped", "failed"):
        contacts.log_event(
            session,
            workspace,
            contact_id,
            OFFER_EVENT,
            now,
            {"offer": action.offer, "rule_id": rule.id, "message_id": message.id},
            "automation",
        )
    return f" → message {message.id} ({message.status})"


def _answer(
    session: Session, workspace: Workspace, rule: Rule, action: Answer, event: Any, now: datetime
) -> str:
    contact_id = int(event.contact_id)
    # A backlog (the server was down, the number reconnected) is not answered automatically:
    # "we are open until 9 pm" to a question asked yesterday is wrong; an agent answers it.
    limit = timedelta(minutes=workspaces.policy_for(workspace).auto_answer_max_age_minutes)
    asked_at = event.occurred_at
    if asked_at is not None and now - asked_at > limit:
        age = int((now - asked_at).total_seconds() // 60)
        return f" → not answered: the message is {age} min old (automatic answers within {limit})"
    profile = contacts.profiles(session, [contact_id])[contact_id]
    said = _message_of(session, event)
    language = language_for(
        said.get("text") or _latest_text(session, event),
        profile.locale or locale_of_country(profile.country) or workspace.locale,
    )
    if action.do == "answer_order_status":
        events = contacts.events_of(session, [contact_id], types=ORDER_EVENTS).get(contact_id, [])
        body = order_answer(latest_order(events), language)
    else:
        stores = service.store_infos(session, workspace.id)
        place = _place_of(said, profile.custom_fields)
        found = nearest(stores, place) if place is not None else None
        zone = ZoneInfo(profile.timezone or workspace.timezone)
        body = store_answer(found, stores, language, now.astimezone(zone))
    message = messaging.queue_message(
        session,
        workspace=workspace,
        request=messaging.SendRequest(
            contact_id=contact_id,
            content={"type": "text", "text": {"body": body}},
            origin=Origin.AUTOMATION,
            purpose=Purpose.SERVICE,
            number_id=_number_of(session, workspace, event),
            idempotency_key=f"rule:{rule.id}:{event.id}:{action.do}",
        ),
        now=now,
    )
    return f" → message {message.id} ({message.status})"


def _latest_text(session: Session, event: Any) -> str | None:
    """The customer's latest written words (a shared location has none): the language to
    answer in."""
    for earlier in contacts.events_before(
        session, event.contact_id, types={"message.received"}, before_id=event.id + 1, limit=20
    ):
        text = (earlier.properties or {}).get("text")
        if isinstance(text, str) and text.strip():
            return text
    return None


def _message_of(session: Session, event: Any) -> dict[str, Any]:
    """The properties of the customer's message behind an event: the event itself, or the
    message a keyword or intent detection points to."""
    properties = dict(event.properties or {})
    if event.event_type == "message.received":
        return properties
    wanted = properties.get("message_event_id")
    if not isinstance(wanted, int):
        return {}
    found = contacts.events_before(
        session, event.contact_id, types={"message.received"}, before_id=wanted + 1, limit=1
    )
    return dict(found[0].properties or {}) if found and found[0].id == wanted else {}


def _place_of(said: dict[str, Any], fields: dict[str, Any]) -> tuple[float, float] | None:
    """Where the customer is: the location they shared in the message, else the
    ``latitude``/``longitude`` custom fields."""
    shared = said.get("location")
    for source in (shared, fields):
        if isinstance(source, dict):
            lat, lon = source.get("latitude"), source.get("longitude")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                return float(lat), float(lon)
    return None


# --- scheduled rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Moment:
    """What a scheduled run hands to a rule in place of a timeline event."""

    contact_id: int
    id: int | None = None
    event_type: str = "schedule"
    properties: dict[str, Any] = field(default_factory=dict)
    depth: int = 0


def run_scheduled_rules(session: Session, *, now: datetime, limit: int = 20) -> int:
    """Run the scheduled rules whose time has come, for every contact their condition matches
    now; each run is traced per contact and guarded like any other. Returns contacts judged."""
    judged = 0
    for rule in service.due_scheduled_rules(session, now=now, limit=limit):
        workspace = workspaces.get_workspace(session, rule.workspace_id)
        definition = RuleDefinition.model_validate(rule.definition)
        trigger = definition.trigger
        if workspace is None or not isinstance(trigger, OnSchedule):
            continue
        assert definition.condition is not None  # a scheduled rule always has one
        query = contacts.matching_ids_query(
            session,
            workspace.id,
            definition.condition,
            as_of=now,
            sources=sources_for(workspace.id),
        )
        members = list(session.scalars(query))
        known = _Workspace(workspace, [(rule, definition)])
        for start in range(0, len(members), 500):
            moments = [_Moment(contact_id=c) for c in members[start : start + 500]]
            ledger = _Ledger.load(session, known, moments, now)
            for moment in moments:
                _run_rule(session, workspace, rule, definition, moment, now, ledger)
            ledger.write(session)
        judged += len(members)
        rule.next_run_at = next_run(trigger, now, ZoneInfo(workspace.timezone))
    return judged


def webhook_gave_up(session: Session, job: BackgroundJob, now: datetime) -> None:
    """A rule's webhook was given up: its run shows as failed, with the reason."""
    report = job.payload.get("report") or {}
    reason = f"webhook to {job.payload.get('url')} failed: {job.last_error or 'no answer'}"
    for run in session.scalars(
        select(RuleRun).where(
            RuleRun.rule_id == report.get("rule_id"),
            RuleRun.contact_id == report.get("contact_id"),
            RuleRun.event_id == report.get("event_id"),
        )
    ):
        run.status = "failed"
        run.reason = reason[:500]
        done = dict(run.actions_done or {})
        done["failed"] = [*done.get("failed", []), reason[:300]]
        run.actions_done = done
