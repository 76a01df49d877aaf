"""HTTP routes of broadcasts (P8)."""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.deps import Context
from tidings.broadcasts import service
from tidings.broadcasts.schemas import (
    BroadcastCreated,
    BroadcastIn,
    BroadcastRead,
    EstimateRead,
    ForecastRead,
    StatisticsRead,
)
from tidings.workspaces.domain import Role

router = APIRouter(tags=["broadcasts"])


@router.post("/broadcasts", status_code=201)
def create_broadcast(body: BroadcastIn, ctx: Context) -> BroadcastCreated:
    """Schedule a template to an audience (or, with ``dry_run``, only estimate it). Every
    recipient's message obeys the sending policy: opted-out, capped or unreachable contacts
    are skipped or deferred with their reason, never dropped. Above 80% of the number's
    daily limit the send is spread into daily batches (P6)."""
    ctx.require(Role.ADMIN, action="sending broadcasts")
    broadcast, estimate = service.create_broadcast(
        ctx.session,
        workspace=ctx.workspace,
        # The fields as parsed (model_dump would print the times back into text).
        data={k: v for k, v in body if v is not None and k != "dry_run"},
        created_by=ctx.source,
        now=ctx.now,
        dry_run=body.dry_run,
    )
    return BroadcastCreated(
        broadcast=BroadcastRead.model_validate(broadcast) if broadcast else None,
        estimate=EstimateRead(
            recipients=estimate.recipients,
            expected_interactions=estimate.expected_interactions,
            daily_limit=estimate.daily_limit,
            batches=estimate.plan.batches,
            batch_size=estimate.plan.size,
            batch_every_seconds=int(estimate.plan.every.total_seconds()),
            reason=estimate.plan.reason,
            expected_cost=estimate.expected_cost,
            currency=estimate.currency,
            forecast=ForecastRead(
                decided=estimate.forecast.decided,
                outcomes=estimate.forecast.outcomes,
                reasons=estimate.forecast.reasons,
                first_send_at=estimate.forecast.first_send_at,
                last_send_at=estimate.forecast.last_send_at,
            ),
        ),
    )


@router.get("/broadcasts")
def list_broadcasts(ctx: Context) -> list[BroadcastRead]:
    return [
        BroadcastRead.model_validate(b) for b in service.list_broadcasts(ctx.session, ctx.workspace)
    ]


@router.get("/broadcasts/{broadcast_id}")
def read_broadcast(broadcast_id: int, ctx: Context) -> BroadcastRead:
    return BroadcastRead.model_validate(
        service.get_broadcast_or_404(ctx.session, ctx.workspace, broadcast_id)
    )


@router.get("/broadcasts/{broadcast_id}/statistics")
def broadcast_statistics(broadcast_id: int, ctx: Context) -> StatisticsRead:
    """Messages by status, and why the skipped, deferred and failed ones were (P7, P8)."""
    stats = service.statistics(ctx.session, ctx.workspace, broadcast_id)
    return StatisticsRead(outcomes=stats.outcomes, reasons=stats.reasons, cost=stats.cost)


@router.post("/broadcasts/{broadcast_id}/cancel")
def cancel_broadcast(broadcast_id: int, ctx: Context) -> BroadcastRead:
    """Stop it: what has not been handed to WhatsApp yet is skipped, with the reason."""
    ctx.require(Role.ADMIN, action="cancelling broadcasts")
    broadcast, _ = service.cancel_broadcast(
        ctx.session, workspace=ctx.workspace, broadcast_id=broadcast_id, now=ctx.now
    )
    return BroadcastRead.model_validate(broadcast)
