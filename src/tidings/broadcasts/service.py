"""Use cases of broadcasts (P8). Runs inside the caller's transaction; never commits.

A broadcast is planned in chunks by the worker: each chunk takes the next contacts of the
audience in id order, decides every message with the sending policy (P1–P7) at the time it is
due, and queues the chunk with one statement per table. The contact-id cursor and the
messages' idempotency keys make planning resumable after a crash without sending twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.automation import facts as automation_facts
from tidings.automation import service as automation
from tidings.broadcasts.domain import (
    ACTIVE,
    BroadcastStatus,
    check_parameters,
    earliest_local,
    personalise,
    send_time,
)
from tidings.broadcasts.orm import Broadcast
from tidings.channels import service as channels
from tidings.contacts import service as contacts
from tidings.kernel.errors import TidingsError, conflict, invalid, not_found
from tidings.messaging import costs, registry
from tidings.messaging import planned as mass
from tidings.messaging.domain import Origin, Purpose, check_outbound_content, summary_of
from tidings.messaging.policy import (
    BatchPlan,
    Decision,
    Outgoing,
    Skip,
    content_digest,
    daily_quota,
    history_horizon,
    plan_batches,
)
from tidings.messaging.service import PolicyFacts
from tidings.webhooks import service as webhooks
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy
from tidings.workspaces.orm import Workspace

PURPOSES = (Purpose.MARKETING, Purpose.UTILITY)
FORECAST_LIMIT = 50_000  # recipients an estimate decides one by one (about a second here)
FORECAST_PAGE = 5_000


@dataclass(frozen=True)
class Estimate:
    """What a broadcast will ask of the number before it starts (P6)."""

    recipients: int
    expected_interactions: int
    daily_limit: int
    plan: BatchPlan
    expected_cost: float  # if every message is delivered (P9)
    currency: str
    forecast: Forecast


@dataclass(frozen=True)
class Forecast:
    """What the sending policy will decide for the recipients when the broadcast reaches
    them — consent, do-not-contact, caps, quiet hours in each one's zone — decided now by the
    planner's own code, so an estimate never says "now" of what will wait for the morning.
    Counts are of the whole audience: exact up to ``FORECAST_LIMIT`` recipients, beyond it
    the shares of the first ``decided`` applied to all."""

    decided: int
    outcomes: dict[str, int]  # queued, deferred, skipped
    reasons: dict[str, dict[str, int]]  # deferred and skipped, by the policy's reason
    first_send_at: datetime | None  # the earliest moment a message goes, deferred or not
    last_send_at: datetime | None  # the latest, among the recipients decided


def create_broadcast(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    created_by: str,
    now: datetime,
    dry_run: bool = False,
) -> tuple[Broadcast | None, Estimate]:
    """Check a broadcast, estimate its load, and (unless ``dry_run``) schedule it.

    Raises:
        TidingsError: 422 naming the field at fault (template, audience, schedule, number).
    """
    name = str(data.get("name") or "").strip()
    if not 1 <= len(name) <= 200:
        raise invalid("required", "a name of 1-200 characters", field="name")
    purpose = _purpose(data.get("purpose", "marketing"))
    number = (
        channels.get_active_number(session, workspace, int(data["number_id"]))
        if data.get("number_id") is not None
        else channels.default_number(session, workspace)
    )
    specs = contacts.field_specs(session, workspace)
    template = _template(data.get("template"), set(specs))
    sample = {"type": "template", "template": _sample(template)}
    with _fields_as_this_request_names_them():
        purpose = registry.check_template_message(
            session, number_id=number.id, content=sample, purpose=purpose
        )
    audience = dict(data.get("audience") or {})
    if "condition" in audience:
        condition = automation.parse_condition(
            session, workspace, audience["condition"], field="audience.condition"
        )
        audience["condition"] = automation.dump(condition)
    criteria = _criteria(session, workspace, audience, now)
    send_at, local_date, local_time = _schedule(data, now)
    policy = workspaces.policy_for(workspace)
    created = channels.numbers_created_at(session, [number.id]).get(number.id, now)
    limit = daily_quota(policy, now - created)
    recipients = contacts.count_audience(session, workspace, criteria)
    plan = plan_batches(recipients, daily_limit=limit, policy=policy)
    category = "marketing" if purpose == Purpose.MARKETING else "utility"
    expected_cost = costs.estimate(
        policy, contacts.audience_countries(session, workspace, criteria), category
    )
    broadcast = Broadcast(
        workspace_id=workspace.id,
        name=name,
        number_id=number.id,
        purpose=purpose.value,
        template=template,
        audience=audience,
        status=BroadcastStatus.SCHEDULED.value,
        send_at=send_at,
        local_date=local_date,
        local_time=local_time,
        batch_size=plan.size if plan.batches > 1 else 0,
        batch_every_seconds=int(plan.every.total_seconds()),
        plan_reason=plan.reason,
        planned_through=0,
        recipients=0,
        created_by=created_by[:200],
        created_at=now,
        updated_at=now,
    )
    estimate = Estimate(
        recipients,
        recipients * policy.interactions_per_recipient,
        limit,
        plan,
        expected_cost,
        policy.price_currency,
        forecast(session, workspace, policy, broadcast, criteria, recipients, now=now),
    )
    if dry_run:
        return None, estimate
    session.add(broadcast)
    session.flush()
    return broadcast, estimate


def forecast(
    session: Session,
    workspace: Workspace,
    policy: WorkspacePolicy,
    broadcast: Broadcast,
    criteria: contacts.ContactFilter,
    recipients: int,
    *,
    now: datetime,
) -> Forecast:
    """See :class:`Forecast`; ``broadcast`` need not be stored (nothing is written)."""
    outcomes: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    first: datetime | None = None
    last: datetime | None = None
    decided, after = 0, 0
    while decided < FORECAST_LIMIT:
        members = contacts.audience_page(
            session,
            workspace,
            criteria,
            after_id=after,
            limit=min(FORECAST_PAGE, FORECAST_LIMIT - decided),
        )
        if not members:
            break
        broadcast.recipients = decided  # where the batches of a large send begin
        for item in _decide(session, workspace, policy, broadcast, members, now=now):
            status, at, reason = mass.state_of(item)
            outcomes[status] += 1
            if reason is not None:
                reasons[status][reason] += 1
            if at is not None:
                first = at if first is None else min(first, at)
                last = at if last is None else max(last, at)
        decided, after = decided + len(members), members[-1].id
    broadcast.recipients = 0
    scale = recipients / decided if decided else 0.0
    return Forecast(
        decided=decided,
        outcomes={status: round(n * scale) for status, n in outcomes.items()},
        reasons={
            status: {reason: round(n * scale) for reason, n in found.most_common(20)}
            for status, found in reasons.items()
        },
        first_send_at=first,
        last_send_at=last,
    )


def _criteria(
    session: Session, workspace: Workspace, audience: Mapping[str, Any], now: datetime
) -> contacts.ContactFilter:
    """The audience's contacts as search criteria; a condition is judged at ``now``, so that
    "no purchase in 30 days" means 30 days before each chunk is planned."""
    criteria = contacts.audience_criteria(session, workspace, audience)
    if "condition" not in audience:
        return criteria
    return contacts.with_condition(
        session,
        workspace,
        criteria,
        automation.CONDITION.validate_python(audience["condition"]),
        as_of=now,
        sources=automation_facts.sources_for(workspace.id),
    )


def _purpose(value: Any) -> Purpose:
    try:
        purpose = Purpose(value)
    except ValueError:
        purpose = None
    if purpose not in PURPOSES:
        raise invalid("invalid_purpose", "marketing or utility", field="purpose")
    assert purpose is not None
    return purpose


def _template(value: Any, field_keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid(
            "required", "an approved template: name, language, components", field="template"
        )
    components = check_parameters(value.get("components"), field_keys)
    with _fields_as_this_request_names_them():
        checked = check_outbound_content(
            {"type": "template", "template": _sample({**value, "components": components})}
        )
    template = dict(checked["template"])
    if components:
        template["components"] = components
    return template


@contextmanager
def _fields_as_this_request_names_them() -> Iterator[None]:
    """Message checks name ``content.template.…``; a broadcast request spells it
    ``template.…``."""
    try:
        yield
    except TidingsError as error:
        error.field = (error.field or "").removeprefix("content.") or "template"
        raise


def _sample(template: Mapping[str, Any]) -> dict[str, Any]:
    """The message as a contact with no fields would get it (fallbacks filled): what is
    checked once, before the broadcast is accepted."""
    components = list(template.get("components") or [])
    return {**template, "components": personalise(components, {})} if components else dict(template)


def _schedule(data: Mapping[str, Any], now: datetime) -> tuple[datetime, date | None, time | None]:
    send_at = data.get("send_at")
    local = data.get("local_time")
    if send_at is not None and local is not None:
        raise invalid(
            "one_schedule",
            "give send_at or local_time (with local_date), not both",
            field="send_at",
        )
    if local is not None:
        local_date = data.get("local_date")
        if not isinstance(local_date, date) or not isinstance(local, time):
            raise invalid(
                "invalid_schedule",
                "local_date (YYYY-MM-DD) and local_time (HH:MM) in each contact's time zone",
                field="local_date",
            )
        start = earliest_local(local_date, local)
        if start + timedelta(hours=26) < now:
            raise invalid(
                "in_the_past", "that local time has passed everywhere", field="local_date"
            )
        return max(start, now), local_date, local
    if send_at is None:
        return now, None, None
    if not isinstance(send_at, datetime) or send_at.tzinfo is None:
        raise invalid("invalid_schedule", "an ISO-8601 time with a zone", field="send_at")
    if send_at < now - timedelta(minutes=5):
        raise invalid("in_the_past", "send_at is in the past", field="send_at")
    return max(send_at, now), None, None


def list_broadcasts(session: Session, workspace: Workspace) -> list[Broadcast]:
    return list(
        session.scalars(
            select(Broadcast)
            .where(Broadcast.workspace_id == workspace.id)
            .order_by(Broadcast.id.desc())
        )
    )


def get_broadcast_or_404(session: Session, workspace: Workspace, broadcast_id: int) -> Broadcast:
    broadcast = session.scalar(
        select(Broadcast).where(
            Broadcast.workspace_id == workspace.id, Broadcast.id == broadcast_id
        )
    )
    if broadcast is None:
        raise not_found("broadcast")
    return broadcast


def cancel_broadcast(
    session: Session, *, workspace: Workspace, broadcast_id: int, now: datetime
) -> tuple[Broadcast, int]:
    """Stop a broadcast: nothing more is planned, and what has not gone is skipped with the
    reason (P7). Messages already handed to WhatsApp cannot be called back.

    Raises:
        TidingsError: 404 for another workspace's, 409 when it has already finished.
    """
    broadcast = get_broadcast_or_404(session, workspace, broadcast_id)
    if BroadcastStatus(broadcast.status) not in ACTIVE:
        raise conflict("not_active", f"the broadcast is {broadcast.status}", field="status")
    broadcast.status = BroadcastStatus.CANCELLED.value
    broadcast.updated_at = broadcast.finished_at = now
    skipped = mass.skip_pending_of_broadcast(
        session,
        workspace_id=workspace.id,
        broadcast_id=broadcast.id,
        reason="P8: the broadcast was cancelled",
        now=now,
    )
    return broadcast, skipped


@dataclass(frozen=True)
class Statistics:
    outcomes: dict[str, int]
    reasons: dict[str, dict[str, int]]
    cost: float  # of its delivered messages so far (P9)


def statistics(session: Session, workspace: Workspace, broadcast_id: int) -> Statistics:
    broadcast = get_broadcast_or_404(session, workspace, broadcast_id)
    return Statistics(
        outcomes=mass.outcomes_of_broadcast(session, broadcast.id),
        reasons=mass.reasons_of_broadcast(session, broadcast.id),
        cost=round(mass.cost_of_broadcast(session, broadcast.id), 6),
    )


# --- planning (the worker) -------------------------------------------------------------------


def plan_chunk(session: Session, broadcast: Broadcast, *, now: datetime, limit: int) -> int:
    """Decide and queue the next ``limit`` recipients; returns how many were planned."""
    workspace = workspaces.get_workspace(session, broadcast.workspace_id)
    if workspace is None:
        return 0
    policy = workspaces.policy_for(workspace)
    criteria = _criteria(session, workspace, broadcast.audience, now)
    members = contacts.audience_page(
        session, workspace, criteria, after_id=broadcast.planned_through, limit=limit
    )
    broadcast.status = BroadcastStatus.PLANNING.value
    broadcast.updated_at = now
    if not members:
        broadcast.status = BroadcastStatus.SENDING.value
        return 0
    planned = _decide(session, workspace, policy, broadcast, members, now=now)
    added = mass.queue_planned(
        session,
        workspace_id=workspace.id,
        number_id=broadcast.number_id,
        origin=Origin.BROADCAST,
        purpose=Purpose(broadcast.purpose),
        broadcast_id=broadcast.id,
        planned=planned,
        now=now,
    )
    broadcast.planned_through = members[-1].id
    broadcast.recipients += added  # a chunk planned again after a crash adds nobody twice
    if len(members) < limit:
        broadcast.status = BroadcastStatus.SENDING.value
    return len(members)


def _decide(
    session: Session,
    workspace: Workspace,
    policy: WorkspacePolicy,
    broadcast: Broadcast,
    members: Sequence[contacts.Member],
    *,
    now: datetime,
) -> list[mass.Planned]:
    """The message and the sending policy's decision for each of these recipients, when the
    broadcast reaches them: what planning queues, and what the estimate counts beforehand."""
    ids = [m.id for m in members]
    without_phone = contacts.whatsapp_ids(session, [m.id for m in members if not m.phone])
    facts = PolicyFacts.load(session, ids, since=now - history_horizon(policy))
    purpose = Purpose(broadcast.purpose)
    # Read once per chunk, not once per recipient: ORM attribute reads add up over a million.
    base_template = dict(broadcast.template)
    components = list(base_template.get("components") or [])
    summary = summary_of({"type": "template", "template": base_template})
    every = timedelta(seconds=broadcast.batch_every_seconds)
    batch_size, first_position = broadcast.batch_size, broadcast.recipients
    key_prefix = f"broadcast:{broadcast.id}:"
    default_zone = workspace.timezone
    due_by_zone: dict[str, datetime] = {}  # the send time depends only on the zone
    planned = []
    for index, member in enumerate(members):
        zone = member.timezone or default_zone
        due = due_by_zone.get(zone)
        if due is None:
            due = due_by_zone[zone] = send_time(
                send_at=broadcast.send_at,
                local_date=broadcast.local_date,
                local_time=broadcast.local_time,
                timezone=zone,
                now=now,
            )
        if batch_size:
            due += every * ((first_position + index) // batch_size)
        template = base_template
        if components:
            values = {
                "name": member.name,
                "first_name": member.first_name or (member.name or "").split(" ")[0] or None,
                "last_name": member.last_name,
                "phone": member.phone,
                "country": member.country,
                **member.custom_fields,
            }
            template = {**base_template, "components": personalise(components, values)}
        content = {"type": "template", "template": template}
        digest = content_digest(content)
        recipient = member.phone or without_phone.get(member.id)
        decision: Decision = (
            Skip("the contact has no WhatsApp number or id")
            if recipient is None
            else facts.decide(
                Outgoing(
                    channel="whatsapp",
                    purpose=purpose,
                    origin=Origin.BROADCAST,
                    is_template=True,
                    content_digest=digest,
                ),
                member.id,
                last_inbound_at=None,
                policy=policy,
                default_timezone=default_zone,
                now=due,
            )
        )
        planned.append(
            mass.Planned(
                contact_id=member.id,
                recipient=recipient or "",
                content=content,
                summary=summary,
                content_digest=digest,
                idempotency_key=key_prefix + str(member.id),
                decision=decision,
                send_at=due,
            )
        )
    return planned


def finish_if_done(session: Session, broadcast: Broadcast, *, now: datetime) -> bool:
    """A sending broadcast with nothing left waiting is finished."""
    if mass.pending_of_broadcast(session, broadcast.id):
        return False
    broadcast.status = BroadcastStatus.FINISHED.value
    broadcast.updated_at = broadcast.finished_at = now
    webhooks.publish(
        session,
        workspace_id=broadcast.workspace_id,
        event_type="broadcast.finished",
        event_id=f"broadcast_{broadcast.id}_finished",
        occurred_at=now,
        data={
            "broadcast": {
                "id": broadcast.id,
                "name": broadcast.name,
                "purpose": broadcast.purpose,
                "recipients": broadcast.recipients,
                "send_at": broadcast.send_at.isoformat(),
                "finished_at": now.isoformat(),
            }
        },
        now=now,
    )
    return True
