"""The dispatcher: claims due outbound messages, sends them through the channel adapter, and
records what happened (architecture guide, "The outgoing pipeline").

A pass has three steps, and only the first and last hold a database transaction:

1. claim: lock due rows, hold back those the pair limit or the window (P1) forbids, mark the
   rest ``sending`` and commit — so the provider calls never hold the database;
2. send: concurrently, each message at a slot of its number reserved at the claim from a
   bucket every worker shares (``number_pacing``), a headroom below the number's throughput
   (P6); a claim takes only slots of the next ``PACING_HORIZON`` seconds, so a pass is bounded
   in time whatever the backlog and the worker's periodic work and heartbeat keep running;
3. record: the ``wamid`` of accepted messages; failures classified (X3) into a retry with
   backoff or a final failure with the provider's code.

Batches are pipelined: batch k+1 is claimed while batch k is on the wire.

A worker dying between 1 and 3 leaves rows ``sending``. Each request is preceded by a committed
wire mark and followed by its provider id (``WireLog``, group-committed), so after a lease
``recover_in_flight`` sends again what never left, records what was accepted, and marks
``uncertain`` only the requests that were on the wire: the one window no design closes (the
provider may have the message but we never learned its id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tidings.channels import service as channels
from tidings.channels.domain import FailureAction, FailureClass
from tidings.channels.whatsapp.client import CloudApiClient, NumberEndpoint, SendOutcome
from tidings.channels.whatsapp.errors import classify_whatsapp_error
from tidings.db.session import Database
from tidings.kernel.clock import Clock, SystemClock
from tidings.kernel.sealing import SecretBox
from tidings.messaging import repository
from tidings.messaging.domain import (
    GiveUp,
    MessageStatus,
    SlotGrant,
    after_failure,
    is_window_open,
    jitter_share,
    next_outbound_status,
    paced_interval,
)
from tidings.messaging.orm import Message
from tidings.messaging.policy import DAY, Defer, capacity_frees_at, daily_quota
from tidings.messaging.service import (
    PolicyFacts,
    announce,
    fail_message,
    keep_error,
    outgoing_of,
    settle,
    trace,
)
from tidings.scheduler import service as scheduler
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import WorkspacePolicy

log = logging.getLogger(__name__)
# The longest look-back of any cap (30 days; the policy bounds every period by it).
LONGEST_HORIZON = timedelta(days=30)
PIPELINE_DEPTH = 4  # batches per pass; bounds how long other work waits behind a big send
PACING_HORIZON = 2.0  # seconds of send slots one claim may take on a number
# WhatsApp's "over the number's throughput" answer: our pacing's miss (a clock off, another
# tool on the number), so the number rests a moment and the message's retries are not spent.
RATE_LIMIT_CODES = frozenset({130429})
RATE_LIMIT_PAUSE = 1.0
MARK_LEAD = 0.25  # seconds before its slot a send's wire mark is committed
LATE_LIMIT = 0.1  # a send later than this past its slot takes a fresh one
LATE_HORIZON = 3600.0  # a fresh slot is granted however far the number's queue reaches


@dataclass(frozen=True)
class SendJob:
    message_id: int
    number_id: int
    endpoint: NumberEndpoint
    recipient: str
    content: dict[str, Any]
    send_at: float  # its reserved slot, in seconds since the epoch
    interval: float  # seconds between two sends on its number


@dataclass
class BatchCapacity:
    """What each number and workspace of a claimed batch may still send (P6): a number's
    rolling daily quota (with the warm-up of a new number) and the business portfolio's
    messaging tier — unique contacts reached outside their window in a rolling 24 h."""

    used: dict[int, int]
    reached: dict[int, set[int]]
    created: dict[int, datetime]

    @classmethod
    def load(
        cls,
        session: Session,
        rows: Sequence[Message],
        now: datetime,
        policies: Mapping[int, WorkspacePolicy],
    ) -> BatchCapacity:
        """Counts bounded by the limits: a number's sends up to its quota, a workspace's
        reached contacts up to its tier — what decides is whether the limit is reached, and
        an unbounded count would grow with every message of the day."""
        since = now - DAY
        created = channels.numbers_created_at(session, [_number(row) for row in rows])
        quotas: dict[int, int] = {}
        for row in rows:
            age = now - created.get(_number(row), now)
            quotas[_number(row)] = daily_quota(policies[row.workspace_id], age)
        tiers = {
            row.workspace_id: tier
            for row in rows
            if (tier := policies[row.workspace_id].messaging_tier_limit) is not None
        }
        return cls(
            used={
                number_id: repository.dispatched_by_number(session, number_id, since, at_most=quota)
                for number_id, quota in quotas.items()
            },
            reached={
                workspace_id: repository.reached_outside_window(
                    session, workspace_id, since, at_most=tier
                )
                for workspace_id, tier in tiers.items()
            },
            created=created,
        )

    def check(
        self,
        session: Session,
        row: Message,
        *,
        outside_window: bool,
        policy: WorkspacePolicy,
        now: datetime,
    ) -> Defer | None:
        """A deferral to when there is room again, or None when the message fits now."""
        created = self.created.get(_number(row), now)
        quota = daily_quota(policy, now - created)
        used = self.used.get(_number(row), 0)
        if used >= quota:
            oldest = repository.oldest_dispatches(
                session, since=now - DAY, limit=used - quota + 1, number_id=_number(row)
            )
            warming = " (warming up)" if quota < policy.daily_quota_per_number else ""
            return Defer(
                capacity_frees_at(oldest, used=used, limit=quota) if oldest else now + DAY,
                f"P6: the number's quota of {quota:,} messages a day{warming} is used up",
            )
        tier = policy.messaging_tier_limit
        reached = self.reached.setdefault(row.workspace_id, set())
        new_contact = outside_window and row.contact_id not in reached
        if new_contact and tier is not None and len(reached) >= tier:
            oldest = repository.oldest_dispatches(
                session, since=now - DAY, limit=1, workspace_id=row.workspace_id
            )
            return Defer(
                (oldest[0] + DAY) if oldest else now + DAY,
                f"P6: the messaging tier of {tier:,} contacts a day outside their window "
                "is reached",
            )
        return None

    def take(self, row: Message, *, outside_window: bool) -> None:
        self.used[_number(row)] = self.used.get(_number(row), 0) + 1
        if outside_window:
            self.reached.setdefault(row.workspace_id, set()).add(row.contact_id)


@dataclass(frozen=True)
class Claimed:
    jobs: list[SendJob]
    held: int  # held back by the policy or settled: looked at, not sent
    paced: int  # their number had no slot left in the horizon: untouched, for a later pass


class SlotBook:
    """The send slots one claim takes, number by number, from the shared bucket: for each
    number as many as its rows still to look at, once; what rows held back afterwards leave
    unused is given back at the end."""

    def __init__(
        self,
        session: Session,
        rows: Sequence[Message],
        *,
        intervals: Mapping[int, float],
        now: float,
        horizon: float,
    ) -> None:
        self.session, self.intervals, self.now, self.horizon = session, intervals, now, horizon
        self.left = Counter(_number(row) for row in rows)
        self.grants: dict[int, SlotGrant] = {}
        self.used: Counter[int] = Counter()

    def look_at(self, number_id: int) -> None:
        self.left[number_id] -= 1

    def take(self, number_id: int) -> float | None:
        """The moment of the next slot, or None when the number has none left this pass."""
        grant = self.grants.get(number_id)
        if grant is None:
            grant = self.grants[number_id] = repository.reserve_send_slots(
                self.session,
                number_id,
                wanted=self.left[number_id] + 1,  # this row and those after it
                now=self.now,
                horizon=self.horizon,
                interval=self.intervals[number_id],
            )
        used = self.used[number_id]
        if used >= grant.count:
            return None
        self.used[number_id] = used + 1
        return grant.start + used * grant.interval

    def give_back_unused(self) -> None:
        for number_id, grant in self.grants.items():
            repository.give_back_send_slots(
                self.session,
                number_id,
                end=grant.end,
                unused=grant.count - self.used[number_id],
                interval=grant.interval,
            )


@dataclass
class OutboundDispatcher:
    """A worker source that manages its own transactions (see the module docstring)."""

    box: SecretBox
    client: CloudApiClient
    concurrency: int = 32
    name: str = "whatsapp_dispatch"
    # Real time for pacing: the provider counts in seconds of its own, whatever the
    # workspace's (possibly virtual) clock says.
    pace_clock: Clock = field(default_factory=SystemClock)
    pacing_horizon: float = PACING_HORIZON
    worker_id: str = field(default_factory=lambda: scheduler.worker_identity()[0])
    _pacer_lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None
    _wires: WireLog | None = None

    def run_pass(self, db: Database, clock: Clock, limit: int) -> int:
        """Up to ``PIPELINE_DEPTH`` batches, pipelined: while one batch is on the wire, the
        next is claimed and the previous one recorded, so database work hides behind sends."""
        total = 0
        started = time.monotonic()
        in_flight: tuple[list[SendJob], list[Future[SendOutcome]]] | None = None
        for _ in range(PIPELINE_DEPTH):
            with db.transaction(background=True) as session:
                claimed = self.claim(session, now=clock.now(), limit=limit)
            jobs = claimed.jobs
            total += len(jobs) + claimed.held
            futures = [self._executor().submit(self._send, job, db, clock) for job in jobs]
            if in_flight is not None:
                self._record_batch(db, clock, *in_flight)
            in_flight = (jobs, futures) if jobs else None
            # A number out of slots, or the pass's time used: the rest waits for the next pass.
            if len(jobs) + claimed.held < limit or claimed.paced:
                break
            if time.monotonic() - started > self.pacing_horizon:
                break
        if in_flight is not None:
            self._record_batch(db, clock, *in_flight)
        return total

    def _pace_now(self) -> float:
        return self.pace_clock.now().timestamp()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="dispatch")
        return self._pool

    def _record_batch(
        self, db: Database, clock: Clock, jobs: list[SendJob], futures: list[Future[SendOutcome]]
    ) -> None:
        outcomes = [future.result() for future in futures]
        with db.transaction(background=True) as session:
            self.record(session, list(zip(jobs, outcomes, strict=True)), now=clock.now())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # 1. claim ---------------------------------------------------------------------------------

    def claim(self, session: Session, *, now: datetime, limit: int) -> Claimed:
        """Jobs to send now, how many claimed rows were held back or settled instead, and how
        many wait (untouched) for a later pass because their number had no slot left."""
        rows = repository.claim_due_outbound(session, channel="whatsapp", now=now, limit=limit)
        if not rows:
            return Claimed([], 0, 0)
        conversations = repository.conversations_by_ids(
            session, [_conversation(row) for row in rows]
        )
        endpoints = channels.endpoints_for(session, [_number(row) for row in rows], self.box)
        policies: dict[int, tuple[WorkspacePolicy, str]] = {}
        for workspace_id in {row.workspace_id for row in rows}:
            workspace = workspaces.get_workspace(session, workspace_id)
            policies[workspace_id] = (
                (workspaces.policy_for(workspace), workspace.timezone)
                if workspace
                else (WorkspacePolicy(), "UTC")
            )
        facts = PolicyFacts.load(
            session,
            [row.contact_id for row in rows],
            since=now - LONGEST_HORIZON,
        )
        capacity = BatchCapacity.load(
            session, rows, now, {w: policy for w, (policy, _) in policies.items()}
        )
        tiers = channels.numbers_throughput(session, [_number(row) for row in rows])
        slots = SlotBook(
            session,
            rows,
            intervals={
                _number(row): paced_interval(
                    tiers.get(_number(row))
                    or policies[row.workspace_id][0].throughput_per_number_per_second,
                    policies[row.workspace_id][0].pacing_headroom,
                )
                for row in rows
            },
            now=self._pace_now(),
            horizon=self.pacing_horizon,
        )
        jobs: list[SendJob] = []
        held = paced = 0
        for row in rows:
            slots.look_at(_number(row))
            policy, default_timezone = policies[row.workspace_id]
            conversation = conversations[_conversation(row)]
            endpoint = endpoints.get(_number(row))
            if endpoint is None:
                fail_message(
                    session, row, reason="the WhatsApp number is deactivated", now=now, code=None
                )
                held += 1
                continue
            # The policy again, on the history as it is now (P1-P5, I3): what was allowed
            # when queued may not be any more, and a deferred message may be free to go.
            decision = facts.decide(
                outgoing_of(row),
                row.contact_id,
                last_inbound_at=conversation.last_inbound_at,
                policy=policy,
                default_timezone=default_timezone,
                now=now,
            )
            if not settle(session, row, decision, now=now, queued_reason=""):
                held += 1
                continue
            outside_window = not is_window_open(
                conversation.last_inbound_at, now, timedelta(hours=policy.service_window_hours)
            )
            full = capacity.check(
                session, row, outside_window=outside_window, policy=policy, now=now
            )
            if full is not None:
                settle(session, row, full, now=now, queued_reason="")
                held += 1
                continue
            # P6 pair limit: one message per contact and number every few seconds.
            gap = timedelta(seconds=policy.same_user_min_interval_seconds)
            last = conversation.last_outbound_sent_at
            if last is not None and now < last + gap:
                row.next_attempt_at = last + gap
                held += 1
                continue
            send_at = slots.take(_number(row))
            if send_at is None:
                paced += 1
                continue
            conversation.last_outbound_sent_at = now
            if row.dispatched_at is None:
                row.dispatched_at = now
                row.outside_window = outside_window
                capacity.take(row, outside_window=outside_window)
            facts.dispatched(row, now)
            row.status = MessageStatus.SENDING.value
            row.wire_at = None
            row.claimed_by = self.worker_id
            row.attempts += 1
            row.updated_at = now
            jobs.append(
                SendJob(
                    message_id=row.id,
                    number_id=_number(row),
                    endpoint=endpoint,
                    recipient=str(row.recipient),
                    content=dict(row.content),
                    send_at=send_at,
                    interval=slots.intervals[_number(row)],
                )
            )
        slots.give_back_unused()
        return Claimed(jobs, held, paced)

    # 2. send ----------------------------------------------------------------------------------

    def _send(self, job: SendJob, db: Database, clock: Clock) -> SendOutcome:
        """Send one message at its paced moment. Around the request, two tiny commits tell a
        crash's recovery what happened: the wire mark before it (without one, the message was
        certainly never sent) and the provider's id after it (it certainly was); only the
        requests in flight at the crash stay uncertain."""
        # The wire mark is committed just before the slot (a commit may take a moment when
        # the database is busy), and the request waits for the slot after it: a late commit
        # delays a send rather than bunching several into the number's next second, and a
        # crash leaves uncertain only what was within MARK_LEAD of leaving.
        early = job.send_at - MARK_LEAD - self._pace_now()
        if early > 0:
            time.sleep(early)
        wires = self._wire_log(db, clock)
        wires.mark(job.message_id)
        delay = job.send_at - self._pace_now()
        if delay < -LATE_LIMIT:
            # Woken too late (a busy machine, a slow commit): sent now, it would crowd the
            # second it lands in. It takes a fresh slot at the end of the number's queue.
            delay = self._fresh_slot(db, job) - self._pace_now()
        if delay > 0:
            time.sleep(delay)
        try:
            outcome = self.client.send_message(job.endpoint, job.recipient, job.content)
        except Exception as error:  # an adapter bug must not strand the batch as "sending"
            log.exception("sending message %s failed", job.message_id)
            return SendOutcome("uncertain", note=f"{type(error).__name__}: {error}")
        if outcome.accepted and outcome.message_id:
            wires.note(job.message_id, outcome.message_id)
        return outcome

    def _fresh_slot(self, db: Database, job: SendJob) -> float:
        with db.transaction(background=True) as session:
            grant = repository.reserve_send_slots(
                session,
                job.number_id,
                wanted=1,
                now=self._pace_now(),
                horizon=LATE_HORIZON,
                interval=job.interval,
            )
        return grant.start

    def _wire_log(self, db: Database, clock: Clock) -> WireLog:
        with self._pacer_lock:
            if self._wires is None or self._wires.db is not db:
                self._wires = WireLog(db, clock)
            return self._wires

    # 3. record --------------------------------------------------------------------------------

    def record(
        self, session: Session, results: Sequence[tuple[SendJob, SendOutcome]], *, now: datetime
    ) -> None:
        policies: dict[int, WorkspacePolicy] = {}
        messages = repository.messages_for_update(session, [job.message_id for job, _ in results])
        resting = {
            job.number_id
            for job, outcome in results
            if outcome.error is not None and outcome.error.code in RATE_LIMIT_CODES
        }
        for number_id in sorted(resting):
            repository.hold_number_until(
                session, number_id, until=self._pace_now() + RATE_LIMIT_PAUSE
            )
        with session.no_autoflush:  # one flush at commit, not one per message
            for job, outcome in results:
                message = messages.get(job.message_id)
                if message is None:  # deleted with its contact meanwhile
                    continue
                if message.workspace_id not in policies:
                    workspace = workspaces.get_workspace(session, message.workspace_id)
                    policies[message.workspace_id] = (
                        workspaces.policy_for(workspace) if workspace else WorkspacePolicy()
                    )
                policy = policies[message.workspace_id]
                record_outcome(
                    session,
                    message,
                    outcome,
                    max_retries=policy.message_retries,
                    valid_for=timedelta(hours=policy.message_validity_hours),
                    now=now,
                )


def _number(row: Message) -> int:
    """A WhatsApp message's number (the claim takes only WhatsApp rows, which have one)."""
    if row.number_id is None:
        raise ValueError(f"message {row.id} is not a WhatsApp message")
    return row.number_id


def _conversation(row: Message) -> int:
    if row.conversation_id is None:
        raise ValueError(f"message {row.id} is not a WhatsApp message")
    return row.conversation_id


class WireLog:
    """Group commit of the dispatcher's crash-recovery notes.

    A sending thread waits until its wire mark is committed before its request leaves; the
    provider's id of an accepted message rides along with the next commit. Whoever finds no
    commit under way writes everything pending in one transaction, so with many threads
    sending there is one small commit per group, not per message.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        self._pending = threading.Lock()  # guards the two lists
        self._committing = threading.Lock()  # one commit at a time
        self._marks: list[tuple[int, threading.Event]] = []
        self._ids: list[tuple[int, str]] = []

    def mark(self, message_id: int) -> None:
        """Return once ``message_id`` is durably marked as leaving."""
        written = threading.Event()
        with self._pending:
            self._marks.append((message_id, written))
        while not written.is_set():
            with self._committing:
                if not written.is_set():
                    self._commit()

    def note(self, message_id: int, provider_message_id: str) -> None:
        """Keep an accepted message's id with the next commit (the batch's record writes it
        too; this only narrows what a crash leaves unknown)."""
        with self._pending:
            self._ids.append((message_id, provider_message_id))

    def _commit(self) -> None:
        with self._pending:
            marks, ids = self._marks, self._ids
            self._marks, self._ids = [], []
        if marks or ids:
            with self.db.statements(background=True) as connection:
                repository.lock_in_id_order(connection, [m for m, _ in marks] + [m for m, _ in ids])
                repository.mark_on_wire(connection, [m for m, _ in marks], now=self.clock.now())
                repository.note_provider_ids(connection, ids)
        for _, written in marks:
            written.set()


def record_outcome(
    session: Session,
    message: Message,
    outcome: SendOutcome,
    *,
    max_retries: int,
    now: datetime,
    valid_for: timedelta | None = None,
) -> None:
    """What one send attempt leaves on its message (X3): accepted; retried (a transient
    failure until the message's validity, ``valid_for`` after it was queued, ends; a
    rate-limit answer shortly and without spending an attempt); or failed for good."""
    message.updated_at = now
    message.claimed_by = None
    if outcome.accepted:
        if message.provider_message_id is None and outcome.message_id:
            message.provider_message_id = outcome.message_id
        # An earlier attempt's failure is history (in the traces), not the message's state.
        message.error_code = message.error_title = message.error_details = None
        forward = next_outbound_status(MessageStatus(message.status), MessageStatus.ACCEPTED)
        if forward is not None:
            message.status = forward.value
        message.status_reason = None
        message.next_attempt_at = None
        trace(session, message, outcome="accepted", reason="accepted by WhatsApp", now=now)
        announce(session, message, "message.sent", now=now)
        return
    if outcome.state == "uncertain":
        reason = f"uncertain: {outcome.note or 'no usable answer'}"
        if message.resend_if_uncertain and message.attempts <= max_retries:
            retry_at(session, message, now + timedelta(seconds=30), reason + "; resending", now)
        else:
            message.status = MessageStatus.UNCERTAIN.value
            message.status_reason = (reason + "; not resent")[:300]
            message.next_attempt_at = None
            trace(session, message, outcome="uncertain", reason=message.status_reason, now=now)
        return
    if outcome.state == "unsent":
        failure = FailureClass(FailureAction.RETRY, f"could not reach WhatsApp ({outcome.note})")
        code = None
    elif outcome.state == "refused":
        reason = f"the number's API address is not allowed ({outcome.note})"
        failure, code = FailureClass(FailureAction.FIX_REQUEST, reason), None
    else:
        error = outcome.error
        code = error.code if error else None
        failure = classify_whatsapp_error(code, http_status=outcome.http_status)
        if error is not None:
            keep_error(message, error.code, error.title, error.details or error.message)
        if code in RATE_LIMIT_CODES:
            message.attempts = max(0, message.attempts - 1)  # our pacing's miss, not its fault
            pause = timedelta(seconds=RATE_LIMIT_PAUSE * (1 + 2 * jitter_share(message.id, 0)))
            retry_at(session, message, now + pause, f"rate limit; {failure.reason}", now, code=code)
            return
    plan = after_failure(
        failure,
        attempts=message.attempts,
        max_retries=max_retries,
        now=now,
        jitter_seed=message.id,
        valid_until=message.created_at + valid_for if valid_for is not None else None,
    )
    if isinstance(plan, GiveUp):
        fail_message(session, message, reason=plan.reason, now=now, code=code)
    else:
        retry_at(session, message, plan.at, plan.reason, now, code=code)


def retry_at(
    session: Session,
    message: Message,
    at: datetime,
    reason: str,
    now: datetime,
    *,
    code: int | None = None,
) -> None:
    """Back to the queue at ``at`` after a transient failure, with the reason traced (X3)."""
    message.status = MessageStatus.QUEUED.value
    message.next_attempt_at = at
    message.status_reason = reason[:300]
    trace(session, message, outcome="retry", reason=reason, now=now, provider_code=code)
