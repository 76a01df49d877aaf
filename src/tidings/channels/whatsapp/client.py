"""The Cloud API adapter: sends messages and moves media over HTTP (the notes' §3).

The same code talks to Meta, to Prism on Meta's spec, and to ``tidings simulator``: only the
number's base URL and version differ. A send ends in exactly one :class:`SendOutcome`:
accepted (with the ``wamid``), rejected (with the provider's error), not sent (the request
never left: safe to retry) or uncertain (it may have arrived: a timeout after sending).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from tidings import __version__
from tidings.channels.domain import ProviderError
from tidings.egress.http import EgressRefusedError, GuardedTransport
from tidings.egress.policy import EgressPolicy

# Meta's contract constrains the header to ``name/major.minor.patch``.
USER_AGENT = f"Tidings/{__version__}"
TITLE_PREFIX = re.compile(r"^\(#\d+\)\s*")


@dataclass(frozen=True)
class NumberEndpoint:
    """Where and as whom to call the Cloud API for one of our numbers."""

    base_url: str
    api_version: str
    phone_number_id: str
    access_token: str

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url.rstrip("/"), self.api_version, *parts])


@dataclass(frozen=True)
class SendOutcome:
    # "accepted" | "rejected" | "unsent" | "uncertain" | "refused" (the egress guard would
    # not connect to the number's API address: nothing left, and retrying cannot help)
    state: str
    message_id: str | None = None
    wa_id: str | None = None
    error: ProviderError | None = None
    http_status: int | None = None
    note: str = ""

    @property
    def accepted(self) -> bool:
        return self.state == "accepted"


def message_payload(recipient: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages API body for ``content`` (already checked) to ``recipient``: a phone
    number or WhatsApp id goes in ``to``; a BSUID (a user known only by their username) in
    ``recipient``, as the Cloud API takes it since 2026."""
    address = "recipient" if is_bsuid(recipient) else "to"
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        address: recipient,
        "type": content["type"],
        content["type"]: content[content["type"]],
    }
    if content.get("context"):
        payload["context"] = dict(content["context"])
    return payload


BSUID = re.compile(r"^[A-Z]{2}\.(ENT\.)?[0-9A-Za-z]{1,128}$")


def is_bsuid(recipient: str) -> bool:
    """A business-scoped user id (``US.13491208655302741918``): a country code, a dot, an id;
    never a phone number, which has no letters."""
    return BSUID.match(recipient) is not None


def read_receipt_payload(message_id: str, *, typing: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
    }
    if typing:
        payload["typing_indicator"] = {"type": "text"}
    return payload


def parse_error(response: httpx.Response) -> ProviderError:
    """The Graph error of a failed response; a body that is not one keeps the HTTP status."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if not isinstance(error, Mapping) or not isinstance(error.get("code"), int):
        return ProviderError(
            code=0 if response.status_code < 500 else response.status_code,
            title=f"HTTP {response.status_code}",
            message=response.text[:300],
        )
    data = error.get("error_data") if isinstance(error.get("error_data"), Mapping) else {}
    message = str(error.get("message") or "")
    return ProviderError(
        code=int(error["code"]),
        title=str(error.get("error_user_title") or TITLE_PREFIX.sub("", message) or "error")[:300],
        message=message[:1000],
        details=str((data or {}).get("details") or error.get("error_user_msg") or "")[:2000],
    )


class CloudApiClient:
    """Thread-safe: one instance (one connection pool) serves every number and thread."""

    def __init__(
        self,
        http: httpx.Client | None = None,
        *,
        policy: EgressPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=2.0,
        )
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            # Only to permitted addresses (by default: the public internet), checked at the
            # moment of connecting.
            transport=GuardedTransport(policy or EgressPolicy(), limits=limits),
            # Idle connections are dropped before a server would close them (5 s is common):
            # a request sent on a connection the server is closing at that moment fails after
            # leaving, and a send that may have arrived is "uncertain" (not resent if
            # marketing). Reconnecting after 2 s idle costs a handshake, nothing else.
            limits=limits,
            headers={"User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def _post_json(self, endpoint: NumberEndpoint, payload: Mapping[str, Any]) -> SendOutcome:
        try:
            response = self._http.post(
                endpoint.url(endpoint.phone_number_id, "messages"),
                json=payload,
                headers={"Authorization": f"Bearer {endpoint.access_token}"},
            )
        except EgressRefusedError as refused:
            return SendOutcome("refused", note=str(refused))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            return SendOutcome("unsent", note=f"{type(error).__name__}: {error}")
        except httpx.TransportError as error:
            # The request may have reached the provider before the connection failed.
            return SendOutcome("uncertain", note=f"{type(error).__name__}: {error}")
        if response.status_code >= 400:
            return SendOutcome(
                "rejected", error=parse_error(response), http_status=response.status_code
            )
        try:
            body = response.json()
        except ValueError:
            return SendOutcome(
                "uncertain", http_status=response.status_code, note="answer was not JSON"
            )
        messages = body.get("messages") if isinstance(body, Mapping) else None
        contacts = body.get("contacts") if isinstance(body, Mapping) else None
        wa_id = None
        if isinstance(contacts, list) and contacts and isinstance(contacts[0], Mapping):
            wa_id = contacts[0].get("wa_id")
        if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
            return SendOutcome(
                "accepted",
                message_id=str(messages[0].get("id")),
                wa_id=wa_id,
                http_status=response.status_code,
            )
        if isinstance(body, Mapping) and body.get("success") is True:
            return SendOutcome("accepted", http_status=response.status_code)
        return SendOutcome(
            "uncertain", http_status=response.status_code, note="no message id in the answer"
        )

    def send_message(
        self, endpoint: NumberEndpoint, recipient: str, content: Mapping[str, Any]
    ) -> SendOutcome:
        return self._post_json(endpoint, message_payload(recipient, content))

    def mark_read(
        self, endpoint: NumberEndpoint, message_id: str, *, typing: bool = False
    ) -> SendOutcome:
        return self._post_json(endpoint, read_receipt_payload(message_id, typing=typing))

    def upload_media(
        self, endpoint: NumberEndpoint, data: bytes, *, mime_type: str, filename: str
    ) -> str:
        """Upload a file for sending by id. Raises :class:`MediaError`."""
        response = self._http.post(
            endpoint.url(endpoint.phone_number_id, "media"),
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
            headers={"Authorization": f"Bearer {endpoint.access_token}"},
        )
        if response.status_code >= 400:
            raise MediaError(parse_error(response))
        return str(response.json()["id"])

    def list_templates(
        self, endpoint: NumberEndpoint, business_account_id: str, *, page_limit: int = 50
    ) -> list[dict[str, Any]]:
        """Every template of a business account (``GET /{WABA-ID}/message_templates``),
        page by page. Raises :class:`ProviderRequestError`."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "fields": "id,name,language,status,category,components",
            "limit": 100,
        }
        for _ in range(page_limit):
            response = self._http.get(
                endpoint.url(business_account_id, "message_templates"),
                params=params,
                headers={"Authorization": f"Bearer {endpoint.access_token}"},
            )
            if response.status_code >= 400:
                raise ProviderRequestError(parse_error(response))
            body = response.json()
            found += [t for t in body.get("data") or [] if isinstance(t, dict)]
            after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not (body.get("paging") or {}).get("next"):
                break
            params = {**params, "after": after}
        return found

    def download_media(self, endpoint: NumberEndpoint, media_id: str) -> tuple[bytes, str]:
        """The bytes and MIME type of an inbound media id (two calls: its URL, then the file).

        Raises :class:`MediaError`; transport errors propagate for the caller to retry.
        """
        headers = {"Authorization": f"Bearer {endpoint.access_token}"}
        info = self._http.get(
            endpoint.url(media_id),
            params={"phone_number_id": endpoint.phone_number_id},
            headers=headers,
        )
        if info.status_code >= 400:
            raise MediaError(parse_error(info))
        described = info.json()
        file = self._http.get(str(described["url"]), headers=headers)
        if file.status_code >= 400:
            raise MediaError(parse_error(file))
        mime_type = str(described.get("mime_type") or file.headers.get("content-type") or "")
        return file.content, mime_type


class ProviderRequestError(Exception):
    """The provider refused a request that is not a message (listing templates …)."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(f"{error.code}: {error.title}")
        self.error = error


class MediaError(Exception):
    def __init__(self, error: ProviderError) -> None:
        super().__init__(f"{error.code}: {error.title}")
        self.error = error
