"""HTTP routes of automation: segments, keyword groups, rules and their traces
(``/api/v1/segments``, ``/api/v1/keywords``, ``/api/v1/rules``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from tidings.api.deps import Context
from tidings.automation import service
from tidings.automation.intents import built_in_detector
from tidings.automation.language import words
from tidings.automation.orm import Product, Rule, RuleRun, Segment, Store
from tidings.automation.schemas import (
    CountIn,
    CountRead,
    DetectIn,
    DetectRead,
    IntentRead,
    KeywordGroupIn,
    KeywordGroupRead,
    MembersPage,
    ProductIn,
    ProductRead,
    RefreshRead,
    RuleIn,
    RuleRead,
    RuleRunRead,
    SegmentIn,
    SegmentMemberRead,
    SegmentRead,
    SkuRead,
    StoreIn,
    StoreRead,
)
from tidings.contacts import service as contacts
from tidings.webhooks.adapter import check_webhook_addresses
from tidings.workspaces.domain import Role

router = APIRouter(tags=["automation"])


def _segment(segment: Segment) -> SegmentRead:
    return SegmentRead(
        id=segment.id,
        name=segment.name,
        description=segment.description,
        condition=segment.condition,
        member_count=segment.member_count,
        refreshed_at=segment.refreshed_at,
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


@router.get("/segments")
def list_segments(ctx: Context) -> list[SegmentRead]:
    return [_segment(s) for s in service.list_segments(ctx.session, ctx.workspace)]


@router.post("/segments", status_code=201)
def create_segment(body: SegmentIn, ctx: Context) -> SegmentRead:
    ctx.require(Role.ADMIN, action="defining segments")
    data = body.model_dump(exclude_none=True)
    return _segment(
        service.save_segment(ctx.session, workspace=ctx.workspace, data=data, now=ctx.now)
    )


@router.post("/segments/count")
def count_condition(body: CountIn, ctx: Context) -> CountRead:
    """How many contacts a condition matches now, before it is saved."""
    return CountRead(
        contacts=service.count_condition(ctx.session, ctx.workspace, body.condition, now=ctx.now)
    )


@router.get("/segments/{segment_id}")
def get_segment(segment_id: int, ctx: Context) -> SegmentRead:
    return _segment(service.get_segment_or_404(ctx.session, ctx.workspace, segment_id))


@router.patch("/segments/{segment_id}")
def update_segment(segment_id: int, body: SegmentIn, ctx: Context) -> SegmentRead:
    ctx.require(Role.ADMIN, action="changing segments")
    segment = service.get_segment_or_404(ctx.session, ctx.workspace, segment_id)
    data = body.model_dump(exclude_none=True)
    return _segment(
        service.save_segment(
            ctx.session, workspace=ctx.workspace, data=data, now=ctx.now, segment=segment
        )
    )


@router.delete("/segments/{segment_id}", status_code=204)
def delete_segment(segment_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting segments")
    service.delete_segment(ctx.session, ctx.workspace, segment_id)
    return Response(status_code=204)


@router.post("/segments/{segment_id}/refresh")
def refresh_segment(segment_id: int, ctx: Context) -> RefreshRead:
    segment = service.get_segment_or_404(ctx.session, ctx.workspace, segment_id)
    entered, left = service.refresh_segment(ctx.session, ctx.workspace, segment, now=ctx.now)
    return RefreshRead(entered=entered, left=left, member_count=segment.member_count)


@router.get("/segments/{segment_id}/members")
def segment_members(
    segment_id: int,
    ctx: Context,
    after_id: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> MembersPage:
    rows = service.segment_members(
        ctx.session, ctx.workspace, segment_id, after_id=after_id, limit=limit
    )
    return MembersPage(
        items=[SegmentMemberRead(contact_id=c, entered_at=at) for c, at in rows],
        next_after_id=rows[-1][0] if len(rows) == limit else None,
    )


# --- keyword groups -----------------------------------------------------------------------------


@router.get("/keywords")
def list_keyword_groups(ctx: Context) -> list[KeywordGroupRead]:
    return [
        KeywordGroupRead(name=g.name, terms=list(g.terms.get("terms", ())), updated_at=g.updated_at)
        for g in service.list_keyword_groups(ctx.session, ctx.workspace)
    ]


@router.put("/keywords/{name}")
def save_keyword_group(name: str, body: KeywordGroupIn, ctx: Context) -> KeywordGroupRead:
    ctx.require(Role.ADMIN, action="changing keywords")
    group = service.save_keyword_group(
        ctx.session, workspace=ctx.workspace, name=name, terms=body.terms, now=ctx.now
    )
    return KeywordGroupRead(
        name=group.name, terms=list(group.terms["terms"]), updated_at=group.updated_at
    )


@router.delete("/keywords/{name}", status_code=204)
def delete_keyword_group(name: str, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="changing keywords")
    service.delete_keyword_group(ctx.session, ctx.workspace, name)
    return Response(status_code=204)


@router.post("/keywords/detect")
def detect_keywords(body: DetectIn, ctx: Context) -> DetectRead:
    """Which keyword groups a text would set off, and the words it is read as."""
    index = service.keyword_index(ctx.session, ctx.workspace.id)
    return DetectRead(words=words(body.text), keywords=index.found_in(body.text))


# --- rules --------------------------------------------------------------------------------------


def _rule(rule: Rule) -> RuleRead:
    return RuleRead(
        id=rule.id,
        name=rule.name,
        enabled=rule.enabled,
        definition=rule.definition,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


def _run(run: RuleRun) -> RuleRunRead:
    return RuleRunRead(
        id=run.id,
        rule_id=run.rule_id,
        contact_id=run.contact_id,
        event_id=run.event_id,
        status=run.status,
        reason=run.reason,
        actions_done=run.actions_done,
        depth=run.depth,
        created_at=run.created_at,
    )


@router.get("/rules")
def list_rules(ctx: Context) -> list[RuleRead]:
    return [_rule(r) for r in service.list_rules(ctx.session, ctx.workspace)]


def _check_webhooks(ctx: Context, rule: dict[str, object]) -> None:
    """A webhook action may not point at a private address unless the operator allowed it."""
    policy = ctx.tidings.webhook_policy().widened(
        allow_private=ctx.workspace.allow_private_webhooks
    )
    check_webhook_addresses(rule.get("definition"), policy, prefix="definition")


@router.post("/rules", status_code=201)
def create_rule(body: RuleIn, ctx: Context) -> RuleRead:
    ctx.require(Role.ADMIN, action="defining rules")
    data = body.model_dump(exclude_none=True)
    _check_webhooks(ctx, data)
    return _rule(service.save_rule(ctx.session, workspace=ctx.workspace, data=data, now=ctx.now))


@router.get("/rules/{rule_id}")
def get_rule(rule_id: int, ctx: Context) -> RuleRead:
    return _rule(service.get_rule_or_404(ctx.session, ctx.workspace, rule_id))


@router.patch("/rules/{rule_id}")
def update_rule(rule_id: int, body: RuleIn, ctx: Context) -> RuleRead:
    ctx.require(Role.ADMIN, action="changing rules")
    rule = service.get_rule_or_404(ctx.session, ctx.workspace, rule_id)
    data = body.model_dump(exclude_none=True)
    _check_webhooks(ctx, data)
    return _rule(
        service.save_rule(ctx.session, workspace=ctx.workspace, data=data, now=ctx.now, rule=rule)
    )


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting rules")
    service.delete_rule(ctx.session, ctx.workspace, rule_id)
    return Response(status_code=204)


@router.get("/rules/{rule_id}/runs")
def rule_runs(
    rule_id: int, ctx: Context, limit: int = Query(100, ge=1, le=1000)
) -> list[RuleRunRead]:
    service.get_rule_or_404(ctx.session, ctx.workspace, rule_id)
    return [
        _run(r) for r in service.rule_runs(ctx.session, ctx.workspace, rule_id=rule_id, limit=limit)
    ]


@router.get("/contacts/{contact_id}/rule-runs")
def contact_rule_runs(
    contact_id: int, ctx: Context, limit: int = Query(100, ge=1, le=1000)
) -> list[RuleRunRead]:
    """Why did (or didn't) automation act on this contact: its latest rule evaluations."""
    contacts.get_contact_or_404(ctx.session, ctx.workspace, contact_id)
    runs = service.rule_runs(ctx.session, ctx.workspace, contact_id=contact_id, limit=limit)
    return [_run(r) for r in runs]


# --- intents and stores -------------------------------------------------------------------------


@router.post("/intents/detect")
def detect_intent(body: DetectIn, ctx: Context) -> IntentRead:
    """The built-in intent a text would be understood as, and the cues that decided it."""
    found = built_in_detector().detect(body.text)
    return IntentRead(intent=found.intent, score=found.score, cues=list(found.cues))


def _store(store: Store) -> StoreRead:
    return StoreRead(
        id=store.id,
        name=store.name,
        address=store.address,
        latitude=store.latitude,
        longitude=store.longitude,
        hours=dict(store.hours),
        phone=store.phone,
        map_url=store.map_url,
        updated_at=store.updated_at,
    )


@router.get("/stores")
def list_stores(ctx: Context) -> list[StoreRead]:
    return [_store(s) for s in service.list_stores(ctx.session, ctx.workspace)]


@router.post("/stores", status_code=201)
def create_store(body: StoreIn, ctx: Context) -> StoreRead:
    ctx.require(Role.ADMIN, action="adding stores")
    data = body.model_dump(exclude_none=True)
    return _store(service.save_store(ctx.session, workspace=ctx.workspace, data=data, now=ctx.now))


@router.patch("/stores/{store_id}")
def update_store(store_id: int, body: StoreIn, ctx: Context) -> StoreRead:
    ctx.require(Role.ADMIN, action="changing stores")
    store = service.get_store_or_404(ctx.session, ctx.workspace, store_id)
    data = body.model_dump(exclude_unset=True)
    return _store(
        service.save_store(
            ctx.session, workspace=ctx.workspace, data=data, now=ctx.now, store=store
        )
    )


@router.delete("/stores/{store_id}", status_code=204)
def delete_store(store_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting stores")
    service.delete_store(ctx.session, ctx.workspace, store_id)
    return Response(status_code=204)


# --- products -----------------------------------------------------------------------------------


def _product(product: Product) -> ProductRead:
    return ProductRead(
        id=product.id,
        sku=product.sku,
        name=product.name,
        aliases=list((product.aliases or {}).get("aliases", [])),
        price=product.price,
        currency=product.currency,
        url=product.url,
        updated_at=product.updated_at,
    )


@router.get("/products")
def list_products(ctx: Context) -> list[ProductRead]:
    return [_product(p) for p in service.list_products(ctx.session, ctx.workspace)]


@router.get("/products/sku")
def sku_for_name(ctx: Context, name: str = Query(min_length=1, max_length=200)) -> SkuRead:
    """The SKU a product name or alias stands for (null when none or several match)."""
    return SkuRead(name=name, sku=service.sku_for(ctx.session, ctx.workspace, name))


@router.post("/products", status_code=201)
def create_product(body: ProductIn, ctx: Context) -> ProductRead:
    ctx.require(Role.ADMIN, action="adding products")
    data = body.model_dump(exclude_none=True)
    return _product(
        service.save_product(ctx.session, workspace=ctx.workspace, data=data, now=ctx.now)
    )


@router.patch("/products/{product_id}")
def update_product(product_id: int, body: ProductIn, ctx: Context) -> ProductRead:
    ctx.require(Role.ADMIN, action="changing products")
    product = service.get_product_or_404(ctx.session, ctx.workspace, product_id)
    data = body.model_dump(exclude_unset=True)
    return _product(
        service.save_product(
            ctx.session, workspace=ctx.workspace, data=data, now=ctx.now, product=product
        )
    )


@router.delete("/products/{product_id}", status_code=204)
def delete_product(product_id: int, ctx: Context) -> Response:
    ctx.require(Role.ADMIN, action="deleting products")
    service.delete_product(ctx.session, ctx.workspace, product_id)
    return Response(status_code=204)
