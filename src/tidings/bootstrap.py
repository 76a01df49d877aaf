"""Wiring: settings, clock, database and the worker's work, assembled on demand.

Nothing is created at import time; ``build`` is called by the CLI, the tests and the benchmarks.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, partial
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from tidings.automation import service as automation
from tidings.automation.engine import WEBHOOK_JOB as RULE_WEBHOOK_JOB
from tidings.automation.engine import RulesEngine, run_scheduled_rules
from tidings.automation.engine import webhook_gave_up as rule_webhook_gave_up
from tidings.broadcasts.jobs import BroadcastPlanner
from tidings.channels.email.smtp import SmtpPool
from tidings.channels.inbound import MEDIA_JOB
from tidings.channels.jobs import DeliverySplitter, InboundEventSource, MediaDownloader
from tidings.channels.service import WebhookDirectory
from tidings.channels.whatsapp.client import CloudApiClient
from tidings.contacts.imports import ContactImportRunner
from tidings.crm_sync.connector import ConnectorRunner
from tidings.crm_sync.hubspot import CrmClient, HubSpotClient
from tidings.db.engine import make_engine
from tidings.db.migrate import upgrade
from tidings.db.session import Database
from tidings.egress.policy import EgressPolicy
from tidings.exports import service as exports
from tidings.kernel.clock import Clock, SharedVirtualClock, SystemClock
from tidings.kernel.sealing import SecretBox
from tidings.messaging import inbox
from tidings.messaging import service as messaging
from tidings.messaging.dispatch import OutboundDispatcher
from tidings.messaging.email_dispatch import EmailDispatcher
from tidings.messaging.media import MediaStore
from tidings.scheduler import service as scheduler_service
from tidings.scheduler.domain import PeriodicJob
from tidings.scheduler.worker import (
    BackgroundJobSource,
    JobHandler,
    PassSource,
    PeriodicTask,
    Worker,
    WorkSource,
)
from tidings.sequences import service as sequences
from tidings.sequences.jobs import WEBHOOK_JOB, SequenceEvents, SequenceRunner
from tidings.sequences.jobs import webhook_gave_up as sequence_webhook_gave_up
from tidings.settings import Settings, load_settings
from tidings.webhooks.adapter import Courier, WebhookPoster
from tidings.webhooks.jobs import WebhookDispatcher, WebhookFanout
from tidings.workspaces import service as workspaces


def tune_garbage_collector() -> None:
    """Make CPython's cyclic collector fit a process that works in large batches.

    A mass-send chunk or an import batch allocates hundreds of thousands of short-lived
    containers; with the default first-generation threshold (700) the collector runs every
    few hundred rows and its older-generation passes walk the whole heap — measured here, a
    quarter of broadcast planning time. What start-up built is frozen (never scanned again)
    and collections come less often; reference counting still frees nearly everything at
    once, the collector only finds cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class RequestActivity:
    """How many HTTP requests this process is serving; the embedded worker gives way to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def busy(self) -> bool:
        return self.in_flight > 0


@dataclass
class Tidings:
    """One running installation: what every entry point needs."""

    settings: Settings
    clock: Clock
    db: Database
    job_handlers: dict[str, JobHandler] = field(default_factory=dict)
    work_sources: list[WorkSource | PassSource] = field(default_factory=list)
    periodic: list[PeriodicTask] = field(default_factory=list)
    activity: RequestActivity = field(default_factory=RequestActivity)
    # How CRM connectors reach their CRM: the network by default; tests put a fake here.
    crm_transport: httpx.BaseTransport | None = None

    @cached_property
    def secret_box(self) -> SecretBox:
        """Seals provider secrets under a key derived from ``TIDINGS_SECRET_KEY``."""
        return SecretBox(self.settings.secret_key.get_secret_value())

    def migrate(self) -> None:
        upgrade(self.db.engine)

    @cached_property
    def egress_policy(self) -> EgressPolicy:
        """What the provider adapters may call: the internet, and the operator's networks."""
        return EgressPolicy.of(self.settings.egress_networks)

    def webhook_policy(self) -> EgressPolicy:
        """What webhooks may call: the internet, or every private address too where the
        operator allowed it for the installation (a workspace's own permission widens it
        per delivery)."""
        return EgressPolicy(allow_private=self.settings.allow_private_webhooks)

    @cached_property
    def whatsapp(self) -> CloudApiClient:
        """One connection pool for every Cloud API call of this process, connecting only to
        permitted addresses (a number's API address is an admin's input)."""
        return CloudApiClient(policy=self.egress_policy)

    def make_worker(
        self,
        *,
        sources: Sequence[WorkSource | PassSource] | None = None,
        embedded: bool = False,
    ) -> Worker:
        """A worker loop; ``embedded`` (inside ``serve``) makes it give way to HTTP requests."""
        chosen = list(sources) if sources is not None else self.all_sources()
        return Worker(
            db=self.db,
            clock=self.clock,
            sources=chosen,
            periodic=list(self.periodic),
            batch_size=self.settings.worker_batch_size,
            poll_seconds=self.settings.worker_poll_seconds,
            yield_to=self.activity.busy if embedded else None,
        )

    @cached_property
    def smtp(self) -> SmtpPool:
        """Kept-open connections to the workspaces' mail servers."""
        return SmtpPool()

    @property
    def public_base_url(self) -> str:
        """Where recipients reach this server (tracking and unsubscribe links, webhooks)."""
        return self.settings.public_url.rstrip("/")

    @cached_property
    def webhook_directory(self) -> WebhookDirectory:
        return WebhookDirectory()

    @cached_property
    def webhook_courier(self) -> Courier:
        """Kept-open connections to the subscribers' receivers."""
        return Courier(policy=self.webhook_policy())

    @property
    def exports_root(self) -> Path:
        return self.settings.exports_dir or self.settings.data_dir / "exports"

    @cached_property
    def media_store(self) -> MediaStore:
        return MediaStore(self.settings.data_dir / "media")

    def all_sources(self) -> list[WorkSource | PassSource]:
        downloader = MediaDownloader(self.secret_box, self.whatsapp, self.media_store)
        poster = WebhookPoster(self.settings.secret_key.get_secret_value(), self.webhook_policy())
        handlers = {
            MEDIA_JOB: JobHandler(MEDIA_JOB, downloader.handle),
            WEBHOOK_JOB: JobHandler(WEBHOOK_JOB, poster.handle, sequence_webhook_gave_up),
            RULE_WEBHOOK_JOB: JobHandler(RULE_WEBHOOK_JOB, poster.handle, rule_webhook_gave_up),
            **self.job_handlers,
        }
        return [
            *self.work_sources,
            OutboundDispatcher(box=self.secret_box, client=self.whatsapp),
            EmailDispatcher(
                box=self.secret_box,
                pool=self.smtp,
                secret_key=self.settings.secret_key.get_secret_value(),
                public_url=self.public_base_url,
            ),
            WebhookDispatcher(box=self.secret_box, courier=self.webhook_courier),
            ConnectorRunner(box=self.secret_box, clients=self.crm_client),
            ContactImportRunner(),
            BackgroundJobSource(handlers),
        ]

    def crm_client(self, kind: str, token: str) -> CrmClient:
        """A client for a connector's CRM (HubSpot today; Zoho and Salesforce follow the same
        ``CrmClient`` interface)."""
        if kind != "hubspot":
            raise ValueError(f"no client for {kind!r} connectors")
        return HubSpotClient(token, transport=self.crm_transport)

    def close(self) -> None:
        if "whatsapp" in self.__dict__:
            self.whatsapp.close()
        if "smtp" in self.__dict__:
            self.smtp.close()
        if "webhook_courier" in self.__dict__:
            self.webhook_courier.close()
        self.db.dispose()


def _recover_in_flight(session: Session, now: datetime, *, lease: timedelta) -> None:
    """Take back the sends of workers whose heartbeat is older than the lease. The worker
    running this is alive whatever its last beat says (a stalled heartbeat thread, or a clock
    that runs faster than the beats): it never takes back its own sends mid-flight."""
    alive = {w.worker_id for w in scheduler_service.live_workers(session, now=now, within=lease)}
    alive.add(scheduler_service.worker_identity()[0])
    messaging.recover_in_flight(session, now=now, live_workers=sorted(alive))


def _clock_of(settings: Settings) -> Clock:
    if settings.clock_file is not None:
        return SharedVirtualClock(settings.clock_file)
    return SystemClock()


def build(settings: Settings | None = None, *, clock: Clock | None = None) -> Tidings:
    """Assemble an installation from settings (the environment's by default)."""
    chosen = settings or load_settings()
    engine = make_engine(chosen.database_url, pool_size=chosen.database_pool_size)
    return Tidings(
        settings=chosen,
        clock=clock or _clock_of(chosen),
        db=Database(engine),
        work_sources=[
            DeliverySplitter(),
            InboundEventSource(),
            RulesEngine(),  # keyword detections and rule actions, before sequences react
            SequenceEvents(),  # before the runner: goals and exits apply before steps run
            SequenceRunner(),
            BroadcastPlanner(),
            WebhookFanout(),  # after the rules: their detections go out in the same pass
        ],
        periodic=[
            PeriodicTask(
                # Often: a dead worker's claims are taken back once its lease runs out.
                PeriodicJob("messaging.recover_in_flight", timedelta(seconds=5)),
                partial(_recover_in_flight, lease=timedelta(seconds=chosen.worker_lease_seconds)),
            ),
            PeriodicTask(
                PeriodicJob("sequences.choose_split_winners", timedelta(minutes=5)),
                lambda session, now: _ignore(sequences.choose_split_winners(session, now=now)),
            ),
            PeriodicTask(
                PeriodicJob("rules.scheduled", timedelta(minutes=1)),
                lambda session, now: _ignore(run_scheduled_rules(session, now=now)),
            ),
            PeriodicTask(
                PeriodicJob("segments.refresh", timedelta(minutes=5)),
                lambda session, now: _ignore(automation.refresh_all_segments(session, now=now)),
            ),
            PeriodicTask(
                PeriodicJob("inbox.wake_snoozed", timedelta(minutes=1)),
                lambda session, now: _ignore(inbox.wake_snoozed(session, now=now)),
            ),
            PeriodicTask(
                PeriodicJob("audit.prune_sign_ins", timedelta(hours=1)),
                lambda session, now: _ignore(
                    workspaces.prune_sign_in_records(
                        session, now=now, keep_days=chosen.sign_in_retention_days
                    )
                ),
            ),
            PeriodicTask(
                PeriodicJob("exports.daily", timedelta(minutes=15)),
                lambda session, now: _ignore(
                    exports.daily(
                        session,
                        root=chosen.exports_dir or chosen.data_dir / "exports",
                        now=now,
                        keep_days=chosen.export_retention_days,
                    )
                ),
            ),
        ],
    )


def _ignore(_count: int) -> None:
    """Periodic tasks return nothing; the counts they produce are only for tests and logs."""
