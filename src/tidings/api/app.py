"""The FastAPI application: routers of every domain under ``/api/v1`` and ``/health``."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

import tidings
from tidings.api.errors import document_errors_and_auth, install_error_handlers
from tidings.api.headers import SecurityHeaders
from tidings.api.inputs import guard_inputs
from tidings.api.limits import RequestBodyGuard
from tidings.api.middleware import HttpMiddleware
from tidings.automation.routes import router as automation_router
from tidings.bootstrap import RequestActivity, Tidings
from tidings.broadcasts.routes import router as broadcasts_router
from tidings.channels.routes import router as channels_router
from tidings.channels.routes import webhook_router as whatsapp_webhooks
from tidings.channels.service import count_quarantined
from tidings.contacts.routes import router as contacts_router
from tidings.crm_sync.routes import router as sync_router
from tidings.db.migrate import current_revision, head_revision
from tidings.exports.routes import router as exports_router
from tidings.mailing.routes import router as mailing_router
from tidings.mailing.routes import tracking_router as email_tracking
from tidings.messaging.routes import router as messaging_router
from tidings.scheduler.service import live_workers
from tidings.sequences.routes import router as sequences_router
from tidings.web.routes import STREAM_PATH, static_files
from tidings.web.routes import router as web_router
from tidings.webhooks.routes import router as webhooks_router
from tidings.workspaces.routes import router as workspaces_router

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


class ActivityCounter(HttpMiddleware):
    """Counts requests in flight so the embedded worker can give way to them."""

    def __init__(self, app: ASGIApp, activity: RequestActivity) -> None:
        super().__init__(app)
        self.activity = activity

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The live feed stays open for as long as a page does: not a request to give way to.
        if scope["path"] == STREAM_PATH:
            await self.app(scope, receive, send)
            return
        self.activity.started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.activity.finished()


def create_app(installation: Tidings) -> FastAPI:
    """Build the web application around an assembled installation."""
    app = FastAPI(
        title="Tidings",
        version=tidings.__version__,
        description="Social CRM and marketing automation, WhatsApp first. "
        "Authenticate with `Authorization: Bearer <API key>`.",
        dependencies=[Depends(guard_inputs)],
    )
    app.state.tidings = installation
    app.state.closing = threading.Event()  # see tidings.api.serving
    install_error_handlers(app)
    app.add_middleware(ActivityCounter, activity=installation.activity)
    # Outermost: bodies are read (and limited) before a request counts as in flight.
    app.add_middleware(RequestBodyGuard)
    app.add_middleware(SecurityHeaders)
    app.include_router(workspaces_router, prefix=API_PREFIX)
    app.include_router(contacts_router, prefix=API_PREFIX)
    app.include_router(channels_router, prefix=API_PREFIX)
    app.include_router(broadcasts_router, prefix=API_PREFIX)
    app.include_router(sequences_router, prefix=API_PREFIX)
    app.include_router(messaging_router, prefix=API_PREFIX)
    app.include_router(mailing_router, prefix=API_PREFIX)
    app.include_router(automation_router, prefix=API_PREFIX)
    app.include_router(webhooks_router, prefix=API_PREFIX)
    app.include_router(sync_router, prefix=API_PREFIX)
    app.include_router(exports_router, prefix=API_PREFIX)
    app.include_router(email_tracking)
    app.include_router(whatsapp_webhooks)
    app.include_router(web_router)
    app.mount("/app/static", static_files, name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app/inbox", status_code=303)

    @app.get("/health", tags=["operations"], responses={503: {"description": "a part is down"}})
    def health(request: Request) -> JSONResponse:
        """Liveness and readiness: database reachable, schema current, workers alive, webhook
        updates in quarantine; 503 naming the failing part when the database cannot be
        reached."""
        inst: Tidings = request.app.state.tidings
        try:
            with inst.db.reading() as session:
                session.execute(text("SELECT 1"))
                workers = live_workers(session, now=inst.clock.now(), within=timedelta(minutes=2))
                quarantined = count_quarantined(session)
            revision, head = current_revision(inst.db.engine), head_revision()
        except SQLAlchemyError as error:
            log.error("health: the database cannot be reached: %s", error)
            return JSONResponse(
                {
                    "status": "unavailable",
                    "failing": "database",
                    "message": "the database cannot be reached",
                    "version": tidings.__version__,
                },
                status_code=503,
            )
        return JSONResponse(
            {
                "status": "ok" if revision == head else "migrations_pending",
                "version": tidings.__version__,
                "database": inst.db.engine.dialect.name,
                "schema_revision": revision,
                "workers_alive": len(workers),
                "webhook_updates_quarantined": quarantined,
                # What an operator should look at: the service answers, but needs a person.
                "attention": ["webhook_quarantine"] if quarantined else [],
            }
        )

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors_and_auth(base_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
