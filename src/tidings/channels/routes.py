"""HTTP routes of WhatsApp numbers (settings) and their inbound webhook endpoint."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import httpx
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from tidings.api.deps import Context, authenticate_request, decode_cursor, encode_cursor
from tidings.bootstrap import Tidings
from tidings.channels import service
from tidings.channels.domain import DEFAULT_GRAPH_URL
from tidings.channels.orm import WhatsAppInboundEvent, WhatsAppNumber
from tidings.channels.schemas import (
    MediaUploaded,
    NumberCreate,
    NumberRead,
    NumberUpdate,
    QuarantinedUpdate,
    QuarantinePage,
    ReplayRequest,
    ReplayResult,
)
from tidings.channels.whatsapp.client import MediaError, NumberEndpoint
from tidings.egress.http import EgressRefusedError, check_url
from tidings.kernel.errors import TidingsError, invalid
from tidings.messaging.domain import media_kind_for
from tidings.workspaces.domain import Role

router = APIRouter(tags=["whatsapp numbers"])


def _read(number: WhatsAppNumber, ctx: Context) -> NumberRead:
    return NumberRead(
        id=number.id,
        name=number.name,
        phone_number_id=number.phone_number_id,
        business_account_id=number.business_account_id,
        display_phone_number=number.display_phone_number,
        api_base_url=number.api_base_url,
        api_version=number.api_version,
        is_active=number.is_active,
        webhook_url=ctx.tidings.settings.public_url.rstrip("/") + service.webhook_path(number),
        created_at=number.created_at,
        updated_at=number.updated_at,
    )


@router.get("/whatsapp-numbers")
def list_numbers(ctx: Context) -> list[NumberRead]:
    return [_read(n, ctx) for n in service.list_numbers(ctx.session, ctx.workspace)]


@router.get("/whatsapp-numbers/{number_id}")
def read_number(number_id: int, ctx: Context) -> NumberRead:
    return _read(service.get_number_or_404(ctx.session, ctx.workspace, number_id), ctx)


@router.post("/whatsapp-numbers", status_code=201)
def add_number(body: NumberCreate, ctx: Context) -> NumberRead:
    ctx.require(Role.ADMIN, action="adding WhatsApp numbers")
    _check_reachable(body.api_base_url, ctx)
    number = service.add_number(
        ctx.session,
        workspace=ctx.workspace,
        data=body.model_dump(),
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    return _read(number, ctx)


@router.patch("/whatsapp-numbers/{number_id}")
def update_number(number_id: int, body: NumberUpdate, ctx: Context) -> NumberRead:
    ctx.require(Role.ADMIN, action="changing WhatsApp numbers")
    if body.api_base_url is not None:
        _check_reachable(body.api_base_url, ctx)
    number = service.update_number(
        ctx.session,
        workspace=ctx.workspace,
        number_id=number_id,
        data=body.model_dump(exclude_unset=True),
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    # A rotated app secret or a deactivated number counts at once in this process (others
    # see it within the directory's 30 s).
    ctx.tidings.webhook_directory.forget()
    return _read(number, ctx)


@router.get("/whatsapp/quarantine")
def list_quarantine(
    ctx: Context,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=service.QUARANTINE_PAGE)] = 50,
) -> QuarantinePage:
    """Webhook updates kept aside: not understood, or still failing after their retries.

    Each shows why and the update as Meta sent it; replay them once the cause is fixed.
    """
    ctx.require(Role.ADMIN, action="reading the webhook quarantine")
    rows = service.list_quarantine(
        ctx.session, ctx.workspace, after_id=decode_cursor(cursor), limit=limit
    )
    return QuarantinePage(
        items=[_quarantined(row) for row in rows],
        total=service.count_quarantined(ctx.session, ctx.workspace.id),
        next_cursor=encode_cursor(rows[-1].id) if len(rows) == limit else None,
    )


@router.post("/whatsapp/quarantine/replay")
def replay_quarantine(body: ReplayRequest, ctx: Context) -> ReplayResult:
    """Process quarantined updates again: the listed ``ids``, or ``all`` of them."""
    ctx.require(Role.ADMIN, action="replaying webhook updates")
    if body.all == (body.ids is not None):
        raise invalid("choose_one", "give either ids or all: true", field="ids")
    replayed = service.replay_quarantined(
        ctx.session, ctx.workspace, ids=None if body.all else body.ids
    )
    return ReplayResult(replayed=replayed)


def _quarantined(row: WhatsAppInboundEvent) -> QuarantinedUpdate:
    raw = row.payload
    if service.RAW_TEXT in raw:
        with contextlib.suppress(ValueError):  # else shown as the text it is
            raw = json.loads(str(raw[service.RAW_TEXT]))
        raw = raw if isinstance(raw, dict) else {service.RAW_TEXT: row.payload[service.RAW_TEXT]}
    assert row.quarantined_at is not None  # only quarantined rows are listed
    return QuarantinedUpdate(
        id=row.id,
        number_id=row.number_id,
        kind=row.kind,
        key=row.event_key,
        reason=row.last_error,
        attempts=row.attempts,
        received_at=row.received_at,
        quarantined_at=row.quarantined_at,
        raw=raw,
    )


def _check_reachable(api_base_url: str, ctx: Context) -> None:
    """The number's access token goes to this address with every call: refuse one in a
    private network (metadata services, our own hosts) unless the operator allowed it."""
    if api_base_url.strip().rstrip("/") == DEFAULT_GRAPH_URL:
        return
    try:
        check_url(api_base_url.strip(), ctx.tidings.egress_policy)
    except EgressRefusedError as refused:
        raise invalid("refused_address", str(refused), field="api_base_url") from None


webhook_router = APIRouter(tags=["webhooks"])


@webhook_router.get("/webhooks/whatsapp/{webhook_key}", response_class=PlainTextResponse)
def verify_webhook(webhook_key: str, request: Request) -> PlainTextResponse:
    """Meta's verification handshake: echo ``hub.challenge`` when the token matches."""
    tidings = request.app.state.tidings
    with tidings.db.reading() as session:
        number = service.find_number_by_webhook_key(session, webhook_key)
        challenge = service.answer_handshake(number, dict(request.query_params), tidings.secret_box)
    return PlainTextResponse(challenge)


@webhook_router.post("/webhooks/whatsapp/{webhook_key}")
async def receive_webhook(webhook_key: str, request: Request) -> dict[str, int]:
    """Keep a signed POST as received, then answer 200; the worker splits and handles it."""
    raw = await request.body()
    signature = request.headers.get("x-hub-signature-256")
    tidings: Tidings = request.app.state.tidings
    target = await run_in_threadpool(
        tidings.webhook_directory.target, tidings.db.reading, webhook_key, tidings.secret_box
    )
    return {
        "received": await tidings.db.write(
            lambda session: service.accept_webhook(
                session, target=target, raw_body=raw, signature=signature, now=tidings.clock.now()
            )
        )
    }


@router.post("/whatsapp-numbers/{number_id}/media", status_code=201)
async def upload_media(
    number_id: int, request: Request, file: Annotated[UploadFile, File()]
) -> MediaUploaded:
    """Upload a file to send by id; checked against WhatsApp's types and sizes first (I5).

    Runs outside a write transaction: the upload to the provider may take seconds.
    """
    data = await file.read()
    mime_type = file.content_type or ""
    kind = media_kind_for(mime_type, len(data))
    tidings: Tidings = request.app.state.tidings
    endpoint = await run_in_threadpool(_endpoint_for_upload, tidings, request, number_id)
    try:
        media_id = await run_in_threadpool(
            tidings.whatsapp.upload_media,
            endpoint,
            data,
            mime_type=mime_type,
            filename=file.filename or f"upload.{kind}",
        )
    except MediaError as error:
        raise TidingsError(
            "provider_refused", f"WhatsApp refused the file: {error}", "file", 502
        ) from None
    except (httpx.TransportError, EgressRefusedError) as error:
        raise TidingsError(
            "provider_unreachable",
            f"WhatsApp could not be reached for the upload ({type(error).__name__}: {error}); "
            "nothing was sent, try again",
            "file",
            502,
        ) from None
    except (ValueError, KeyError) as error:
        raise TidingsError(
            "provider_bad_answer",
            f"WhatsApp's answer to the upload carried no media id ({error})",
            "file",
            502,
        ) from None
    return MediaUploaded(id=media_id, kind=kind, mime_type=mime_type, size=len(data))


def _endpoint_for_upload(tidings: Tidings, request: Request, number_id: int) -> NumberEndpoint:
    # Authenticated as every request is (an API key, or the web app's session and its CSRF
    # token), in a short read of its own: the upload itself runs with no transaction open.
    with tidings.db.reading() as session:
        _, workspace = authenticate_request(session, request, now=tidings.clock.now())
        number = service.get_active_number(session, workspace, number_id)
        endpoint = service.endpoints_for(session, [number.id], tidings.secret_box)[number.id]
    assert endpoint is not None  # the number is active
    return endpoint
