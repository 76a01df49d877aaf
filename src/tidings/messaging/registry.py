"""The template registry: the WhatsApp templates each number may send, synced from the
provider's templates endpoint or defined here, and the check every template message passes
before it is queued. Runs inside the caller's transaction; never commits.

Once a number's templates have been synced, a template message must name one of them: a
typo or a template Meta has paused is refused at once with the field at fault, instead of
failing later with code 132001. Before any sync, unknown names pass (the provider decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tidings.channels import service as channels
from tidings.channels.whatsapp.client import CloudApiClient, ProviderRequestError
from tidings.kernel.errors import TidingsError, conflict, invalid, not_found
from tidings.kernel.sealing import SecretBox
from tidings.messaging.domain import Purpose
from tidings.messaging.orm import MessageTemplate
from tidings.messaging.templates import (
    TemplateCategory,
    TemplateShape,
    TemplateStatus,
    check_definition,
    check_send,
    purpose_of,
)
from tidings.workspaces.orm import Workspace


def list_templates(
    session: Session, workspace: Workspace, *, number_id: int | None = None
) -> list[MessageTemplate]:
    query = select(MessageTemplate).where(MessageTemplate.workspace_id == workspace.id)
    if number_id is not None:
        query = query.where(MessageTemplate.number_id == number_id)
    return list(
        session.scalars(
            query.order_by(MessageTemplate.name, MessageTemplate.language, MessageTemplate.id)
        )
    )


def get_template_or_404(
    session: Session, workspace: Workspace, template_id: int
) -> MessageTemplate:
    found = session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.workspace_id == workspace.id, MessageTemplate.id == template_id
        )
    )
    if found is None:
        raise not_found("template")
    return found


def define_template(
    session: Session,
    *,
    workspace: Workspace,
    number_id: int | None,
    data: Mapping[str, Any],
    now: datetime,
) -> MessageTemplate:
    """Register a template defined here (e.g. submitted to Meta by other means).

    Raises:
        TidingsError: 422 naming the field; 409 when the number already has that name and
            language.
    """
    checked = check_definition(data)
    number = (
        channels.get_active_number(session, workspace, number_id)
        if number_id is not None
        else channels.default_number(session, workspace)
    )
    if _find(session, number.id, checked["name"], checked["language"]) is not None:
        raise conflict(
            "duplicate_template",
            f"{checked['name']} ({checked['language']}) is already registered for this number",
            field="name",
        )
    template = MessageTemplate(
        workspace_id=workspace.id,
        number_id=number.id,
        name=checked["name"],
        language=checked["language"],
        category=checked["category"].value,
        status=TemplateStatus.LOCAL.value,
        components=checked["components"],
        source="local",
        provider_id=None,
        synced_at=None,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    session.flush()
    return template


def delete_template(session: Session, *, workspace: Workspace, template_id: int) -> None:
    session.delete(get_template_or_404(session, workspace, template_id))


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    unchanged: int
    gone: int


def sync_templates(
    session: Session,
    *,
    workspace: Workspace,
    number_id: int,
    client: CloudApiClient,
    box: SecretBox,
    now: datetime,
) -> SyncReport:
    """Fetch the business account's templates and bring the registry in line: new ones
    added, changed ones updated (status, category, components), and synced ones the provider
    no longer lists marked ``disabled`` (kept, since messages refer to them).

    Raises:
        TidingsError: 404 for another workspace's number; 502 naming the provider's error.
    """
    number = channels.get_active_number(session, workspace, number_id)
    endpoint = channels.endpoints_for(session, [number.id], box)[number.id]
    assert endpoint is not None  # an active number has an endpoint
    try:
        listed = client.list_templates(endpoint, number.business_account_id)
    except ProviderRequestError as error:
        raise TidingsError(
            "provider_error",
            f"WhatsApp refused to list templates: {error.error.code} {error.error.title}",
            "number_id",
            http_status=502,
        ) from None
    known = {
        (t.name, t.language): t for t in list_templates(session, workspace, number_id=number.id)
    }
    added = updated = unchanged = 0
    seen: set[tuple[str, str]] = set()
    for item in listed:
        name, language = str(item.get("name", "")), str(item.get("language", ""))
        if not name or not language:
            continue
        seen.add((name, language))
        values = {
            "category": _category(item.get("category")).value,
            "status": TemplateStatus.from_provider(item.get("status")).value,
            "components": list(item.get("components") or []),
            "provider_id": str(item.get("id")) if item.get("id") is not None else None,
        }
        existing = known.get((name, language))
        if existing is None:
            session.add(
                MessageTemplate(
                    workspace_id=workspace.id,
                    number_id=number.id,
                    name=name,
                    language=language,
                    source="synced",
                    synced_at=now,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            )
            added += 1
            continue
        changed = any(getattr(existing, key) != value for key, value in values.items())
        existing.source, existing.synced_at = "synced", now
        if changed:
            for key, value in values.items():
                setattr(existing, key, value)
            existing.updated_at = now
            updated += 1
        else:
            unchanged += 1
    gone = 0
    for pair, template in known.items():
        withdrawn = pair not in seen and template.source == "synced"
        if withdrawn and template.status != TemplateStatus.DISABLED.value:
            template.status, template.updated_at = TemplateStatus.DISABLED.value, now
            gone += 1
    session.flush()
    return SyncReport(added, updated, unchanged, gone)


def _category(value: Any) -> TemplateCategory:
    try:
        return TemplateCategory(str(value).lower())
    except ValueError:
        return TemplateCategory.MARKETING  # unknown: treat with the strictest caps


def template_exists(session: Session, *, number_id: int, name: str, language: str) -> bool:
    return _find(session, number_id, name, language) is not None


def _find(session: Session, number_id: int, name: str, language: str) -> MessageTemplate | None:
    return session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.number_id == number_id,
            MessageTemplate.name == name,
            MessageTemplate.language == language,
        )
    )


def check_template_message(
    session: Session, *, number_id: int, content: Mapping[str, Any], purpose: Purpose
) -> Purpose:
    """Check a template message against the registry; returns the purpose it is sent with
    (a marketing template is marketing whatever was asked). Other kinds pass unchanged.

    Raises:
        TidingsError: 422 for a template this number does not have (once synced), one that
            is not approved, or parameters that do not fit its placeholders.
    """
    if content.get("type") != "template":
        return purpose
    body = content.get("template") or {}
    name, language = body.get("name"), (body.get("language") or {}).get("code")
    found = _find(session, number_id, str(name), str(language))
    if found is None:
        synced = session.scalar(
            select(MessageTemplate.id)
            .where(MessageTemplate.number_id == number_id, MessageTemplate.source == "synced")
            .limit(1)
        )
        if synced is not None:
            raise invalid(
                "unknown_template",
                f"this number has no template {name!r} in {language!r}; sync the templates "
                "or check the name and language",
                field="content.template.name",
            )
        return purpose
    check_send(TemplateShape.of(found.components), TemplateStatus(found.status), content)
    imposed = purpose_of(TemplateCategory(found.category))
    return imposed if imposed == Purpose.MARKETING else purpose
