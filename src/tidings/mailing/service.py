"""Use cases of e-mail: sender identities, templates and their preview, queueing an e-mail
through the sending policy, and what comes back — opens, clicks, unsubscribes and bounces.

Every function runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tidings.contacts import service as contacts
from tidings.db.base import among
from tidings.kernel.errors import conflict, not_found
from tidings.kernel.sealing import SecretBox
from tidings.kernel.templating import check_template
from tidings.mailing.domain import (
    RenderedEmail,
    check_smtp_settings,
    render_email,
)
from tidings.mailing.orm import EmailSender, EmailSuppression, EmailTemplate
from tidings.workspaces.orm import Workspace

SENDER_FIELDS = (
    "name",
    "from_name",
    "from_address",
    "reply_to",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "connections",
    "dkim_domain",
    "dkim_selector",
    "is_default",
    "is_active",
)
SEALED = {"smtp_password": "smtp_password_sealed", "dkim_private_key": "dkim_key_sealed"}


# --- sender identities --------------------------------------------------------------------------


def create_sender(
    session: Session,
    *,
    workspace: Workspace,
    data: Mapping[str, Any],
    box: SecretBox,
    now: datetime,
) -> EmailSender:
    """Raises ``TidingsError``: 422 for settings that cannot work, 409 for a taken name."""
    check_smtp_settings(data)
    if _sender_named(session, workspace, str(data["name"])) is not None:
        raise conflict("name_taken", "a sender with this name exists", field="name")
    first = not list_senders(session, workspace)
    sender = EmailSender(workspace_id=workspace.id, created_at=now, updated_at=now)
    _assign(sender, {**data, "is_default": bool(data.get("is_default")) or first}, box)
    session.add(sender)
    session.flush()
    if sender.is_default:
        _only_default(session, workspace, sender)
    return sender


def update_sender(
    session: Session,
    *,
    workspace: Workspace,
    sender_id: int,
    data: Mapping[str, Any],
    box: SecretBox,
    now: datetime,
) -> EmailSender:
    """Change what is given; secrets stay unless given again (they are never read back)."""
    sender = get_sender_or_404(session, workspace, sender_id)
    merged = {
        **{k: getattr(sender, k) for k in SENDER_FIELDS},
        "smtp_password": bool(sender.smtp_password_sealed),
        "dkim_private_key": "-----BEGIN PRIVATE KEY-----" if sender.dkim_key_sealed else None,
        **data,
    }
    check_smtp_settings(merged)
    renamed = "name" in data and data["name"] != sender.name
    if renamed and _sender_named(session, workspace, str(data["name"])) is not None:
        raise conflict("name_taken", "a sender with this name exists", field="name")
    _assign(sender, data, box)
    sender.updated_at = now
    if data.get("is_default"):
        _only_default(session, workspace, sender)
    return sender


def _assign(sender: EmailSender, data: Mapping[str, Any], box: SecretBox) -> None:
    for name in SENDER_FIELDS:
        if name in data:
            setattr(sender, name, data[name])
    for name, column in SEALED.items():
        if name in data:
            value = data[name]
            setattr(sender, column, box.seal(str(value)) if value else None)


def _only_default(session: Session, workspace: Workspace, sender: EmailSender) -> None:
    session.execute(
        update(EmailSender)
        .where(EmailSender.workspace_id == workspace.id, EmailSender.id != sender.id)
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )


def _sender_named(session: Session, workspace: Workspace, name: str) -> EmailSender | None:
    return session.scalar(
        select(EmailSender).where(
            EmailSender.workspace_id == workspace.id, EmailSender.name == name
        )
    )


def list_senders(session: Session, workspace: Workspace) -> Sequence[EmailSender]:
    return session.scalars(
        select(EmailSender).where(EmailSender.workspace_id == workspace.id).order_by(EmailSender.id)
    ).all()


def get_sender_or_404(session: Session, workspace: Workspace, sender_id: int) -> EmailSender:
    sender = session.scalar(
        select(EmailSender).where(
            EmailSender.workspace_id == workspace.id, EmailSender.id == sender_id
        )
    )
    if sender is None:
        raise not_found("e-mail sender")
    return sender


def delete_sender(session: Session, *, workspace: Workspace, sender_id: int) -> None:
    """E-mails already sent keep their history (their sender becomes unknown); queued ones
    from this sender fail at dispatch with the reason."""
    session.delete(get_sender_or_404(session, workspace, sender_id))


def sending_sender_id(session: Session, *, workspace_id: int, sender_id: int | None) -> int | None:
    """The active sender to use: the one asked for, else the workspace's default."""
    query = select(EmailSender.id).where(
        EmailSender.workspace_id == workspace_id, EmailSender.is_active.is_(True)
    )
    if sender_id is not None:
        return session.scalar(query.where(EmailSender.id == sender_id))
    return session.scalar(query.order_by(EmailSender.is_default.desc(), EmailSender.id).limit(1))


@dataclass(frozen=True)
class SenderSettings:
    """What sending from one identity takes, secrets opened (for the dispatcher only)."""

    id: int
    is_active: bool
    from_name: str
    from_address: str
    reply_to: str | None
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str | None
    smtp_password: str | None
    connections: int
    dkim_domain: str | None
    dkim_selector: str | None
    dkim_private_key: str | None


def sender_settings(
    session: Session, sender_ids: Iterable[int], box: SecretBox
) -> dict[int, SenderSettings]:
    wanted = sorted(set(sender_ids))
    if not wanted:
        return {}
    rows = session.scalars(select(EmailSender).where(among(session, EmailSender.id, wanted)))
    return {
        sender.id: SenderSettings(
            id=sender.id,
            is_active=sender.is_active,
            from_name=sender.from_name,
            from_address=sender.from_address,
            reply_to=sender.reply_to,
            smtp_host=sender.smtp_host,
            smtp_port=sender.smtp_port,
            smtp_security=sender.smtp_security,
            smtp_username=sender.smtp_username,
            smtp_password=(
                box.open(sender.smtp_password_sealed) if sender.smtp_password_sealed else None
            ),
            connections=sender.connections,
            dkim_domain=sender.dkim_domain,
            dkim_selector=sender.dkim_selector,
            dkim_private_key=box.open(sender.dkim_key_sealed) if sender.dkim_key_sealed else None,
        )
        for sender in rows
    }


# --- templates ----------------------------------------------------------------------------------


def create_template(
    session: Session, *, workspace: Workspace, data: Mapping[str, Any], now: datetime
) -> EmailTemplate:
    """Raises ``TidingsError``: 422 naming the part that will not compile, 409 for a taken
    name."""
    _check_compiles(data)
    if template_by_name(session, workspace, str(data["name"])) is not None:
        raise conflict("name_taken", "a template with this name exists", field="name")
    template = EmailTemplate(
        workspace_id=workspace.id,
        name=data["name"],
        subject=data["subject"],
        html=data["html"],
        text=data.get("text"),
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    session.flush()
    return template


def update_template(
    session: Session,
    *,
    workspace: Workspace,
    template_id: int,
    data: Mapping[str, Any],
    now: datetime,
) -> EmailTemplate:
    template = get_template_or_404(session, workspace, template_id)
    _check_compiles(data)
    renamed = "name" in data and data["name"] != template.name
    if renamed and template_by_name(session, workspace, str(data["name"])) is not None:
        raise conflict("name_taken", "a template with this name exists", field="name")
    for name in ("name", "subject", "html", "text"):
        if name in data:
            setattr(template, name, data[name])
    template.updated_at = now
    return template


def _check_compiles(data: Mapping[str, Any]) -> None:
    for name in ("subject", "html", "text"):
        if data.get(name):
            check_template(str(data[name]), field=name)


def template_by_name(session: Session, workspace: Workspace, name: str) -> EmailTemplate | None:
    return session.scalar(
        select(EmailTemplate).where(
            EmailTemplate.workspace_id == workspace.id, EmailTemplate.name == name
        )
    )


def templates_named(
    session: Session, workspace_id: int, names: Iterable[str]
) -> dict[str, EmailTemplate]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = session.scalars(
        select(EmailTemplate).where(
            EmailTemplate.workspace_id == workspace_id, EmailTemplate.name.in_(wanted)
        )
    )
    return {row.name: row for row in rows}


def list_templates(session: Session, workspace: Workspace) -> Sequence[EmailTemplate]:
    return session.scalars(
        select(EmailTemplate)
        .where(EmailTemplate.workspace_id == workspace.id)
        .order_by(EmailTemplate.name)
    ).all()


def get_template_or_404(session: Session, workspace: Workspace, template_id: int) -> EmailTemplate:
    template = session.scalar(
        select(EmailTemplate).where(
            EmailTemplate.workspace_id == workspace.id, EmailTemplate.id == template_id
        )
    )
    if template is None:
        raise not_found("e-mail template")
    return template


def delete_template(session: Session, *, workspace: Workspace, template_id: int) -> None:
    session.delete(get_template_or_404(session, workspace, template_id))


def variables_for(session: Session, workspace: Workspace, contact_id: int) -> dict[str, Any]:
    """What a template sees for one contact (A6): ``contact.*`` and ``workspace.name``."""
    contact = contacts.get_contact_or_404(session, workspace, contact_id)
    profile = contacts.profiles(session, [contact.id])[contact.id]
    return {"contact": profile.variables(), "workspace": {"name": workspace.name}}


def preview_template(
    session: Session, workspace: Workspace, template_id: int, *, contact_id: int
) -> RenderedEmail:
    """The template as ``contact_id`` would receive it (before tracking is added)."""
    template = get_template_or_404(session, workspace, template_id)
    return render_email(
        subject=template.subject,
        html=template.html,
        text=template.text,
        variables=variables_for(session, workspace, contact_id),
    )


def suppressed(session: Session, workspace_id: int, addresses: Iterable[str]) -> dict[str, str]:
    """Which of ``addresses`` bounced permanently: address → why."""
    wanted = sorted({a.lower() for a in addresses if a})
    if not wanted:
        return {}
    rows = session.execute(
        select(EmailSuppression.address, EmailSuppression.reason).where(
            EmailSuppression.workspace_id == workspace_id,
            among(session, EmailSuppression.address, wanted),
        )
    )
    return {str(row[0]): str(row[1]) for row in rows}


def suppress(
    session: Session,
    *,
    workspace_id: int,
    address: str,
    reason: str,
    code: int | None,
    message_id: int | None,
    now: datetime,
) -> None:
    """Mark an address undeliverable (a permanent bounce); later sends to it are skipped."""
    if suppressed(session, workspace_id, [address]):
        return
    session.add(
        EmailSuppression(
            workspace_id=workspace_id,
            address=address.lower(),
            reason=reason[:500],
            smtp_code=code,
            message_id=message_id,
            created_at=now,
        )
    )


def list_suppressions(session: Session, workspace: Workspace) -> Sequence[EmailSuppression]:
    return session.scalars(
        select(EmailSuppression)
        .where(EmailSuppression.workspace_id == workspace.id)
        .order_by(EmailSuppression.id.desc())
    ).all()


def remove_suppression(session: Session, *, workspace: Workspace, address: str) -> None:
    """Take an address off the bounce list (the mailbox works again)."""
    found = session.scalar(
        select(EmailSuppression).where(
            EmailSuppression.workspace_id == workspace.id,
            EmailSuppression.address == address.lower(),
        )
    )
    if found is None:
        raise not_found("suppressed address", field="address")
    session.delete(found)
