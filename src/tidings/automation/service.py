"""Use cases of automation: segments (A3), keyword groups (A2) and rules (A1). Every function
runs inside the caller's transaction and never commits."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tidings.automation.answers import StoreInfo, check_hours
from tidings.automation.domain import OnKeyword, OnSchedule, RuleDefinition, next_run
from tidings.automation.facts import facts_of, sources_for
from tidings.automation.language import KeywordGroupTerms, KeywordIndex, check_terms, normalise
from tidings.automation.orm import (
    KeywordGroup,
    Product,
    Rule,
    RuleRun,
    Segment,
    SegmentMember,
    Store,
)
from tidings.automation.products import Catalogue, CatalogueEntry
from tidings.conditions.domain import (
    MAX_CONDITION_PARTS,
    Condition,
    FieldIs,
    InSegment,
    KeywordSaid,
    count_parts,
    error_path,
    evaluate,
    fold,
    step_conditions,
    walk,
)
from tidings.contacts import service as contacts
from tidings.db.base import among, bulk_insert, table_of
from tidings.kernel.errors import conflict, invalid, not_found
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

CONDITION = TypeAdapter(Condition)
TAGS = ("do", "on")


# --- reading definitions ------------------------------------------------------------------------


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return str(error["msg"])
    return str(error["msg"]).removeprefix("Value error, ")


def parse_condition(
    session: Session, workspace: Workspace, data: Any, *, field: str, segment_key: str | None = None
) -> Any:
    """A condition for audiences (no sequence steps), with every field and segment it names
    known in the workspace.

    Raises:
        TidingsError: 422 naming ``field`` or the part of it at fault.
    """
    parts = count_parts(data)
    if parts > MAX_CONDITION_PARTS:
        raise invalid(
            "condition_too_large",
            f"a condition has at most {MAX_CONDITION_PARTS} parts; this one has {parts}",
            field=field,
        )
    try:
        condition = CONDITION.validate_python(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid(
            "invalid_condition",
            _message(first),
            field=error_path(first["loc"], data, root=field, tag_keys=TAGS),
        ) from None
    check_condition(session, workspace, condition, field=field, segment_key=segment_key)
    return condition


def check_condition(
    session: Session,
    workspace: Workspace,
    condition: Any,
    *,
    field: str,
    segment_key: str | None = None,
) -> None:
    if step_conditions(condition):
        raise invalid(
            "step_condition",
            "read, delivered, opened, clicked and replied speak of a sequence's steps",
            field=field,
        )
    specs = contacts.field_specs(session, workspace)
    known_segments = {s.key for s in list_segments(session, workspace)}
    groups: set[str] | None = None  # read once, if a keyword is named
    for node in walk(condition):
        if isinstance(node, KeywordSaid):
            groups = groups if groups is not None else keyword_group_names(session, workspace)
            check_keyword_group(node.keyword, groups, field=f"{field}.keyword")
        unknown_field = (
            isinstance(node, FieldIs)
            and node.field not in contacts.CONDITION_FIELDS
            and node.field not in specs
        )
        if unknown_field:
            raise invalid(
                "unknown_field", f"no contact field {node.field!r}", field=f"{field}.field"
            )
        if isinstance(node, InSegment):
            key = fold(node.in_segment)
            if key == segment_key:
                raise invalid(
                    "self_reference", "a segment cannot contain itself", field=f"{field}.in_segment"
                )
            if key not in known_segments:
                raise invalid(
                    "unknown_segment",
                    f"no segment {node.in_segment!r}",
                    field=f"{field}.in_segment",
                )


def dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return dumped


# --- segments -----------------------------------------------------------------------------------


def list_segments(session: Session, workspace: Workspace) -> Sequence[Segment]:
    return session.scalars(
        select(Segment).where(Segment.workspace_id == workspace.id).order_by(Segment.name)
    ).all()


def get_segment_or_404(session: Session, workspace: Workspace, segment_id: int) -> Segment:
    segment = session.get(Segment, segment_id)
    if segment is None or segment.workspace_id != workspace.id:
        raise not_found("segment")
    return segment


def _segment_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(" ".join(value.split())) <= 200:
        raise invalid("invalid_name", "a name of 1-200 characters", field="name")
    return " ".join(value.split())


def save_segment(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    now: datetime,
    segment: Segment | None = None,
) -> Segment:
    """Create a segment, or change one (name, description, condition); its members are
    computed at once, and those who enter or leave get a timeline event.

    Raises:
        TidingsError: 422 naming the field at fault, 409 for a name in use.
    """
    name = _segment_name(data.get("name", segment.name if segment else None))
    key = fold(name)
    clash = session.scalar(
        select(Segment).where(Segment.workspace_id == workspace.id, Segment.key == key)
    )
    if clash is not None and clash is not segment:
        raise conflict("segment_exists", f"a segment named {name!r} exists", field="name")
    description = data.get("description", segment.description if segment else "")
    if not isinstance(description, str) or len(description) > 2000:
        raise invalid("invalid_type", "a text of at most 2,000 characters", field="description")
    if segment is None and "condition" not in data:
        raise invalid("required", "a segment needs a condition", field="condition")
    if "condition" in data:
        condition = parse_condition(
            session, workspace, data["condition"], field="condition", segment_key=key
        )
        stored = dump(condition)
    else:
        assert segment is not None
        stored = segment.condition
    if segment is None:
        segment = Segment(
            workspace_id=workspace.id, created_at=now, member_count=0, condition=stored
        )
        session.add(segment)
    segment.name, segment.key, segment.description = name, key, description
    segment.condition, segment.updated_at = stored, now
    session.flush()
    refresh_segment(session, workspace, segment, now=now)
    return segment


def delete_segment(session: Session, workspace: Workspace, segment_id: int) -> None:
    segment = get_segment_or_404(session, workspace, segment_id)
    session.delete(segment)
    session.flush()


def refresh_segment(
    session: Session, workspace: Workspace, segment: Segment, *, now: datetime
) -> tuple[int, int]:
    """Recompute the members in one query and store only the difference; every contact who
    entered or left gets ``segment.entered`` / ``segment.left`` (which rules may react to).
    Returns (entered, left)."""
    condition = CONDITION.validate_python(segment.condition)
    query = contacts.matching_ids_query(
        session, workspace.id, condition, as_of=now, sources=sources_for(workspace.id)
    )
    matching = set(session.scalars(query))
    stored = set(
        session.scalars(
            select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment.id)
        )
    )
    entered, left = sorted(matching - stored), sorted(stored - matching)
    _move(session, workspace, segment, entered, left, now)
    segment.member_count = len(matching)
    segment.refreshed_at = now
    return len(entered), len(left)


def refresh_all_segments(session: Session, *, now: datetime) -> int:
    """The periodic pass: every segment of every workspace recomputed (time passing moves
    contacts in and out of windowed conditions). Returns how many contacts moved."""
    moved = 0
    for segment in session.scalars(select(Segment).order_by(Segment.id)).all():
        workspace = workspaces.get_workspace(session, segment.workspace_id)
        if workspace is not None:
            entered, left = refresh_segment(session, workspace, segment, now=now)
            moved += entered + left
    return moved


def refresh_contacts(
    session: Session, workspace: Workspace, contact_ids: Sequence[int], *, now: datetime
) -> None:
    """Bring these contacts' memberships up to date at once (after something happened to
    them), judging each segment in Python on their facts rather than over everyone."""
    wanted = sorted(set(contact_ids))
    if not wanted:
        return
    for segment in list_segments(session, workspace):
        condition = CONDITION.validate_python(segment.condition)
        facts = facts_of(session, wanted, condition)
        holds = {cid for cid, known in facts.items() if evaluate(condition, known, now)}
        stored = set(
            session.scalars(
                select(SegmentMember.contact_id).where(
                    SegmentMember.segment_id == segment.id,
                    among(session, SegmentMember.contact_id, wanted),
                )
            )
        )
        entered, left = sorted(holds - stored), sorted((stored - holds) & set(facts))
        if entered or left:
            _move(session, workspace, segment, entered, left, now)
            segment.member_count += len(entered) - len(left)


def _move(
    session: Session,
    workspace: Workspace,
    segment: Segment,
    entered: list[int],
    left: list[int],
    now: datetime,
) -> None:
    if entered:
        bulk_insert(
            session,
            table_of(SegmentMember),
            [{"segment_id": segment.id, "contact_id": c, "entered_at": now} for c in entered],
        )
    if left:
        session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == segment.id,
                among(session, SegmentMember.contact_id, left),
            )
        )
    for kind, ids in (("segment.entered", entered), ("segment.left", left)):
        for contact_id in ids:
            contacts.log_event(
                session,
                workspace,
                contact_id,
                kind,
                now,
                {"segment": segment.name, "segment_id": segment.id},
                "segments",
            )


def segment_members(
    session: Session, workspace: Workspace, segment_id: int, *, after_id: int, limit: int
) -> list[tuple[int, datetime]]:
    segment = get_segment_or_404(session, workspace, segment_id)
    rows = session.execute(
        select(SegmentMember.contact_id, SegmentMember.entered_at)
        .where(SegmentMember.segment_id == segment.id, SegmentMember.contact_id > after_id)
        .order_by(SegmentMember.contact_id)
        .limit(limit)
    )
    return [(int(cid), at) for cid, at in rows]


def count_condition(session: Session, workspace: Workspace, data: Any, *, now: datetime) -> int:
    """How many contacts a condition matches now (a segment's preview before saving)."""
    condition = parse_condition(session, workspace, data, field="condition")
    return contacts.count_matching(
        session, workspace.id, condition, as_of=now, sources=sources_for(workspace.id)
    )


# --- keyword groups -----------------------------------------------------------------------------


def list_keyword_groups(session: Session, workspace: Workspace) -> Sequence[KeywordGroup]:
    return session.scalars(
        select(KeywordGroup)
        .where(KeywordGroup.workspace_id == workspace.id)
        .order_by(KeywordGroup.name)
    ).all()


def save_keyword_group(
    session: Session, *, workspace: Workspace, name: Any, terms: Any, now: datetime
) -> KeywordGroup:
    """Create or replace the group ``name`` (its terms in any of the languages).

    Raises:
        TidingsError: 422 naming ``name`` or ``terms``.
    """
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 64:
        raise invalid("invalid_name", "a name of 1-64 characters", field="name")
    try:
        cleaned = check_terms(terms)
    except ValueError as error:
        raise invalid("invalid_terms", str(error), field="terms") from None
    key = group_key(name)
    group = session.scalar(
        select(KeywordGroup).where(
            KeywordGroup.workspace_id == workspace.id, KeywordGroup.name == key
        )
    )
    if group is None:
        group = KeywordGroup(workspace_id=workspace.id, name=key, created_at=now, terms={})
        session.add(group)
    group.terms, group.updated_at = {"terms": cleaned}, now
    session.flush()
    return group


def group_key(name: str) -> str:
    """How a keyword group's name is kept and compared: folded, single-spaced."""
    return fold(" ".join(name.split()))


def keyword_group_names(session: Session, workspace: Workspace) -> set[str]:
    return set(
        session.scalars(select(KeywordGroup.name).where(KeywordGroup.workspace_id == workspace.id))
    )


def check_keyword_group(keyword: str, groups: set[str], *, field: str) -> None:
    """A rule or segment that names a group that does not exist would never fire or match:
    refused, naming the field, instead of saved silently.

    Raises:
        TidingsError: 422 ``unknown_keyword_group``.
    """
    if group_key(keyword) not in groups:
        known = ", ".join(sorted(groups)[:10]) or "none yet"
        raise invalid(
            "unknown_keyword_group",
            f"no keyword group {keyword!r} (groups: {known}); create it with its words first",
            field=field,
        )


def delete_keyword_group(session: Session, workspace: Workspace, name: str) -> None:
    """Remove a group no rule or segment names.

    Raises:
        TidingsError: 404 for an unknown group, 409 naming what still uses it.
    """
    key = group_key(name)
    group = session.scalar(
        select(KeywordGroup).where(
            KeywordGroup.workspace_id == workspace.id, KeywordGroup.name == key
        )
    )
    if group is None:
        raise not_found("keyword group", field="name")
    users = [f"rule {r.name!r}" for r in list_rules(session, workspace) if key in _rule_keywords(r)]
    users += [
        f"segment {s.name!r}"
        for s in list_segments(session, workspace)
        if key in _condition_keywords(CONDITION.validate_python(s.condition))
    ]
    if users:
        raise conflict(
            "keyword_group_in_use",
            f"keyword group {group.name!r} is used by {', '.join(users)}",
            field="name",
        )
    session.delete(group)


def _rule_keywords(rule: Rule) -> set[str]:
    definition = RuleDefinition.model_validate(rule.definition)
    found = _condition_keywords(definition.condition) if definition.condition else set()
    if isinstance(definition.trigger, OnKeyword):
        found.add(group_key(definition.trigger.keyword))
    return found


def _condition_keywords(condition: Any) -> set[str]:
    return {group_key(n.keyword) for n in walk(condition) if isinstance(n, KeywordSaid)}


def keyword_index(session: Session, workspace_id: int) -> KeywordIndex:
    groups = session.scalars(
        select(KeywordGroup).where(KeywordGroup.workspace_id == workspace_id)
    ).all()
    return KeywordIndex.of(
        KeywordGroupTerms(g.name, tuple(g.terms.get("terms", ()))) for g in groups
    )


# --- rules --------------------------------------------------------------------------------------


def parse_rule(session: Session, workspace: Workspace, data: Any) -> RuleDefinition:
    """Raises ``TidingsError`` (422) naming the field at fault (``definition.actions[1].tag``)."""
    try:
        definition = RuleDefinition.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid(
            "invalid_rule",
            _message(first),
            field=error_path(first["loc"], data, root="definition", tag_keys=TAGS),
        ) from None
    if isinstance(definition.trigger, OnKeyword):
        check_keyword_group(
            definition.trigger.keyword,
            keyword_group_names(session, workspace),
            field="definition.trigger.keyword",
        )
    if definition.condition is not None:
        check_condition(session, workspace, definition.condition, field="definition.condition")
    return definition


def list_rules(session: Session, workspace: Workspace) -> Sequence[Rule]:
    return session.scalars(
        select(Rule).where(Rule.workspace_id == workspace.id).order_by(Rule.name)
    ).all()


def get_rule_or_404(session: Session, workspace: Workspace, rule_id: int) -> Rule:
    rule = session.get(Rule, rule_id)
    if rule is None or rule.workspace_id != workspace.id:
        raise not_found("rule")
    return rule


def save_rule(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    now: datetime,
    rule: Rule | None = None,
) -> Rule:
    """Create a rule or change one (name, enabled, definition).

    Raises:
        TidingsError: 422 naming the field at fault, 409 for a name in use.
    """
    name = data.get("name", rule.name if rule else None)
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise invalid("invalid_name", "a name of 1-200 characters", field="name")
    name = " ".join(name.split())
    clash = session.scalar(select(Rule).where(Rule.workspace_id == workspace.id, Rule.name == name))
    if clash is not None and clash is not rule:
        raise conflict("rule_exists", f"a rule named {name!r} exists", field="name")
    enabled = data.get("enabled", rule.enabled if rule else True)
    if not isinstance(enabled, bool):
        raise invalid("invalid_type", "true or false", field="enabled")
    if rule is None and "definition" not in data:
        raise invalid("required", "a rule needs a definition", field="definition")
    stored = (
        dump(parse_rule(session, workspace, data["definition"]))
        if "definition" in data
        else rule.definition  # type: ignore[union-attr]
    )
    if rule is None:
        rule = Rule(workspace_id=workspace.id, created_at=now, definition=stored)
        session.add(rule)
    rule.name, rule.enabled, rule.definition, rule.updated_at = name, enabled, stored, now
    trigger = RuleDefinition.model_validate(stored).trigger
    rule.next_run_at = (
        next_run(trigger, now, ZoneInfo(workspace.timezone))
        if isinstance(trigger, OnSchedule) and enabled
        else None
    )
    session.flush()
    return rule


def delete_rule(session: Session, workspace: Workspace, rule_id: int) -> None:
    session.delete(get_rule_or_404(session, workspace, rule_id))
    session.flush()


def rule_runs(
    session: Session,
    workspace: Workspace,
    *,
    rule_id: int | None = None,
    contact_id: int | None = None,
    limit: int = 100,
) -> Sequence[RuleRun]:
    """The latest evaluations of a rule or for a contact, newest first (the "why" panel)."""
    query = select(RuleRun).where(RuleRun.workspace_id == workspace.id)
    if rule_id is not None:
        query = query.where(RuleRun.rule_id == rule_id)
    if contact_id is not None:
        query = query.where(RuleRun.contact_id == contact_id)
    return session.scalars(query.order_by(RuleRun.id.desc()).limit(limit)).all()


# --- stores -------------------------------------------------------------------------------------


def list_stores(session: Session, workspace: Workspace) -> Sequence[Store]:
    return session.scalars(
        select(Store).where(Store.workspace_id == workspace.id).order_by(Store.name)
    ).all()


def get_store_or_404(session: Session, workspace: Workspace, store_id: int) -> Store:
    store = session.get(Store, store_id)
    if store is None or store.workspace_id != workspace.id:
        raise not_found("store")
    return store


def save_store(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    now: datetime,
    store: Store | None = None,
) -> Store:
    """Create or change a store.

    Raises:
        TidingsError: 422 naming the field at fault, 409 for a name in use.
    """

    def given(key: str) -> Any:
        return data[key] if key in data else getattr(store, key, None)

    name = given("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise invalid("invalid_name", "a name of 1-200 characters", field="name")
    name = " ".join(name.split())
    clash = session.scalar(
        select(Store).where(Store.workspace_id == workspace.id, Store.name == name)
    )
    if clash is not None and clash is not store:
        raise conflict("store_exists", f"a store named {name!r} exists", field="name")
    address = given("address")
    if not isinstance(address, str) or not 1 <= len(address.strip()) <= 500:
        raise invalid("invalid_address", "an address of 1-500 characters", field="address")
    place = {}
    for key, limit in (("latitude", 90), ("longitude", 180)):
        value = given(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > limit:
            raise invalid("invalid_coordinate", f"a number from -{limit} to {limit}", field=key)
        place[key] = float(value)
    try:
        hours = check_hours(given("hours") or {})
    except ValueError as error:
        raise invalid("invalid_hours", str(error), field="hours") from None
    extras = {}
    for key, limit in (("phone", 32), ("map_url", 1000)):
        value = given(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise invalid("invalid_type", f"a text of at most {limit} characters", field=key)
        extras[key] = value or None
    if store is None:
        store = Store(workspace_id=workspace.id, created_at=now)
        session.add(store)
    store.name, store.address, store.hours, store.updated_at = name, address.strip(), hours, now
    store.latitude, store.longitude = place["latitude"], place["longitude"]
    store.phone, store.map_url = extras["phone"], extras["map_url"]
    session.flush()
    return store


def delete_store(session: Session, workspace: Workspace, store_id: int) -> None:
    session.delete(get_store_or_404(session, workspace, store_id))
    session.flush()


def store_infos(session: Session, workspace_id: int) -> list[StoreInfo]:
    rows = session.scalars(
        select(Store).where(Store.workspace_id == workspace_id).order_by(Store.name)
    ).all()
    return [
        StoreInfo(s.name, s.address, s.latitude, s.longitude, dict(s.hours), s.phone, s.map_url)
        for s in rows
    ]


def due_scheduled_rules(session: Session, *, now: datetime, limit: int) -> Sequence[Rule]:
    """Enabled scheduled rules whose next run has come, locked for this worker."""
    return session.scalars(
        select(Rule)
        .where(Rule.enabled.is_(True), Rule.next_run_at.is_not(None), Rule.next_run_at <= now)
        .order_by(Rule.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


# --- products -----------------------------------------------------------------------------------

SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}")
PRICE = re.compile(r"\d{1,12}(\.\d{1,4})?")


def list_products(session: Session, workspace: Workspace) -> Sequence[Product]:
    return session.scalars(
        select(Product).where(Product.workspace_id == workspace.id).order_by(Product.sku)
    ).all()


def get_product_or_404(session: Session, workspace: Workspace, product_id: int) -> Product:
    product = session.get(Product, product_id)
    if product is None or product.workspace_id != workspace.id:
        raise not_found("product")
    return product


def save_product(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    now: datetime,
    product: Product | None = None,
) -> Product:
    """Create or change a catalogue product; its name and aliases are what customers and
    other systems call it.

    Raises:
        TidingsError: 422 naming the field at fault, 409 for a SKU or alias in use.
    """

    def given(key: str) -> Any:
        if key in data:
            return data[key]
        if key == "aliases":
            return (product.aliases or {}).get("aliases", []) if product else []
        return getattr(product, key, None)

    sku = given("sku")
    if not isinstance(sku, str) or not SKU.fullmatch(sku.strip()):
        raise invalid(
            "invalid_sku",
            "1-64 letters, digits and . _ - / (starting with one of the first two)",
            field="sku",
        )
    sku = sku.strip()
    name = given("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise invalid("invalid_name", "a name of 1-200 characters", field="name")
    aliases = given("aliases")
    try:
        aliases = check_terms([name.strip(), *(aliases or [])])[1:]
    except ValueError as error:
        raise invalid("invalid_aliases", str(error), field="aliases") from None
    price = given("price")
    if price is not None and (
        not isinstance(price, str | int | float)
        or isinstance(price, bool)
        or not PRICE.fullmatch(str(price))
    ):
        raise invalid("invalid_price", "a decimal number such as 1290 or 1290.50", field="price")
    currency = given("currency")
    if currency is not None and (
        not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency)
    ):
        raise invalid("invalid_currency", "an ISO 4217 code such as THB", field="currency")
    url = given("url")
    if url is not None and (not isinstance(url, str) or len(url) > 1000):
        raise invalid("invalid_url", "a text of at most 1,000 characters", field="url")
    others = [p for p in list_products(session, workspace) if p is not product]
    if any(p.sku == sku for p in others):
        raise conflict("sku_exists", f"a product with SKU {sku!r} exists", field="sku")
    taken = {
        normalise(term): p.sku
        for p in others
        for term in (p.name, *(p.aliases or {}).get("aliases", []))
    }
    for term in (name.strip(), *aliases):
        if normalise(term) in taken:
            raise conflict(
                "alias_in_use",
                f"{term!r} already names product {taken[normalise(term)]}",
                field="aliases",
            )
    if product is None:
        product = Product(workspace_id=workspace.id, created_at=now)
        session.add(product)
    product.sku, product.name, product.aliases = sku, name.strip(), {"aliases": aliases}
    product.price = None if price is None else str(price)
    product.currency, product.url, product.updated_at = currency, url, now
    session.flush()
    return product


def delete_product(session: Session, workspace: Workspace, product_id: int) -> None:
    session.delete(get_product_or_404(session, workspace, product_id))
    session.flush()


def catalogue(session: Session, workspace_id: int) -> Catalogue:
    rows = session.scalars(select(Product).where(Product.workspace_id == workspace_id)).all()
    return Catalogue.of(
        CatalogueEntry(p.sku, p.name, tuple((p.aliases or {}).get("aliases", []))) for p in rows
    )


def sku_for(session: Session, workspace: Workspace, name: str) -> str | None:
    """The SKU a product name or alias stands for ("iPhone15 Pro Max" → "APL-IP15PM"): the
    normalisation rule of field mapping (C5). Exact after folding case and width, else the one
    product the name mentions."""
    products = list_products(session, workspace)
    wanted = normalise(name.strip())
    for product in products:
        if wanted in {
            normalise(t) for t in (product.name, *(product.aliases or {}).get("aliases", []))
        }:
            return product.sku
    found = catalogue(session, workspace.id).mentioned(name)
    return found[0] if len(found) == 1 else None
