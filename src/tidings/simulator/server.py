"""``tidings simulator``: the Cloud API endpoints Tidings uses, answered like Meta answers them.

For each accepted message it posts signed status webhooks (sent → delivered → read, with
configurable delays and probabilities) to the configured webhook URL; simulated customers
reply from scripts. Faults on demand: transient and permanent errors, latency, duplicated and
reordered webhooks; Meta's limits (throughput per number, one message per 6 s to a user, the
24-hour window) are enforced unless lifted. Every accepted or rejected request is written to a
ledger, readable over HTTP: the witness end-to-end tests and benchmarks count against.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tidings.kernel.clock import Clock, SystemClock
from tidings.simulator import customers

log = logging.getLogger(__name__)
JSON_TYPES = ("text", "image", "video", "audio", "document", "sticker", "template")
SENDABLE = (*JSON_TYPES, "interactive", "reaction", "location", "contacts")
# HTTP statuses the simulator answers with per error code (Meta documents none; see the notes).
HTTP_FOR_CODE = {190: 401, 131000: 500, 131016: 503, 1: 500, 2: 503}
WINDOW = timedelta(hours=24)


@dataclass
class SimulatorConfig:
    """Everything that shapes the simulator's behaviour; all of it adjustable at run time."""

    phone_number_id: str = "109876543210001"
    business_account_id: str = "209876543210001"
    display_phone_number: str = "85230001234"
    access_token: str = "simulator-access-token"  # noqa: S105 - a local stand-in's fixed token
    app_secret: str = "simulator-app-secret"  # noqa: S105 - signs local webhooks only
    webhook_url: str | None = None
    sent_delay: float = 0.3
    delivered_delay: float = 1.0
    read_delay: float = 3.0
    delivered_rate: float = 1.0
    read_rate: float = 0.8
    reply_rate: float = 0.3
    reply_delay: float = 5.0
    chatter_every: float | None = None
    transient_error_rate: float = 0.0
    permanent_error_rate: float = 0.0
    # Sends refused at once with a permanent code (131026, not a reachable WhatsApp user).
    refusal_rate: float = 0.0
    latency: float = 0.0
    duplicate_rate: float = 0.0
    reorder: bool = False
    throughput_per_second: float | None = 80.0
    pair_interval: float | None = 6.0
    enforce_window: bool = True
    webhook_batch: int = 1
    seed: int = 20261123

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply run-time changes. Raises ``ValueError`` naming an unknown or mistyped field."""
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if value is not None and current is not None and not isinstance(value, type(current)):
                if isinstance(current, float) and isinstance(value, int):
                    value = float(value)
                else:
                    raise ValueError(f"{name} expects {type(current).__name__}")
            setattr(self, name, value)


@dataclass
class LedgerEntry:
    seq: int
    at: str
    outcome: str  # accepted | rejected | read_receipt
    to: str | None
    type: str | None
    message_id: str | None = None
    error_code: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    statuses: list[str] = field(default_factory=list)
    # The real-time second the request arrived in, as the throughput limit counts them (``at``
    # is on the possibly virtual clock of the scenario).
    second: int = 0


BSUID = re.compile(r"^[A-Z]{2}\.(ENT\.)?[0-9A-Za-z]{1,128}$")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Simulator:
    """The simulated Cloud API; thread-safe, driven by HTTP handlers and its webhook thread."""

    def __init__(self, config: SimulatorConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self.ledger: list[LedgerEntry] = []
        # The business account's templates: tests change them to play Meta pausing one.
        self.templates: list[dict[str, Any]] = [dict(t) for t in TEMPLATES]
        self.by_wamid: dict[str, LedgerEntry] = {}
        self.media: dict[str, tuple[bytes, str]] = {}
        self.last_inbound: dict[str, datetime] = {}
        self.last_to_user: dict[str, float] = {}
        self.second: tuple[int, int] = (0, 0)
        self.webhooks = WebhookPoster(self)
        self.counter = itertools.count(1)

    # --- sending -------------------------------------------------------------------------------

    def handle_messages(self, token: str | None, payload: Any) -> tuple[int, dict[str, Any]]:
        """Answer ``POST /<phone-number-id>/messages`` like the Cloud API."""
        if token != self.config.access_token:
            return self.error(190, "Error validating access token", "Invalid OAuth access token.")
        if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
            return self.error(100, "Invalid parameter", "messaging_product must be 'whatsapp'.")
        if payload.get("status") == "read":
            return self._read_receipt(payload)
        to, kind = str(payload.get("to") or ""), str(payload.get("type") or "")
        # A user known only by a username is addressed by BSUID in ``recipient`` (``to`` wins).
        bsuid = str(payload.get("recipient") or "") if not to else ""
        problem = None
        if bsuid and not BSUID.match(bsuid):
            problem = "Invalid 'recipient' parameter."
        elif not bsuid and not to.strip("+").isdigit():
            problem = "Invalid 'to' parameter."
        elif kind not in SENDABLE or not isinstance(payload.get(kind), dict | list):
            problem = f"Parameter '{kind}' is missing or the type is not supported."
        elif kind == "text" and not str(payload["text"].get("body") or "").strip():
            problem = "Parameter 'text.body' is required."
        if problem:
            return self._rejected(payload, 100, "Invalid parameter", problem)
        wa_id = bsuid or to.lstrip("+").replace(" ", "")
        with self.lock:
            fault = self._limit_or_fault(wa_id)
            if fault is not None:
                self._write(payload, "rejected", wa_id, kind, code=fault[0])
        if fault is not None:
            return self.error(*fault)
        wamid = f"wamid.{uuid.uuid4().hex.upper()}"
        with self.lock:
            entry = self._write(payload, "accepted", wa_id, kind, wamid=wamid)
            self.by_wamid[wamid] = entry
        self._schedule_statuses(entry, wa_id, kind, payload)
        contact = {"input": bsuid, "user_id": bsuid} if bsuid else {"input": to, "wa_id": wa_id}
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": wamid}],
        }

    def _limit_or_fault(self, wa_id: str) -> tuple[int, str, str] | None:
        """Meta's limits, then injected transient faults. Called with the lock held."""
        config = self.config
        now = time.monotonic()
        if config.throughput_per_second is not None:
            second, count = self.second
            current = int(now)
            count = count + 1 if current == second else 1
            self.second = (current, count)
            if count > config.throughput_per_second:
                return (130429, "Rate limit hit", "Cloud API message throughput has been reached.")
        if config.pair_interval is not None:
            last = self.last_to_user.get(wa_id)
            if last is not None and now - last < config.pair_interval:
                return (
                    131056,
                    "(Business Account, Consumer Account) pair rate limit hit",
                    "Too many messages sent from this phone number to the same phone number "
                    "in a short period of time.",
                )
        if self.rng.random() < config.transient_error_rate:
            if self.rng.random() < 0.5:
                return (131000, "Something went wrong", "Message failed to send (simulated).")
            return (130429, "Rate limit hit", "Cloud API message throughput has been reached.")
        if config.refusal_rate and self.rng.random() < config.refusal_rate:
            return (131026, "Message undeliverable", "The recipient cannot receive it (simulated).")
        self.last_to_user[wa_id] = now
        return None

    def _read_receipt(self, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        message_id = payload.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            return self.error(131009, "Parameter value is not valid", "message_id is required.")
        with self.lock:
            self._write(dict(payload), "read_receipt", None, "read")
        return 200, {"success": True}

    def _rejected(
        self, payload: Any, code: int, title: str, details: str
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self._write(
                payload if isinstance(payload, dict) else {},
                "rejected",
                None,
                None,
                code=code,
            )
        return self.error(code, title, details)

    def error(self, code: int, title: str, details: str) -> tuple[int, dict[str, Any]]:
        body = {
            "error": {
                "message": f"(#{code}) {title}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": f"Sim{uuid.uuid4().hex[:20]}",
            }
        }
        return HTTP_FOR_CODE.get(code, 400), body

    def _write(
        self,
        payload: dict[str, Any],
        outcome: str,
        to: str | None,
        kind: str | None,
        *,
        wamid: str | None = None,
        code: int | None = None,
    ) -> LedgerEntry:
        entry = LedgerEntry(
            seq=next(self.counter),
            at=self.clock.now().isoformat(),
            outcome=outcome,
            to=to,
            type=kind,
            message_id=wamid,
            error_code=code,
            payload=payload,
            second=int(time.monotonic()),
        )
        self.ledger.append(entry)
        return entry

    # --- what follows an accepted message ------------------------------------------------------

    def _schedule_statuses(
        self, entry: LedgerEntry, wa_id: str, kind: str, payload: Mapping[str, Any]
    ) -> None:
        config = self.config
        with self.lock:
            rng_values = [self.rng.random() for _ in range(6)]
            last_inbound = self.last_inbound.get(wa_id)
        wamid = str(entry.message_id)
        plan: list[tuple[float, str, dict[str, Any] | None]] = [(config.sent_delay, "sent", None)]
        window_closed = (
            config.enforce_window
            and kind != "template"
            and (last_inbound is None or self.clock.now() - last_inbound >= WINDOW)
        )
        if window_closed:
            plan.append(
                (
                    config.delivered_delay,
                    "failed",
                    {
                        "code": 131047,
                        "title": "Re-engagement message",
                        "message": "Re-engagement message",
                        "error_data": {
                            "details": "Message failed to send because more than 24 hours have "
                            "passed since the customer last replied to this number."
                        },
                    },
                )
            )
        elif not customers.is_reachable(wa_id) or rng_values[0] < config.permanent_error_rate:
            plan.append(
                (
                    config.delivered_delay,
                    "failed",
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "message": "Message undeliverable",
                        "error_data": {"details": "Unable to deliver message."},
                    },
                )
            )
        elif kind != "reaction" and rng_values[1] < config.delivered_rate:
            plan.append((config.delivered_delay, "delivered", None))
            if rng_values[2] < config.read_rate:
                plan.append((config.read_delay, "read", None))
                persona = customers.persona_for(wa_id)
                if persona is not None and rng_values[3] < config.reply_rate:
                    with self.lock:
                        line = customers.reply(self.rng, persona)
                    self.webhooks.schedule(
                        config.read_delay + config.reply_delay,
                        lambda: self.inbound_payload(persona.wa_id, persona.name, line),
                    )
        for delay, status, error in plan:
            when = self.clock.now() + timedelta(seconds=delay)
            jitter = rng_values[4] * 2.0 if config.reorder else 0.0
            self.webhooks.schedule(
                delay + jitter,
                _status_builder(self, wamid, wa_id, status, when, error, payload),
                duplicate=rng_values[5] < config.duplicate_rate,
            )

    def status_payload(
        self,
        wamid: str,
        wa_id: str,
        status: str,
        when: datetime,
        error: dict[str, Any] | None,
        category: str,
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(when.timestamp())),
            # Sent to a BSUID with no phone known: only the user id comes back.
            ("recipient_user_id" if BSUID.match(wa_id) else "recipient_id"): wa_id,
        }
        if status in ("sent", "delivered"):
            item["pricing"] = {
                "billable": category != "service",
                "pricing_model": "PMP",
                "type": "regular" if category != "service" else "free_customer_service",
                "category": category,
            }
        if error is not None:
            item["errors"] = [error]
        with self.lock:
            entry = self.by_wamid.get(wamid)
            if entry is not None:
                entry.statuses.append(status)
        return self._envelope({"statuses": [item]})

    def inbound_payload(self, wa_id: str, name: str, text: str) -> dict[str, Any]:
        """A customer's text message, as Meta posts it; opens the customer's 24-hour window."""
        now = self.clock.now()
        with self.lock:
            self.last_inbound[wa_id] = now
            self._write(
                {"from": wa_id, "text": text}, "customer_message", wa_id, "text", wamid=None
            )
        return self._envelope(
            {
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": f"wamid.IN{uuid.uuid4().hex.upper()}",
                        "timestamp": str(int(now.timestamp())),
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
            }
        )

    def _envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.config.business_account_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.config.display_phone_number,
                                    "phone_number_id": self.config.phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }

    def customer_sends_media(
        self, wa_id: str, data: bytes, mime_type: str, caption: str | None = None
    ) -> str:
        """Make a customer send a file now; returns its media id (downloadable from us)."""
        media_id = self.keep_media(data, mime_type)
        kind = "image" if mime_type.startswith("image/") else "document"
        if mime_type == "image/webp":
            kind = "sticker"
        persona = customers.persona_for(wa_id)
        media: dict[str, Any] = {
            "id": media_id,
            "mime_type": mime_type,
            # Base64, as Meta's webhooks write it (the contract's examples), not hex.
            "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        }
        if caption:
            media["caption"] = caption

        def build() -> dict[str, Any]:
            now = self.clock.now()
            with self.lock:
                self.last_inbound[wa_id] = now
            return self._envelope(
                {
                    "contacts": [
                        {"profile": {"name": persona.name if persona else wa_id}, "wa_id": wa_id}
                    ],
                    "messages": [
                        {
                            "from": wa_id,
                            "id": f"wamid.IN{uuid.uuid4().hex.upper()}",
                            "timestamp": str(int(now.timestamp())),
                            "type": kind,
                            kind: media,
                        }
                    ],
                }
            )

        self.webhooks.schedule(0.0, build)
        return media_id

    def keep_media(self, data: bytes, mime_type: str) -> str:
        with self.lock:
            media_id = str(10**15 + len(self.media) + 1)
            self.media[media_id] = (data, mime_type)
        return media_id

    def customer_says(self, wa_id: str, text: str | None, name: str | None = None) -> None:
        """Make a customer write now (scripted opener when ``text`` is None)."""
        persona = customers.persona_for(wa_id)
        with self.lock:
            line = text or (customers.opener(self.rng, persona) if persona else "Hello")
        shown = name or (persona.name if persona else wa_id)
        self.webhooks.schedule(0.0, lambda: self.inbound_payload(wa_id, shown, line))

    def chatter(self) -> None:
        """One unprompted message from a random persona (the demo's background life)."""
        with self.lock:
            persona = self.rng.choice(customers.PERSONAS)
        self.customer_says(persona.wa_id, None)

    def pricing_category(self, payload: Mapping[str, Any]) -> str:
        """What Meta reports a message was charged as: a template's own category (one the
        account does not have counts as marketing), anything else is a service message."""
        if payload.get("type") != "template":
            return "service"
        template = payload.get("template") or {}
        language = (template.get("language") or {}).get("code")
        with self.lock:
            for known in self.templates:
                if known["name"] == template.get("name") and known["language"] == language:
                    return str(known["category"]).lower()
        return "marketing"

    def stats(self) -> dict[str, Any]:
        with self.lock:
            outcomes = Counter(entry.outcome for entry in self.ledger)
            statuses = Counter(status for entry in self.ledger for status in entry.statuses)
            codes = Counter(entry.error_code for entry in self.ledger if entry.error_code)
        return {
            "outcomes": dict(outcomes),
            "statuses": dict(statuses),
            "error_codes": {str(code): count for code, count in codes.items()},
            "webhooks": self.webhooks.stats(),
        }


def _status_builder(
    simulator: Simulator,
    wamid: str,
    wa_id: str,
    status: str,
    when: datetime,
    error: dict[str, Any] | None,
    payload: Mapping[str, Any],
) -> Any:
    category = simulator.pricing_category(payload)  # now, outside the webhook thread
    return lambda: simulator.status_payload(wamid, wa_id, status, when, error, category)


class WebhookPoster:
    """Posts due webhooks, signed with the app secret, retrying like Meta when refused."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.queue: list[tuple[float, int, Any, int]] = []
        self.condition = threading.Condition()
        self.sequence = itertools.count()
        self.stopped = False
        self.posted = 0
        self.failed_posts = 0
        self.thread = threading.Thread(target=self._run, name="simulator-webhooks", daemon=True)
        self.http = httpx.Client(timeout=10.0)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
        self.thread.join(timeout=5)
        self.http.close()

    def schedule(self, delay: float, build: Any, *, duplicate: bool = False) -> None:
        """Queue ``build()``'s payload for ``delay`` seconds from now (twice if ``duplicate``)."""
        if self.simulator.config.webhook_url is None:
            return
        due = time.monotonic() + max(0.0, delay)
        with self.condition:
            heapq.heappush(self.queue, (due, next(self.sequence), build, 0))
            if duplicate:
                heapq.heappush(self.queue, (due + 0.5, next(self.sequence), build, 0))
            self.condition.notify()

    def pending(self) -> int:
        with self.condition:
            return len(self.queue)

    def stats(self) -> dict[str, int]:
        return {"posted": self.posted, "failed": self.failed_posts, "pending": self.pending()}

    def _run(self) -> None:
        while True:
            with self.condition:
                while not self.stopped and (not self.queue or self.queue[0][0] > time.monotonic()):
                    timeout = self.queue[0][0] - time.monotonic() if self.queue else None
                    self.condition.wait(timeout)
                if self.stopped:
                    return
                batch: list[tuple[float, int, Any, int]] = []
                limit = max(1, self.simulator.config.webhook_batch)
                while self.queue and self.queue[0][0] <= time.monotonic() and len(batch) < limit:
                    batch.append(heapq.heappop(self.queue))
            self._post(batch)

    def _post(self, batch: list[tuple[float, int, Any, int]]) -> None:
        url = self.simulator.config.webhook_url
        if url is None:
            return
        built = [(item, item[2]() if callable(item[2]) else item[2]) for item in batch]
        payload = built[0][1]
        for _, extra in built[1:]:  # Meta batches several updates as several entries
            payload = {**payload, "entry": [*payload["entry"], *extra["entry"]]}
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(self.simulator.config.app_secret, body),
        }
        try:
            response = self.http.post(url, content=body, headers=headers)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.posted += 1
            return
        self.failed_posts += 1
        with self.condition:  # retry each update with backoff, as Meta does for days
            for (_, _, _, tries), value in built:
                if tries < 8:
                    delay = min(2.0**tries, 60.0)
                    heapq.heappush(
                        self.queue,
                        (time.monotonic() + delay, next(self.sequence), value, tries + 1),
                    )
            self.condition.notify()


# --- HTTP -------------------------------------------------------------------------------------


def create_simulator_app(simulator: Simulator) -> Starlette:
    def token_of(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    async def messages(request: Request) -> Response:
        if simulator.config.latency:
            import anyio

            await anyio.sleep(simulator.config.latency)
        try:
            payload = json.loads(await request.body())
        except ValueError:
            payload = None
        status, body = simulator.handle_messages(token_of(request), payload)
        return JSONResponse(body, status_code=status)

    async def upload_media(request: Request) -> Response:
        if token_of(request) != simulator.config.access_token:
            status, body = simulator.error(190, "Invalid token", "Invalid token")
            return JSONResponse(body, status_code=status)
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            status, body = simulator.error(100, "Invalid parameter", "file is required")
            return JSONResponse(body, status_code=status)
        data = await upload.read()
        media_id = simulator.keep_media(data, upload.content_type or "application/octet-stream")
        return JSONResponse({"id": media_id})

    async def media_info(request: Request) -> Response:
        if token_of(request) != simulator.config.access_token:
            status, body = simulator.error(190, "Invalid token", "Invalid token")
            return JSONResponse(body, status_code=status)
        media_id = request.path_params["media_id"]
        if media_id not in simulator.media:
            status, body = simulator.error(100, "Invalid parameter", "Unknown media id")
            return JSONResponse(body, status_code=status)
        data, mime = simulator.media[media_id]
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": str(request.url_for("media_file", media_id=media_id)),
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),
                "id": media_id,
            }
        )

    async def media_file(request: Request) -> Response:
        found = simulator.media.get(request.path_params["media_id"])
        if token_of(request) != simulator.config.access_token or found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    async def templates(request: Request) -> Response:
        with simulator.lock:
            listed = list(simulator.templates)
        return JSONResponse({"data": listed, "paging": {"cursors": {}}})

    async def ledger(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        with simulator.lock:
            entries = [asdict(e) for e in simulator.ledger if e.seq > since]
        return JSONResponse({"entries": entries})

    async def stats(request: Request) -> Response:
        return JSONResponse(simulator.stats())

    async def customer_message(request: Request) -> Response:
        body = await _json_or_empty(request)
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            return JSONResponse({"error": {"field": "text", "message": "text"}}, status_code=422)
        simulator.customer_says(request.path_params["wa_id"], text, body.get("name"))
        return JSONResponse({"queued": True}, status_code=202)

    async def customer_media(request: Request) -> Response:
        data = await request.body()
        mime_type = request.headers.get("content-type", "")
        if not data or not mime_type:
            return JSONResponse(
                {"error": {"field": "body", "message": "send the file with its Content-Type"}},
                status_code=422,
            )
        media_id = simulator.customer_sends_media(
            request.path_params["wa_id"], data, mime_type, request.query_params.get("caption")
        )
        return JSONResponse({"queued": True, "media_id": media_id}, status_code=202)

    async def config(request: Request) -> Response:
        if request.method == "PATCH":
            try:
                simulator.config.update(await _json_or_empty(request))
            except ValueError as error:
                return JSONResponse({"error": {"message": str(error)}}, status_code=422)
        shown = asdict(simulator.config)
        shown["access_token"] = shown["app_secret"] = "***"  # noqa: S105 - hidden, not a secret
        return JSONResponse(shown)

    async def people(request: Request) -> Response:
        return JSONResponse(
            [{"wa_id": p.wa_id, "name": p.name, "language": p.language} for p in customers.PERSONAS]
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/_simulator/ledger", ledger),
            Route("/_simulator/stats", stats),
            Route("/_simulator/config", config, methods=["GET", "PATCH"]),
            Route("/_simulator/customers", people),
            Route("/_simulator/customers/{wa_id}/messages", customer_message, methods=["POST"]),
            Route("/_simulator/customers/{wa_id}/media", customer_media, methods=["POST"]),
            Route("/_media/{media_id}", media_file, name="media_file"),
            Route("/{version}/{phone_number_id}/messages", messages, methods=["POST"]),
            Route("/{version}/{phone_number_id}/media", upload_media, methods=["POST"]),
            Route("/{version}/{waba_id}/message_templates", templates),
            Route("/{version}/{media_id}", media_info),
        ]
    )


async def _json_or_empty(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "order_update",
        "language": language,
        "status": "APPROVED",
        "category": "UTILITY",
        "id": f"90000000000000{index}",
        "components": [{"type": "BODY", "text": text}],
    }
    for index, (language, text) in enumerate(
        [
            ("en", "Hi {{1}}, your order {{2}} is on its way."),
            ("th", "สวัสดีค่ะ {{1}} คำสั่งซื้อ {{2}} กำลังจัดส่ง"),
            ("zh_TW", "{{1}} 您好，您的訂單 {{2}} 已出貨。"),
        ]
    )
] + [
    {
        "name": "weekly_promo",
        "language": "en",
        "status": "APPROVED",
        "category": "MARKETING",
        "id": "900000000000010",
        "components": [{"type": "BODY", "text": "This week only: {{1}}"}],
    }
]


@dataclass
class RunningSimulator:
    """A simulator serving on a port in a background thread (tests, ``serve --demo``)."""

    simulator: Simulator
    server: uvicorn.Server
    thread: threading.Thread
    url: str
    chatter_thread: threading.Thread | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stop_event.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.simulator.webhooks.stop()


def start_simulator(
    config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None
) -> RunningSimulator:
    """Serve a simulator in a thread; ``port=0`` picks a free port. Returns once it listens."""
    simulator = Simulator(config, clock=clock)
    simulator.webhooks.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_simulator_app(simulator),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=30,  # well beyond our client's 2 s idle expiry
        )
    )
    thread = threading.Thread(target=server.run, name="simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    running = RunningSimulator(simulator, server, thread, f"http://{host}:{bound}")
    if config.chatter_every:
        running.chatter_thread = threading.Thread(
            target=_chatter, args=(running,), name="simulator-chatter", daemon=True
        )
        running.chatter_thread.start()
    return running


def _chatter(running: RunningSimulator) -> None:
    every = running.simulator.config.chatter_every or 60.0
    while not running.stop_event.wait(every):
        running.simulator.chatter()
