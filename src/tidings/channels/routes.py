"""HTTP routes of WhatsApp numbers (settings); the webhook endpoint comes with the inbox."""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.deps import Context
from tidings.channels import service
from tidings.channels.orm import WhatsAppNumber
from tidings.channels.schemas import NumberCreate, NumberRead, NumberUpdate
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
    number = service.update_number(
        ctx.session,
        workspace=ctx.workspace,
        number_id=number_id,
        data=body.model_dump(exclude_unset=True),
        box=ctx.tidings.secret_box,
        now=ctx.now,
    )
    return _read(number, ctx)
