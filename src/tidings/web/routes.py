"""Pages of the web app, its static files and its live feed.

The pages are shells rendered here (words, the signed-in user, the CSRF token); what they
show comes from the JSON API, called by the page's script with the session cookie — one API
for every client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from tidings.api.deps import SESSION_COOKIE
from tidings.api.serving import is_closing
from tidings.bootstrap import Tidings
from tidings.kernel.errors import TidingsError
from tidings.messaging import inbox
from tidings.web.i18n import LANGUAGES, choose_language, words
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Principal
from tidings.workspaces.orm import WebSession, Workspace

HERE = Path(__file__).parent
LANGUAGE_COOKIE = "tidings_lang"
STREAM_PATH = "/app/stream"
STREAM_POLL_SECONDS = 1.0
STREAM_HEARTBEAT_SECONDS = 15.0

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=HERE / "static")
# Our own page templates (not users'): a plain environment, HTML escaped everywhere.
pages = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _tidings(request: Request) -> Tidings:
    found: Tidings = request.app.state.tidings
    return found


def _language(request: Request) -> str:
    return choose_language(
        request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
    )


def _page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    language = _language(request)
    html = pages.get_template(name).render(
        lang=language, t=words(language), languages=LANGUAGES, **values
    )
    response = HTMLResponse(html, status_code=status)
    chosen = request.query_params.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="lax")
    return response


def _signed_in(request: Request) -> tuple[Principal, Workspace, WebSession] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    inst = _tidings(request)
    with inst.db.reading() as session:
        try:
            return workspaces.authenticate_web_session(session, token=token, now=inst.clock.now())
        except TidingsError:
            return None


def _same_origin(request: Request) -> bool:
    """A form post from our own pages: browsers send Origin on POSTs; none (old clients,
    tests) is accepted, since the session cookie is SameSite=Lax anyway. Behind a proxy the
    page's origin is the public address, not the one this process is reached at."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = urlsplit(_tidings(request).settings.public_url).netloc
    return urlsplit(origin).netloc in (request.url.netloc, public)


@router.get("/app")
def app_root() -> RedirectResponse:
    return RedirectResponse("/app/inbox", status_code=303)


@router.get("/app/login")
def login_page(request: Request) -> Response:
    if _signed_in(request) is not None:
        return RedirectResponse("/app/inbox", status_code=303)
    inst = _tidings(request)
    with inst.db.reading() as session:
        known = workspaces.list_workspaces(session)
    only = known[0].slug if len(known) == 1 else ""
    return _page(request, "login.html", workspace=only, email="", error=None)


@router.post("/app/login")
async def login(
    request: Request,
    workspace: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    if not _same_origin(request):
        return _page(request, "login.html", 403, workspace=workspace, email=email, error="origin")
    inst = _tidings(request)
    address = request.client.host if request.client else None
    outcome = await inst.db.write(
        lambda session: workspaces.attempt_sign_in(
            session,
            workspace_slug=workspace,
            email=email,
            password=password,
            address=address,
            now=inst.clock.now(),
        )
    )
    if outcome.retry_after is not None:
        seconds = math.ceil(outcome.retry_after.total_seconds())
        page = _page(
            request,
            "login.html",
            429,
            workspace=workspace,
            email=email,
            error="throttled",
            minutes=max(1, math.ceil(seconds / 60)),
        )
        page.headers["Retry-After"] = str(seconds)
        return page
    if outcome.token is None:
        return _page(
            request, "login.html", 401, workspace=workspace, email=email, error="wrong_login"
        )
    token = outcome.token
    response = RedirectResponse("/app/inbox", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(workspaces.WEB_SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=(
            request.url.scheme == "https"
            or inst.settings.secure_cookies
            or inst.settings.public_url.startswith("https://")
        ),
    )
    return response


@router.post("/app/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    signed = await run_in_threadpool(_signed_in, request)
    token = request.cookies.get(SESSION_COOKIE)
    # The session's CSRF token proves the click came from our own page: the session ends
    # on the server whatever address the browser saw us at.
    if signed is not None and token and hmac.compare_digest(csrf, signed[2].csrf_token):
        inst = _tidings(request)
        await inst.db.write(
            lambda session: workspaces.end_web_session(session, token=token, now=inst.clock.now())
        )
    response = RedirectResponse("/app/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# The app's sections in the order of the top bar: each is /app/<name>, its template
# <name>.html, its script <name>.js and its word in the top bar.
SECTIONS = ("dashboard", "inbox", "contacts", "sequences", "rules", "broadcasts", "settings")


def _section(request: Request, section: str) -> Response:
    """A section's page shell for the signed-in user; the login page for anyone else."""
    signed = _signed_in(request)
    if signed is None:
        return RedirectResponse("/app/login", status_code=303)
    principal, workspace, web = signed
    language = _language(request)
    return _page(
        request,
        f"{section}.html",
        user=principal,
        workspace=workspace,
        csrf=web.csrf_token,
        section=section,
        sections=SECTIONS,
        words_json=json.dumps(words(language), ensure_ascii=False),
    )


@router.get(STREAM_PATH)
async def stream(request: Request) -> Response:
    """Server-sent events: ``change`` whenever the workspace's inbox changed (a message in or
    out, a tick, an assignment), so open pages refresh what they show. Polls the database,
    so it works the same with any number of processes and hosts."""
    signed = await run_in_threadpool(_signed_in, request)
    if signed is None:
        body = {"error": {"code": "unauthenticated", "message": "sign in again", "field": None}}
        return Response(json.dumps(body), status_code=401, media_type="application/json")
    workspace_id = signed[1].id
    inst = _tidings(request)

    def mark() -> str:
        with inst.db.reading() as session:
            return inbox.change_mark(session, workspace_id)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        last, quiet = "", 0.0
        # Until the browser leaves or the server stops (the browser then reconnects after
        # the retry, to whichever process answers).
        while not is_closing(request) and not await request.is_disconnected():
            current = await run_in_threadpool(mark)
            if current != last:
                last, quiet = current, 0.0
                yield f"event: change\ndata: {json.dumps({'mark': current})}\n\n"
            elif quiet >= STREAM_HEARTBEAT_SECONDS:
                quiet = 0.0
                yield ": still here\n\n"  # keeps proxies from closing an idle stream
            await asyncio.sleep(STREAM_POLL_SECONDS)
            quiet += STREAM_POLL_SECONDS

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every page that names none (the API docs): the app's icon."""
    return RedirectResponse("/app/static/favicon.svg", status_code=308)


# Last, so that /app/login and the live feed are matched before it.
@router.get("/app/{section}")
def section_page(request: Request, section: str) -> Response:
    if section not in SECTIONS:
        return _page(request, "missing.html", 404)
    return _section(request, section)
