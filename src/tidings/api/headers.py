"""Headers that keep the browser on our side: every page under a strict Content Security
Policy (no inline script, nothing from elsewhere, never framed), no MIME sniffing anywhere, and
content that customers sent served so that it can never run as the signed-in agent."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from tidings.api.middleware import HttpMiddleware

APP_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# The e-mail recipients' pages (unsubscribe) carry their few styles inline.
PUBLIC_PAGE_POLICY = APP_POLICY.replace("style-src 'self'", "style-src 'unsafe-inline'")
# FastAPI's interactive documentation is not under this policy (it is a page of its own).
UNPOLICED = ("/docs", "/redoc")

# What a browser shows inline of a customer's file: pictures and media its elements play.
# Never SVG or HTML, which can carry script.
INLINE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "video/mp4",
        "video/3gpp",
        "video/webm",
        "audio/aac",
        "audio/mp4",
        "audio/mpeg",
        "audio/amr",
        "audio/ogg",
    }
)


def user_content_headers(mime_type: str, filename: str) -> dict[str, str]:
    """Headers for a file someone outside the team made: shown inline only when it is a
    raster image or playable media, downloaded otherwise, and sandboxed either way."""
    bare = mime_type.split(";", 1)[0].strip().lower()
    safe_name = "".join(c for c in filename if c.isalnum() or c in "._-")[:100] or "file"
    disposition = "inline" if bare in INLINE_TYPES else "attachment"
    return {
        "Content-Disposition": f'{disposition}; filename="{safe_name}"',
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; media-src 'self'",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }


class SecurityHeaders(HttpMiddleware):
    """Adds the headers every answer needs, keeping any a route set itself."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                is_html = headers.get("content-type", "").startswith("text/html")
                if is_html and not path.startswith(UNPOLICED):
                    policy = APP_POLICY if path.startswith("/app") else PUBLIC_PAGE_POLICY
                    headers.setdefault("Content-Security-Policy", policy)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, with_headers)
