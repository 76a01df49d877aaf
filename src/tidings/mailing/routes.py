"""HTTP routes of e-mail: senders, templates, sending (``/api/v1/email/…``, authenticated),
and the public tracking URLs recipients' mail clients fetch (``/e/…``).

The public routes answer a tampered or unknown token with 404 and record nothing. A GET never
unsubscribes anyone (link scanners follow every link): the page it shows has a button that
POSTs, and mail clients' one-click button POSTs directly (RFC 8058).
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from tidings.api.deps import Context
from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError, invalid, not_found
from tidings.mailing import service
from tidings.mailing.domain import PIXEL_GIF, TokenClaims, TokenKind, read_token, tracking_key
from tidings.mailing.orm import EmailSender
from tidings.mailing.schemas import (
    EmailIn,
    PreviewIn,
    PreviewRead,
    SenderCreate,
    SenderRead,
    SenderUpdate,
    SuppressionRead,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
)
from tidings.messaging import email as outbox
from tidings.messaging.domain import Origin, Purpose
from tidings.messaging.schemas import MessageRead
from tidings.workspaces.domain import Role

router = APIRouter(tags=["e-mail"])
tracking_router = APIRouter(tags=["e-mail tracking (public)"], include_in_schema=False)


def _sender(sender: EmailSender) -> SenderRead:
    return SenderRead(
        id=sender.id,
        name=sender.name,
        from_name=sender.from_name,
        from_address=sender.from_address,
        reply_to=sender.reply_to,
        smtp_host=sender.smtp_host,
        smtp_port=sender.smtp_port,
        smtp_security=sender.smtp_security,
        smtp_username=sender.smtp_username,
        has_password=sender.smtp_password_sealed is not None,
        connections=sender.connections,
        dkim_domain=sender.dkim_domain,
        dkim_selector=sender.dkim_selector,
        has_dkim_key=sender.dkim_key_sealed is not None,
        is_default=sender.is_default,
        is_active=sender.is_active,
        created_at=sender.created_at,
        updated_at=sender.updated_at,
    )


@router.get("/email/senders")
def list_senders(ctx: Context) -> list[SenderRead]:
    return [_sender(s) for s in service.list_senders(ctx.session, ctx.workspace)]


@router.post("/email/senders", status_code=201)
def create_sender(body: SenderCreate, ctx: Context) -> SenderRead:
    ctx.require(Role.ADMIN, action="adding e-mail senders")
    sender = service.create_sender(
        ctx.session,
        workspace=ctx.workspace,
        data=body.model_dump(),
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    return _sender(sender)


@router.get("/email/senders/{sender_id}")
def read_sender(sender_id: int, ctx: Context) -> SenderRead:
    return _sender(service.get_sender_or_404(ctx.session, ctx.workspace, sender_id))


@router.patch("/email/senders/{sender_id}")
def update_sender(sender_id: int, body: SenderUpdate, ctx: Context) -> SenderRead:
    ctx.require(Role.ADMIN, action="changing e-mail senders")
    sender = service.update_sender(
        ctx.session,
        workspace=ctx.workspace,
        sender_id=sender_id,
        data=body.model_dump(exclude_unset=True),
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    return _sender(sender)


@router.delete("/email/senders/{sender_id}", status_code=204)
def delete_sender(sender_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="removing e-mail senders")
    service.delete_sender(ctx.session, workspace=ctx.workspace, sender_id=sender_id)
    return Response(status_code=204)


@router.get("/email/templates")
def list_templates(ctx: Context) -> list[TemplateRead]:
    return [
        TemplateRead.model_validate(t) for t in service.list_templates(ctx.session, ctx.workspace)
    ]


@router.post("/email/templates", status_code=201)
def create_template(body: TemplateCreate, ctx: Context) -> TemplateRead:
    template = service.create_template(
        ctx.session, workspace=ctx.workspace, data=body.model_dump(), now=ctx.now
    )
    return TemplateRead.model_validate(template)


@router.get("/email/templates/{template_id}")
def read_template(template_id: int, ctx: Context) -> TemplateRead:
    return TemplateRead.model_validate(
        service.get_template_or_404(ctx.session, ctx.workspace, template_id)
    )


@router.patch("/email/templates/{template_id}")
def update_template(template_id: int, body: TemplateUpdate, ctx: Context) -> TemplateRead:
    template = service.update_template(
        ctx.session,
        workspace=ctx.workspace,
        template_id=template_id,
        data=body.model_dump(exclude_unset=True),
        now=ctx.now,
    )
    return TemplateRead.model_validate(template)


@router.delete("/email/templates/{template_id}", status_code=204)
def delete_template(template_id: int, ctx: Context) -> Response:
    service.delete_template(ctx.session, workspace=ctx.workspace, template_id=template_id)
    return Response(status_code=204)


@router.post("/email/templates/{template_id}/preview")
def preview_template(template_id: int, body: PreviewIn, ctx: Context) -> PreviewRead:
    """The template rendered for one contact, as they would read it (before tracking)."""
    rendered = service.preview_template(
        ctx.session, ctx.workspace, template_id, contact_id=body.contact_id
    )
    return PreviewRead(
        subject=rendered.subject, html=rendered.html, text=rendered.text, links=rendered.links
    )


@router.post("/email/messages", status_code=201)
def send_email(body: EmailIn, ctx: Context, response: Response) -> MessageRead:
    """Queue one e-mail through the sending policy; 200 with the first message when the
    idempotency key was used before."""
    if body.template is not None:
        template = service.template_by_name(ctx.session, ctx.workspace, body.template)
        if template is None:
            raise not_found("e-mail template", field="template")
        subject, html_body, text = template.subject, template.html, template.text
    elif body.subject is None or body.html is None:
        raise invalid(
            "missing_content",
            "give a template, or a subject and an HTML body",
            field="subject" if body.subject is None else "html",
        )
    else:
        subject, html_body, text = body.subject, body.html, body.text
    try:
        purpose = Purpose(body.purpose)
    except ValueError:
        raise invalid("invalid_purpose", "marketing, utility or service", field="purpose") from None
    message, created = outbox.queue_email(
        ctx.session,
        workspace=ctx.workspace,
        request=outbox.EmailRequest(
            contact_id=body.contact_id,
            subject=subject,
            html=html_body,
            text=text,
            purpose=purpose,
            origin=Origin.API,
            sender_id=body.sender_id,
            idempotency_key=body.idempotency_key,
        ),
        now=ctx.now,
    )
    if not created:
        response.status_code = 200
    ctx.session.flush()
    return MessageRead.model_validate(message)


@router.get("/email/messages/{message_id}")
def read_email(message_id: int, ctx: Context) -> MessageRead:
    return MessageRead.model_validate(
        outbox.email_message_or_404(ctx.session, ctx.workspace, message_id)
    )


@router.get("/email/suppressions")
def list_suppressions(ctx: Context) -> list[SuppressionRead]:
    return [
        SuppressionRead.model_validate(s)
        for s in service.list_suppressions(ctx.session, ctx.workspace)
    ]


@router.delete("/email/suppressions/{address}", status_code=204)
def remove_suppression(address: str, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="removing addresses from the bounce list")
    service.remove_suppression(ctx.session, workspace=ctx.workspace, address=address)
    return Response(status_code=204)


# --- public tracking ----------------------------------------------------------------------------


def _claims(request: Request, token: str, kind: TokenKind) -> tuple[Tidings, TokenClaims]:
    tidings: Tidings = request.app.state.tidings
    claims = read_token(tracking_key(tidings.settings.secret_key.get_secret_value()), token, kind)
    if claims is None:
        raise TidingsError("not_found", "not found", None, http_status=404)
    return tidings, claims


def _fetch(request: Request) -> outbox.Fetch:
    return outbox.Fetch(
        method=request.method,
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client else None,
    )


NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


@tracking_router.api_route("/e/o/{token}.gif", methods=["GET", "HEAD"])
async def open_pixel(token: str, request: Request) -> Response:
    """The pixel; with tracking turned off for the workspace it is answered and not recorded."""
    tidings, claims = _claims(request, token, TokenKind.OPEN)
    fetch = _fetch(request)

    def record(session: Session) -> None:
        if not outbox.tracked_message_exists(session, claims):
            raise TidingsError("not_found", "not found", None, http_status=404)
        outbox.record_open(session, claims=claims, fetch=fetch, now=tidings.clock.now())

    await tidings.db.write(record)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


@tracking_router.api_route("/e/c/{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request) -> Response:
    tidings, claims = _claims(request, token, TokenKind.CLICK)
    fetch = _fetch(request)
    url = await tidings.db.write(
        lambda session: outbox.record_click(
            session, claims=claims, fetch=fetch, now=tidings.clock.now()
        )
    )
    if url is None:
        raise TidingsError("not_found", "not found", None, http_status=404)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
color:#222}}button{{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


@tracking_router.get("/e/u/{token}")
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A page with the button; showing it changes nothing."""
    tidings, claims = _claims(request, token, TokenKind.UNSUBSCRIBE)
    with tidings.db.reading() as session:
        if not outbox.tracked_message_exists(session, claims):
            raise TidingsError("not_found", "not found", None, http_status=404)
    form = (
        "<p>You will receive no more e-mails from us.</p>"
        f'<form method="post" action="/e/u/{html.escape(token)}">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(PAGE.format(title="Unsubscribe", body=form), headers=NO_STORE)


@tracking_router.post("/e/u/{token}")
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """The button of the page, or a mail client's one-click POST (RFC 8058)."""
    tidings, claims = _claims(request, token, TokenKind.UNSUBSCRIBE)
    form = (await request.body()).decode(errors="replace")
    how = "one-click" if "List-Unsubscribe=One-Click" in form else "page"

    done = await tidings.db.write(
        lambda session: outbox.unsubscribe(session, claims=claims, how=how, now=tidings.clock.now())
    )
    if not done:
        raise TidingsError("not_found", "not found", None, http_status=404)
    return HTMLResponse(
        PAGE.format(title="Unsubscribed", body="<p>You will receive no more e-mails from us.</p>"),
        headers=NO_STORE,
    )
