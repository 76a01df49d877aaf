"""HTTP routes of the inbox (conversations, replies, notes, labels, quick replies) and of
messages sent by API."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from tidings.api.deps import Context, decode_cursor, encode_cursor
from tidings.api.headers import user_content_headers
from tidings.kernel.errors import invalid
from tidings.kernel.timestamps import Timestamp, in_utc
from tidings.messaging import inbox, registry
from tidings.messaging import service as messaging
from tidings.messaging.domain import Origin, is_window_open
from tidings.messaging.inbox import ConversationFilter, ConversationView
from tidings.messaging.schemas import (
    ActivityRead,
    AgentResponseRead,
    AssignIn,
    ConversationPage,
    ConversationRead,
    CostReportRead,
    LabelsIn,
    MessagePage,
    MessageRead,
    NoteIn,
    NoteRead,
    QuickReplyIn,
    QuickReplyRead,
    RenderedReply,
    ReplyIn,
    ResponseTimesRead,
    SendIn,
    SnoozeIn,
    StatusIn,
    TemplateIn,
    TemplateRead,
    TemplateSyncRead,
    TraceRead,
    UncertainDecided,
    UncertainDecisionIn,
    UncertainPage,
    UncertainRead,
)
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

router = APIRouter(tags=["inbox"])
Limit = Annotated[int, Query(ge=1, le=200)]


def _read(view: ConversationView, ctx: Context) -> ConversationRead:
    c = view.conversation
    window = timedelta(hours=workspaces.policy_for(ctx.workspace).service_window_hours)
    return ConversationRead(
        id=c.id,
        contact_id=c.contact_id,
        number_id=c.number_id,
        status=c.status,
        snoozed_until=c.snoozed_until,
        assignee_id=c.assignee_id,
        team_id=c.team_id,
        labels=view.labels,
        contact_name=view.contact_name,
        contact_phone=view.contact_phone,
        unread_count=c.unread_count,
        last_inbound_at=c.last_inbound_at,
        last_message_at=c.last_message_at,
        window_open=is_window_open(c.last_inbound_at, ctx.now, window),
        window_closes_at=c.last_inbound_at + window if c.last_inbound_at else None,
        automation_paused_until=c.automation_paused_until,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )


def _encode_position(at: datetime | None, last_id: int) -> str:
    raw = json.dumps({"at": at.isoformat() if at else None, "id": last_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_position(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at, last_id = in_utc(datetime.fromisoformat(value["at"])), int(value["id"])
        if not 0 <= last_id < 2**63:
            raise ValueError("id out of range")
        return at, last_id
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid(
            "invalid_cursor", "use the next_cursor of a previous page", field="cursor"
        ) from None


@router.get("/conversations")
def list_conversations(
    ctx: Context,
    status: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    team_id: int | None = None,
    number_id: int | None = None,
    contact_id: int | None = None,
    label: str | None = None,
    unread: bool = False,
    limit: Limit = 50,
    cursor: str | None = None,
) -> ConversationPage:
    """The inbox, most recent activity first; filters combine."""
    views = inbox.list_conversations(
        ctx.session,
        ctx.workspace,
        ConversationFilter(
            status=status,
            assignee_id=assignee_id,
            unassigned=unassigned,
            team_id=team_id,
            number_id=number_id,
            contact_id=contact_id,
            label=label.strip().lower() if label else None,
            unread_only=unread,
        ),
        after=_decode_position(cursor),
        limit=limit,
    )
    last = views[-1].conversation if len(views) == limit else None
    return ConversationPage(
        items=[_read(v, ctx) for v in views],
        next_cursor=_encode_position(last.last_message_at, last.id) if last else None,
    )


@router.get("/conversations/{conversation_id}")
def read_conversation(conversation_id: int, ctx: Context) -> ConversationRead:
    conversation = inbox.get_conversation_or_404(ctx.session, ctx.workspace, conversation_id)
    return _read(inbox.describe(ctx.session, conversation), ctx)


@router.get("/conversations/{conversation_id}/messages")
def read_thread(
    conversation_id: int, ctx: Context, limit: Limit = 50, before: int | None = None
) -> MessagePage:
    """Messages newest first; pass ``before`` = the last id seen for older ones."""
    rows = inbox.thread(ctx.session, ctx.workspace, conversation_id, before_id=before, limit=limit)
    return MessagePage(
        items=[MessageRead.model_validate(row) for row in rows],
        next_cursor=str(rows[-1].id) if len(rows) == limit else None,
    )


@router.post("/conversations/{conversation_id}/messages", status_code=202)
def reply(conversation_id: int, body: ReplyIn, ctx: Context) -> MessageRead:
    """An agent's reply; pauses automation for the contact (I3). 409 when the 24-hour window
    is closed and the reply is not a template (P1)."""
    if body.content is not None:
        content = dict(body.content)
    else:
        text = body.text
        if body.quick_reply is not None:
            text = inbox.render_quick_reply(
                ctx.session,
                workspace=ctx.workspace,
                shortcut=body.quick_reply,
                conversation_id=conversation_id,
                agent_name=ctx.principal.label,
            )
        content = {"type": "text", "text": {"body": text or ""}}
    if body.reply_to:
        content["context"] = {"message_id": body.reply_to}
    message = messaging.queue_reply(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        content=content,
        author_id=ctx.principal.user_id,
        origin=Origin.AGENT,
        idempotency_key=body.idempotency_key,
        now=ctx.now,
    )
    if ctx.principal.user_id is not None:  # a person, not an integration's API key
        inbox.assign_replying_agent(
            ctx.session,
            workspace=ctx.workspace,
            conversation_id=conversation_id,
            user_id=ctx.principal.user_id,
            now=ctx.now,
        )
    return MessageRead.model_validate(message)


@router.post("/conversations/{conversation_id}/assign")
def assign(conversation_id: int, body: AssignIn, ctx: Context) -> ConversationRead:
    """Set or clear (``null``) the agent and/or team; omitted fields stay as they are."""
    conversation = inbox.assign(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        changes=body.model_dump(exclude_unset=True),
        now=ctx.now,
    )
    return _read(inbox.describe(ctx.session, conversation), ctx)


def _set_status(
    ctx: Context, conversation_id: int, status: str, until: datetime | None = None
) -> ConversationRead:
    conversation = inbox.set_status(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        status=status,
        snoozed_until=until,
        now=ctx.now,
    )
    return _read(inbox.describe(ctx.session, conversation), ctx)


@router.post("/conversations/{conversation_id}/resolve")
def resolve(conversation_id: int, ctx: Context) -> ConversationRead:
    return _set_status(ctx, conversation_id, "resolved")


@router.post("/conversations/{conversation_id}/reopen")
def reopen(conversation_id: int, ctx: Context) -> ConversationRead:
    return _set_status(ctx, conversation_id, "open")


@router.post("/conversations/{conversation_id}/snooze")
def snooze(conversation_id: int, body: SnoozeIn, ctx: Context) -> ConversationRead:
    """Hide until ``until``; the next message from the customer reopens it earlier."""
    return _set_status(ctx, conversation_id, "snoozed", body.until)


@router.post("/conversations/{conversation_id}/status")
def set_status(conversation_id: int, body: StatusIn, ctx: Context) -> ConversationRead:
    """Any status but ``snoozed`` (which needs ``/snooze``): open, pending, resolved."""
    if body.status == "snoozed":
        raise invalid("use_snooze", "snooze with POST …/snooze and a time", field="status")
    return _set_status(ctx, conversation_id, body.status)


@router.post("/conversations/{conversation_id}/seen")
def mark_seen(conversation_id: int, ctx: Context) -> ConversationRead:
    conversation = inbox.mark_seen(
        ctx.session, workspace=ctx.workspace, conversation_id=conversation_id, now=ctx.now
    )
    return _read(inbox.describe(ctx.session, conversation), ctx)


@router.get("/conversations/{conversation_id}/notes")
def list_notes(conversation_id: int, ctx: Context) -> list[NoteRead]:
    return [
        NoteRead.model_validate(n) for n in inbox.notes(ctx.session, ctx.workspace, conversation_id)
    ]


@router.post("/conversations/{conversation_id}/notes", status_code=201)
def add_note(conversation_id: int, body: NoteIn, ctx: Context) -> NoteRead:
    note = inbox.add_note(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        body=body.body,
        author_id=ctx.principal.user_id,
        author_label=ctx.principal.label,
        now=ctx.now,
    )
    return NoteRead.model_validate(note)


@router.post("/conversations/{conversation_id}/labels")
def add_labels(conversation_id: int, body: LabelsIn, ctx: Context) -> ConversationRead:
    view = inbox.add_labels(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        labels=body.labels,
        now=ctx.now,
    )
    return _read(view, ctx)


@router.delete("/conversations/{conversation_id}/labels/{label}")
def remove_label(conversation_id: int, label: str, ctx: Context) -> ConversationRead:
    view = inbox.remove_label(
        ctx.session,
        workspace=ctx.workspace,
        conversation_id=conversation_id,
        label=label,
        now=ctx.now,
    )
    return _read(view, ctx)


@router.get("/conversations/{conversation_id}/quick-replies/{shortcut}")
def preview_quick_reply(conversation_id: int, shortcut: str, ctx: Context) -> RenderedReply:
    """The quick reply's text with this conversation's variables filled in (I4)."""
    return RenderedReply(
        text=inbox.render_quick_reply(
            ctx.session,
            workspace=ctx.workspace,
            shortcut=shortcut,
            conversation_id=conversation_id,
            agent_name=ctx.principal.label,
        )
    )


@router.get("/quick-replies")
def list_quick_replies(ctx: Context) -> list[QuickReplyRead]:
    return [
        QuickReplyRead.model_validate(r)
        for r in inbox.list_quick_replies(ctx.session, ctx.workspace)
    ]


@router.post("/quick-replies", status_code=201)
def create_quick_reply(body: QuickReplyIn, ctx: Context) -> QuickReplyRead:
    ctx.require(Role.ADMIN, action="managing quick replies")
    reply_row = inbox.save_quick_reply(
        ctx.session, workspace=ctx.workspace, data=body.model_dump(), now=ctx.now
    )
    return QuickReplyRead.model_validate(reply_row)


@router.patch("/quick-replies/{reply_id}")
def update_quick_reply(reply_id: int, body: QuickReplyIn, ctx: Context) -> QuickReplyRead:
    ctx.require(Role.ADMIN, action="managing quick replies")
    reply_row = inbox.save_quick_reply(
        ctx.session,
        workspace=ctx.workspace,
        data=body.model_dump(exclude_unset=True),
        reply_id=reply_id,
        now=ctx.now,
    )
    return QuickReplyRead.model_validate(reply_row)


@router.delete("/quick-replies/{reply_id}", status_code=204)
def delete_quick_reply(reply_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="managing quick replies")
    inbox.delete_quick_reply(ctx.session, workspace=ctx.workspace, reply_id=reply_id)


@router.post("/messages", status_code=202)
def send_message(body: SendIn, ctx: Context) -> MessageRead:
    """Queue a message to a contact (a bot, a shop system). Idempotent with a key. The sending
    policy decides at once: ``queued``, ``deferred`` until ``next_attempt_at``, or ``skipped``,
    each with the rule in ``status_reason`` (P1-P5, P7, I3); nothing is silently dropped."""
    message = messaging.queue_message(
        ctx.session,
        workspace=ctx.workspace,
        request=messaging.SendRequest(
            contact_id=body.contact_id,
            content=body.content,
            origin=Origin.API,
            purpose=body.purpose,
            number_id=body.number_id,
            idempotency_key=body.idempotency_key,
            notification_type=body.notification_type,
        ),
        now=ctx.now,
    )
    return MessageRead.model_validate(message)


@router.get("/contacts/{contact_id}/send-traces")
def contact_send_traces(
    contact_id: int, ctx: Context, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[TraceRead]:
    """Why each message to this contact was sent, deferred, skipped, retried or failed (O3),
    newest first, with the requirement ID in each reason."""
    return [
        TraceRead.model_validate(t)
        for t in messaging.traces_of_contact(ctx.session, ctx.workspace, contact_id, limit=limit)
    ]


@router.get("/messages/uncertain")
def list_uncertain(
    ctx: Context,
    limit: Limit = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> UncertainPage:
    """Messages whose request left but whose fate is unknown (a timeout, a worker that died
    mid-send), oldest first, with what is known: to whom, what, when it left. Marketing
    messages are never resent on a guess: a person decides."""
    ctx.require(Role.ADMIN, action="reviewing uncertain messages")
    rows = messaging.list_uncertain(
        ctx.session, ctx.workspace, after_id=decode_cursor(cursor), limit=limit
    )
    return UncertainPage(
        items=[UncertainRead.model_validate(row) for row in rows],
        total=messaging.count_uncertain(ctx.session, ctx.workspace),
        next_cursor=encode_cursor(rows[-1].id) if len(rows) == limit else None,
    )


@router.post("/messages/uncertain/decide")
def decide_uncertain(body: UncertainDecisionIn, ctx: Context) -> UncertainDecided:
    """Mark uncertain messages as sent, or send them again — one, several or ``all`` — with
    the decision and who took it recorded on each message's trace."""
    ctx.require(Role.ADMIN, action="deciding about uncertain messages")
    if body.all == (body.ids is not None):
        raise invalid("choose_one", "give either ids or all: true", field="ids")
    decided = messaging.decide_uncertain(
        ctx.session,
        ctx.workspace,
        ids=None if body.all else body.ids,
        decision=body.decision,
        decided_by=ctx.principal.label,
        now=ctx.now,
    )
    return UncertainDecided(decided=decided)


@router.get("/messages/{message_id}")
def read_message(message_id: int, ctx: Context) -> MessageRead:
    return MessageRead.model_validate(
        inbox.get_message_or_404(ctx.session, ctx.workspace, message_id)
    )


@router.get("/messages/{message_id}/traces")
def message_traces(message_id: int, ctx: Context) -> list[TraceRead]:
    """Every decision about this message, in order: why it was sent, held, retried or failed."""
    return [
        TraceRead.model_validate(t)
        for t in messaging.traces_of(ctx.session, ctx.workspace, message_id)
    ]


@router.get("/messages/{message_id}/media", response_class=FileResponse)
def message_media(message_id: int, ctx: Context) -> FileResponse:
    """The file a customer sent, as stored (images over the limit re-encoded as JPEG, I5)."""
    stored = inbox.stored_media_of(ctx.session, ctx.workspace, message_id)
    path = ctx.tidings.media_store.path_of(str(stored["path"]))
    mime_type = str(stored["mime_type"])
    return FileResponse(
        path,
        media_type=mime_type,
        headers=user_content_headers(mime_type, str(stored.get("filename") or path.name)),
    )


# --- The template registry --------------------------------------------------------------------


@router.get("/templates")
def list_templates(ctx: Context, number_id: int | None = None) -> list[TemplateRead]:
    """The WhatsApp templates of the workspace's numbers, with their approval status."""
    return [
        TemplateRead.model_validate(t)
        for t in registry.list_templates(ctx.session, ctx.workspace, number_id=number_id)
    ]


@router.post("/templates", status_code=201)
def define_template(body: TemplateIn, ctx: Context) -> TemplateRead:
    """Register a template defined outside Tidings (status ``local``); synced ones come from
    ``POST /whatsapp-numbers/{id}/templates/sync``."""
    ctx.require(Role.ADMIN, action="managing templates")
    template = registry.define_template(
        ctx.session,
        workspace=ctx.workspace,
        number_id=body.number_id,
        data=body.model_dump(exclude={"number_id"}),
        now=ctx.now,
    )
    return TemplateRead.model_validate(template)


@router.delete("/templates/{template_id}", status_code=204)
def delete_template(template_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="managing templates")
    registry.delete_template(ctx.session, workspace=ctx.workspace, template_id=template_id)


@router.post("/whatsapp-numbers/{number_id}/templates/sync")
def sync_templates(number_id: int, ctx: Context) -> TemplateSyncRead:
    """Fetch the number's business-account templates from WhatsApp and update the registry;
    from then on template messages on this number are checked against it before sending."""
    ctx.require(Role.ADMIN, action="syncing templates")
    report = registry.sync_templates(
        ctx.session,
        workspace=ctx.workspace,
        number_id=number_id,
        client=ctx.tidings.whatsapp,
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    return TemplateSyncRead(
        added=report.added, updated=report.updated, unchanged=report.unchanged, gone=report.gone
    )


@router.get("/reports/costs")
def cost_report(
    ctx: Context,
    since: Annotated[Timestamp, Query(description="start (ISO-8601 with a zone)")],
    until: Annotated[Timestamp | None, Query(description="end; now by default")] = None,
) -> CostReportRead:
    """What WhatsApp messages delivered in the period cost (P9), per category, per paid
    conversation and per customer acquired (first order in the period)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise invalid("naive_time", "give the time with its zone (…Z or +08:00)", field=name)
    report = messaging.cost_report(ctx.session, ctx.workspace, since=since, until=until or ctx.now)
    return CostReportRead(**dataclasses.asdict(report))


def _last_days(ctx: Context, days: int) -> tuple[datetime, datetime]:
    return ctx.now - timedelta(days=days), ctx.now


@router.get("/reports/activity")
def activity_report(
    ctx: Context, days: Annotated[int, Query(ge=1, le=366, description="the last N days")] = 30
) -> ActivityRead:
    """When customers write (R1): a weekday × hour heat-map in the workspace's time."""
    since, until = _last_days(ctx, days)
    report = messaging.activity_report(ctx.session, ctx.workspace, since=since, until=until)
    return ActivityRead(**dataclasses.asdict(report))


@router.get("/reports/response-times")
def response_times(
    ctx: Context, days: Annotated[int, Query(ge=1, le=366, description="the last N days")] = 30
) -> ResponseTimesRead:
    """How fast each agent answers a waiting customer (R1): median and mean, how many within
    the 3-minute target, and whether the mean is above the policy's ``slow_response_seconds``
    (6 minutes by default)."""
    since, until = _last_days(ctx, days)
    report = messaging.response_report(ctx.session, ctx.workspace, since=since, until=until)
    return ResponseTimesRead(
        target_seconds=report.target_seconds,
        slow_after_seconds=report.slow_after_seconds,
        agents=[
            AgentResponseRead(
                agent_id=a.agent_id,
                answered=a.answered,
                median_seconds=a.median_seconds,
                mean_seconds=a.mean_seconds,
                within_target=a.within_target,
                slow=a.slow,
            )
            for a in report.agents
        ],
    )
