"""The e-mail dispatcher: claims due e-mails from the shared outbox, composes them (tracking,
unsubscribe link and headers, DKIM), hands them to the sender's SMTP server and records what
the server said.

As for WhatsApp (``messaging.dispatch``): the claim and the record hold a transaction, the
sends do not; each send is preceded by a committed wire mark and followed by the server's
acceptance, so a crash leaves ``uncertain`` only the e-mails whose DATA was on the wire.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from tidings.channels.domain import FailureAction, FailureClass
from tidings.channels.email.smtp import (
    DkimKey,
    Envelope,
    SmtpPool,
    SmtpResult,
    SmtpServer,
    build_message,
)
from tidings.contacts import service as contacts
from tidings.db.session import Database
from tidings.kernel.clock import Clock
from tidings.kernel.sealing import SecretBox
from tidings.mailing import service as mailing
from tidings.mailing.domain import (
    SmtpStage,
    TokenKind,
    classify_smtp_reply,
    compose,
    footer_for,
    make_token,
    tracking_key,
)
from tidings.messaging import email as outbox
from tidings.messaging import repository
from tidings.messaging.dispatch import LONGEST_HORIZON, WireLog, retry_at
from tidings.messaging.domain import GiveUp, MessageStatus, after_failure, next_outbound_status
from tidings.messaging.orm import Message
from tidings.messaging.service import (
    PolicyFacts,
    announce,
    fail_message,
    keep_error,
    settle,
    trace,
)
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmailJob:
    message_id: int
    server: SmtpServer
    envelope_from: str
    recipient: str
    message_header_id: str
    envelope: Envelope
    dkim_key: DkimKey | None


@dataclass
class EmailDispatcher:
    """A worker source that manages its own transactions."""

    box: SecretBox
    pool: SmtpPool
    secret_key: str
    public_url: str
    concurrency: int = 16
    name: str = "email_dispatch"
    _threads: ThreadPoolExecutor | None = None
    _wires: WireLog | None = None
    _key: bytes = field(default=b"", repr=False)

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        with db.transaction(background=True) as session:
            jobs, held = self.claim(session, now=clock.now(), limit=limit)
        if jobs:
            wires = self._wire_log(db, clock)
            results = list(self._executor().map(lambda job: self._send(job, wires), jobs))
            with db.transaction(background=True) as session:
                self.record(session, list(zip(jobs, results, strict=True)), now=clock.now())
        return len(jobs) + held

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None
        self.pool.close()

    def _executor(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix="email")
        return self._threads

    def _wire_log(self, db: Database, clock: Clock) -> WireLog:
        if self._wires is None or self._wires.db is not db:
            self._wires = WireLog(db, clock)
        return self._wires

    # 1. claim ---------------------------------------------------------------------------------

    def claim(self, session: Session, *, now: datetime, limit: int) -> tuple[list[EmailJob], int]:
        rows = repository.claim_due_outbound(session, channel="email", now=now, limit=limit)
        if not rows:
            return [], 0
        senders = mailing.sender_settings(
            session, [r.sender_id for r in rows if r.sender_id], self.box
        )
        policies: dict[int, tuple[WorkspacePolicy, str]] = {}
        for workspace_id in {row.workspace_id for row in rows}:
            workspace = workspaces.get_workspace(session, workspace_id)
            policies[workspace_id] = (
                (workspaces.policy_for(workspace), workspace.timezone)
                if workspace
                else (WorkspacePolicy(), "UTC")
            )
        contact_ids = [row.contact_id for row in rows]
        facts = PolicyFacts.load(session, contact_ids, since=now - LONGEST_HORIZON)
        profiles = contacts.profiles(session, contact_ids)
        bounced: dict[int, dict[str, str]] = {}
        for workspace_id in policies:
            addresses = [r.recipient or "" for r in rows if r.workspace_id == workspace_id]
            bounced[workspace_id] = mailing.suppressed(session, workspace_id, addresses)
        jobs: list[EmailJob] = []
        held = 0
        for row in rows:
            policy, default_timezone = policies[row.workspace_id]
            sender = senders.get(row.sender_id or 0)
            if sender is None or not sender.is_active:
                reason = "the e-mail sender was removed or deactivated"
                fail_message(session, row, reason=reason, now=now, code=None)
                held += 1
                continue
            decision = outbox.decide_email(
                session,
                row,
                address=row.recipient,
                facts=facts,
                suppressed=bounced[row.workspace_id],
                default_timezone=default_timezone,
                now=now,
            )
            if not settle(session, row, decision, now=now, queued_reason=""):
                held += 1
                continue
            profile = profiles.get(row.contact_id)
            job = self._compose(row, sender, policy, profile.locale if profile else None, now)
            if row.dispatched_at is None:
                row.dispatched_at = now
            facts.dispatched(row, now)
            row.status = MessageStatus.SENDING.value
            row.wire_at = None
            row.attempts += 1
            row.updated_at = now
            jobs.append(job)
        return jobs, held

    def _compose(
        self,
        row: Message,
        sender: mailing.SenderSettings,
        policy: WorkspacePolicy,
        locale: str | None,
        now: datetime,
    ) -> EmailJob:
        if not self._key:
            self._key = tracking_key(self.secret_key)
        body = dict(row.content.get("email") or {})
        base = self.public_url.rstrip("/")

        def url(kind: TokenKind, path: str, link: int = 0, suffix: str = "") -> str:
            return f"{base}/e/{path}/{make_token(self._key, kind, row.id, link)}{suffix}"

        unsubscribe = url(TokenKind.UNSUBSCRIBE, "u")
        tracking = policy.email_tracking
        composed = compose(
            body_html=str(body.get("html") or ""),
            body_text=str(body.get("text") or ""),
            links=list(body.get("links") or []),
            click_url=(lambda i: url(TokenKind.CLICK, "c", i)) if tracking else None,
            open_url=url(TokenKind.OPEN, "o", suffix=".gif") if tracking else None,
            unsubscribe_url=unsubscribe,
            footer=footer_for(locale),
        )
        domain = sender.from_address.rpartition("@")[2] or "tidings.invalid"
        header_id = f"<tidings.{row.id}.{secrets.token_hex(6)}@{domain}>"
        envelope = Envelope(
            from_name=sender.from_name,
            from_address=sender.from_address,
            reply_to=sender.reply_to,
            to=str(row.recipient),
            subject=str(body.get("subject") or row.text or ""),
            html=composed.html,
            text=composed.text,
            message_id=header_id,
            date=now,
            headers={
                # RFC 8058: one POST to this URL unsubscribes; mail clients show a button.
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        dkim_key = None
        if sender.dkim_private_key and sender.dkim_domain and sender.dkim_selector:
            dkim_key = DkimKey(sender.dkim_domain, sender.dkim_selector, sender.dkim_private_key)
        return EmailJob(
            message_id=row.id,
            server=SmtpServer(
                host=sender.smtp_host,
                port=sender.smtp_port,
                security=sender.smtp_security,
                username=sender.smtp_username,
                password=sender.smtp_password,
                connections=sender.connections,
            ),
            envelope_from=sender.from_address,
            recipient=str(row.recipient),
            message_header_id=header_id,
            envelope=envelope,
            dkim_key=dkim_key,
        )

    # 2. send ----------------------------------------------------------------------------------

    def _send(self, job: EmailJob, wires: WireLog) -> SmtpResult:
        try:
            # Built here, not in the claim: the claim's transaction stays short, and the
            # building of one message overlaps the network waits of the others.
            data = build_message(job.envelope, job.dkim_key)
        except Exception as error:  # nothing left: the message can be failed for certain
            log.exception("building e-mail %s failed", job.message_id)
            return SmtpResult("rejected", text=f"{type(error).__name__}: {error}")
        wires.mark(job.message_id)
        try:
            result = self.pool.send(job.server, job.envelope_from, job.recipient, data)
        except Exception as error:  # an adapter bug must not strand the batch as "sending"
            log.exception("sending e-mail %s failed", job.message_id)
            return SmtpResult("uncertain", text=f"{type(error).__name__}: {error}")
        if result.accepted:
            wires.note(job.message_id, job.message_header_id)
        return result

    # 3. record --------------------------------------------------------------------------------

    def record(
        self, session: Session, results: Sequence[tuple[EmailJob, SmtpResult]], *, now: datetime
    ) -> None:
        retries: dict[int, int] = {}
        messages = repository.messages_for_update(session, [job.message_id for job, _ in results])
        with session.no_autoflush:
            for job, result in results:
                message = messages.get(job.message_id)
                if message is None:
                    continue
                if message.workspace_id not in retries:
                    workspace = workspaces.get_workspace(session, message.workspace_id)
                    policy = workspaces.policy_for(workspace) if workspace else WorkspacePolicy()
                    retries[message.workspace_id] = policy.message_retries
                record_result(
                    session,
                    message,
                    job,
                    result,
                    max_retries=retries[message.workspace_id],
                    now=now,
                )


def record_result(
    session: Session,
    message: Message,
    job: EmailJob,
    result: SmtpResult,
    *,
    max_retries: int,
    now: datetime,
) -> None:
    """What one SMTP attempt leaves on its e-mail (X3)."""
    message.updated_at = now
    if result.accepted:
        message.provider_message_id = message.provider_message_id or job.message_header_id
        forward = next_outbound_status(MessageStatus(message.status), MessageStatus.SENT)
        if forward is not None:
            message.status = forward.value
        message.sent_at = message.sent_at or now
        message.status_reason = None
        message.next_attempt_at = None
        trace(session, message, outcome="accepted", reason=f"accepted: {result.code} "
              f"{result.text}"[:500], now=now, provider_code=result.code)  # fmt: skip
        announce(session, message, "message.sent", now=now)
        return
    if result.state == "uncertain":
        reason = f"uncertain: {result.text or 'no answer after the message was sent'}"
        if message.resend_if_uncertain and message.attempts <= max_retries:
            retry_at(session, message, now + timedelta(seconds=30), reason + "; resending", now)
        else:
            message.status = MessageStatus.UNCERTAIN.value
            message.status_reason = (reason + "; not resent")[:300]
            message.next_attempt_at = None
            trace(session, message, outcome="uncertain", reason=message.status_reason, now=now)
        return
    if result.state == "rejected" and result.code is None:  # never left: it could not be built
        fail_message(session, message, reason=f"not built: {result.text}"[:300], now=now, code=None)
        return
    if result.state == "unsent" or result.code is None:
        failure = FailureClass(
            FailureAction.RETRY, f"could not reach the mail server ({result.text})"
        )
        plan = after_failure(
            failure, attempts=message.attempts, max_retries=max_retries, now=now,
            jitter_seed=message.id,
        )  # fmt: skip
        if isinstance(plan, GiveUp):
            fail_message(session, message, reason=plan.reason, now=now, code=None)
        else:
            retry_at(session, message, plan.at, plan.reason, now)
        return
    verdict = classify_smtp_reply(result.code, result.text, result.stage or SmtpStage.DATA)
    keep_error(message, result.code, f"SMTP {result.code}", verdict.reason)
    if verdict.permanent:
        fail_message(
            session, message, reason=f"X3: permanent; {verdict.reason}", now=now, code=result.code
        )
        if verdict.undeliverable and message.recipient:
            mailing.suppress(
                session,
                workspace_id=message.workspace_id,
                address=message.recipient,
                reason=verdict.reason,
                code=result.code,
                message_id=message.id,
                now=now,
            )
        return
    plan = after_failure(
        FailureClass(FailureAction.RETRY, verdict.reason),
        attempts=message.attempts,
        max_retries=max_retries,
        now=now,
        jitter_seed=message.id,
    )
    if isinstance(plan, GiveUp):
        fail_message(session, message, reason=plan.reason, now=now, code=result.code)
    else:
        retry_at(session, message, plan.at, plan.reason, now, code=result.code)
