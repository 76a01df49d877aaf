"""E-mail rules as pure functions: tracking tokens, tracked links and the open pixel, the
plain-text alternative, the unsubscribe footer, machine-signal flags and SMTP reply classes.

Nothing here talks to a server or a database; the dispatcher and the tracking routes call it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import html
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inscriptis import get_text  # type: ignore[import-untyped]
from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

from tidings.kernel.errors import invalid
from tidings.kernel.templating import render_template

# What a user writes where the unsubscribe link goes (``{{ unsubscribe_url }}``); replaced by
# the message's own link when the e-mail is composed. Absent: a footer carries the link.
UNSUBSCRIBE_MARK = "tidings:unsubscribe-url"
SECURITY_CHOICES = ("none", "starttls", "tls")

# A transparent 1×1 GIF: what the open pixel answers with (43 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# --- tokens -------------------------------------------------------------------------------------


class TokenKind(enum.IntEnum):
    OPEN = 1
    CLICK = 2
    UNSUBSCRIBE = 3


@dataclass(frozen=True)
class TokenClaims:
    kind: TokenKind
    message_id: int
    link: int  # the link's index (clicks); 0 otherwise


_CLAIMS = struct.Struct(">BQH")  # kind, message id, link index: 11 bytes
_MAC_BYTES = 16  # 128 bits: not guessable, and short enough for a URL


def make_token(key: bytes, kind: TokenKind, message_id: int, link: int = 0) -> str:
    """A URL-safe token naming one message (and link), signed with HMAC-SHA256 under ``key``.
    Ids are sequential; the signature is what makes a token unguessable and untamperable."""
    claims = _CLAIMS.pack(int(kind), message_id, link)
    mac = hmac.new(key, claims, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(claims + mac).rstrip(b"=").decode()


def read_token(key: bytes, token: str, kind: TokenKind) -> TokenClaims | None:
    """The claims of a genuine token of ``kind``; None for anything altered or malformed."""
    if len(token) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    if len(raw) != _CLAIMS.size + _MAC_BYTES:
        return None
    claims, mac = raw[: _CLAIMS.size], raw[_CLAIMS.size :]
    expected = hmac.new(key, claims, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    found, message_id, link = _CLAIMS.unpack(claims)
    if found != int(kind):
        return None
    return TokenClaims(TokenKind(found), message_id, link)


# --- links and composition ----------------------------------------------------------------------

# An ``href`` of an ``<a>`` tag, quoted either way. E-mail HTML is written for mail clients
# that parse leniently; rewriting only the attribute keeps every other byte as the author
# wrote it (a parse-and-serialise round trip would not).
_ANCHOR_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


def _trackable(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and UNSUBSCRIBE_MARK not in url


def links_of(body_html: str) -> list[str]:
    """The distinct http(s) links of the HTML, in order of first appearance: a click token
    names a link by its index in this list."""
    found: list[str] = []
    for match in _ANCHOR_HREF.finditer(body_html):
        url = html.unescape(match.group(3)).strip()
        if _trackable(url) and url not in found:
            found.append(url)
    return found


def text_of(body_html: str) -> str:
    """The plain-text alternative of an HTML body: paragraphs, lists and tables laid out,
    each link's address after its words."""
    text: str = get_text(body_html, ParserConfig(display_links=True))
    return text.strip() + "\n"


@dataclass(frozen=True)
class Composed:
    html: str
    text: str


def compose(
    *,
    body_html: str,
    body_text: str,
    links: Sequence[str],
    click_url: Callable[[int], str] | None,
    open_url: str | None,
    unsubscribe_url: str,
    footer: str,
) -> Composed:
    """The bodies as sent: tracked links (``click_url(i)`` for link ``i``) and the open pixel
    when tracking is on, and the unsubscribe link where the author put it or in a footer."""
    tracked_html, tracked_text = body_html, body_text
    if click_url is not None:
        index = {url: i for i, url in enumerate(links)}

        def swap(match: re.Match[str]) -> str:
            url = html.unescape(match.group(3)).strip()
            if url not in index:
                return match.group(0)
            quote = match.group(2)
            return f"{match.group(1)}{quote}{html.escape(click_url(index[url]))}{quote}"

        tracked_html = _ANCHOR_HREF.sub(swap, body_html)
        # Longest first, so a link that is a prefix of another does not take its place.
        for url in sorted(links, key=len, reverse=True):
            tracked_text = tracked_text.replace(url, click_url(index[url]))
    tracked_html = _with_unsubscribe_html(tracked_html, unsubscribe_url, footer)
    tracked_text = _with_unsubscribe_text(tracked_text, unsubscribe_url, footer)
    if open_url is not None:
        pixel = (
            f'<img src="{html.escape(open_url)}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">'
        )
        tracked_html = _before_body_end(tracked_html, pixel)
    return Composed(tracked_html, tracked_text)


def _with_unsubscribe_html(body: str, url: str, footer: str) -> str:
    if UNSUBSCRIBE_MARK in body:
        return body.replace(UNSUBSCRIBE_MARK, html.escape(url))
    block = (
        '<p style="font-size:12px;color:#666666;margin-top:24px">'
        f'<a href="{html.escape(url)}" style="color:#666666">{html.escape(footer)}</a></p>'
    )
    return _before_body_end(body, block)


def _with_unsubscribe_text(body: str, url: str, footer: str) -> str:
    if UNSUBSCRIBE_MARK in body:
        return body.replace(UNSUBSCRIBE_MARK, url)
    return f"{body.rstrip()}\n\n--\n{footer}: {url}\n"


def _before_body_end(body: str, block: str) -> str:
    at = body.lower().rfind("</body>")
    return body[:at] + block + body[at:] if at >= 0 else body + block


UNSUBSCRIBE_FOOTER = {
    "en": "Unsubscribe from these e-mails",
    "th": "ยกเลิกการรับอีเมลเหล่านี้",
    "zh": "取消訂閱這些郵件",
}


def footer_for(locale: str | None) -> str:
    language = (locale or "en").replace("_", "-").split("-")[0].lower()
    return UNSUBSCRIBE_FOOTER.get(language, UNSUBSCRIBE_FOOTER["en"])


# --- machine signals ----------------------------------------------------------------------------

# Agents of link scanners and prefetchers: security gateways follow every link of a message,
# link-preview bots fetch what is pasted, scripts fetch anything. Lower case, matched inside.
SCANNER_AGENTS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "safelinks",
    "bingpreview",
    "trendmicro",
    "symantec",
    "fireeye",
    "forcepoint",
    "sophos",
    "cisco",
    "ironport",
    "zscaler",
    "slackbot",
    "facebookexternalhit",
    "linkedinbot",
    "twitterbot",
    "whatsapp/",
    "python-requests",
    "python-httpx",
    "go-http-client",
    "curl/",
    "wget/",
    "headlesschrome",
    "phantomjs",
    "bot/",
    "crawler",
    "spider",
)


def machine_signal(
    *, method: str, user_agent: str | None, seconds_after_send: float | None, within: float
) -> str | None:
    """Why an open or click was probably a machine's, or None when it looks human: a HEAD
    request, a known scanner's agent, no agent at all, or a fetch within ``within`` seconds of
    sending (prefetchers and gateways act at delivery, people later)."""
    if method.upper() == "HEAD":
        return "HEAD request"
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "no user agent"
    for marker in SCANNER_AGENTS:
        if marker in agent:
            return f"scanner agent ({marker.strip('/')})"
    if seconds_after_send is not None and seconds_after_send < within:
        return f"within {within:g} s of sending"
    return None


# --- SMTP replies -------------------------------------------------------------------------------


class SmtpStage(enum.StrEnum):
    CONNECT = "connect"  # connecting, greeting, TLS, authentication
    SENDER = "sender"  # MAIL FROM
    RECIPIENT = "recipient"  # RCPT TO
    DATA = "data"  # DATA and the message


@dataclass(frozen=True)
class SmtpVerdict:
    permanent: bool
    undeliverable: bool  # the address itself is refused: later sends are skipped (bounce)
    reason: str


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def classify_smtp_reply(code: int, text: str, stage: SmtpStage) -> SmtpVerdict:
    """4xx is transient (retried with backoff), 5xx permanent (RFC 5321 §4.2.1). A permanent
    refusal of the recipient — at RCPT, or an enhanced status 5.1.x (bad mailbox or domain) or
    5.2.1 (mailbox disabled) anywhere — marks the address undeliverable; other 5xx (content,
    policy, size) fail this message only."""
    reason = f"SMTP {code} at {stage.value}: {' '.join(text.split())}"[:300]
    if 400 <= code < 500:
        return SmtpVerdict(permanent=False, undeliverable=False, reason=reason)
    if not 500 <= code < 600:
        return SmtpVerdict(permanent=False, undeliverable=False, reason=reason)
    enhanced = _ENHANCED.match(text)
    about_address = enhanced is not None and (
        enhanced.group(2) == "1" or (enhanced.group(2), enhanced.group(3)) == ("2", "1")
    )
    undeliverable = stage == SmtpStage.RECIPIENT or about_address
    return SmtpVerdict(permanent=True, undeliverable=undeliverable, reason=reason)


# --- sender settings ----------------------------------------------------------------------------

_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def check_smtp_settings(values: Mapping[str, object]) -> None:
    """Raises ``TidingsError`` (422 naming the field) for SMTP settings that cannot work."""
    host = str(values.get("smtp_host") or "")
    if not _HOST.match(host):
        raise invalid("invalid_host", "a host name or IP address", field="smtp_host")
    security = values.get("smtp_security")
    if security not in SECURITY_CHOICES:
        raise invalid(
            "invalid_security", f"one of {', '.join(SECURITY_CHOICES)}", field="smtp_security"
        )
    if bool(values.get("smtp_username")) != bool(values.get("smtp_password")):
        field = "smtp_password" if values.get("smtp_username") else "smtp_username"
        raise invalid(
            "incomplete_login", "give both user name and password, or neither", field=field
        )
    dkim_fields = ("dkim_domain", "dkim_selector", "dkim_private_key")
    given = [name for name in dkim_fields if values.get(name)]
    if given and len(given) < len(dkim_fields):
        missing = next(name for name in dkim_fields if name not in given)
        raise invalid(
            "incomplete_dkim", "DKIM needs domain, selector and private key", field=missing
        )
    if values.get("dkim_selector") and not _SELECTOR.match(str(values["dkim_selector"])):
        raise invalid("invalid_selector", "letters, digits, dots and dashes", field="dkim_selector")
    if values.get("dkim_domain") and not _HOST.match(str(values["dkim_domain"])):
        raise invalid("invalid_domain", "a domain name", field="dkim_domain")
    key = values.get("dkim_private_key")
    if key and "PRIVATE KEY-----" not in str(key):
        raise invalid(
            "invalid_key",
            "a PEM private key (-----BEGIN … PRIVATE KEY-----)",
            field="dkim_private_key",
        )


# --- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    links: list[str]

    def content(self, step: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The message's ``content`` as the outbox keeps it (the dispatcher adds tracking)."""
        body: dict[str, Any] = {
            "subject": self.subject,
            "html": self.html,
            "text": self.text,
            "links": self.links,
        }
        if step:
            body["step"] = dict(step)
        return {"type": "email", "email": body}


def render_email(
    *, subject: str, html: str, text: str | None, variables: Mapping[str, Any]
) -> RenderedEmail:
    """Subject, HTML and plain text for one contact, in the Jinja sandbox (A6); the HTML with
    values escaped; the plain text generated from the HTML when the author wrote none.

    Raises:
        TidingsError: 422 naming ``subject``, ``html`` or ``text`` when one will not render.
    """
    values = {**variables, "unsubscribe_url": UNSUBSCRIBE_MARK}
    rendered_subject = " ".join(render_template(subject, values, field="subject").split())
    if not rendered_subject:
        raise invalid("empty_subject", "the subject renders empty", field="subject")
    rendered_html = render_template(html, values, field="html", html=True)
    rendered_text = render_template(text, values, field="text") if text else text_of(rendered_html)
    return RenderedEmail(
        rendered_subject[:300], rendered_html, rendered_text, links_of(rendered_html)
    )


def tracking_key(secret_key: str) -> bytes:
    """The key of tracking tokens, derived from the installation's secret for this use only."""
    return hashlib.sha256(b"tidings/email-tracking/v1\x00" + secret_key.encode()).digest()
