"""The HubSpot CRM v3 API, as the connector uses it (X2): contacts searched by last
modification, upserted and updated in batches of 100, notes created with their association to
a contact, and notes searched with the contacts they belong to (associations v4). The shapes
follow HubSpot's API reference (developers.hubspot.com/docs/api-reference, CRM objects:
contacts and notes).

The connector interface is ``CrmClient``: Zoho and Salesforce clients implement the same
calls, and the sync logic (``crm_sync.connector``) does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

BASE_URL = "https://api.hubapi.com"
BATCH = 100  # HubSpot's limit for batch calls
PAGE = 100  # search pages (HubSpot allows up to 200)
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
NOTE_TO_CONTACT = 202  # HubSpot-defined association type: note → contact
CONTACT_PROPERTIES_ALWAYS = ("email", "firstname", "lastname", "phone", "lastmodifieddate")


class CrmError(Exception):
    """A call failed; ``transient`` says whether trying later may help (X3)."""

    def __init__(
        self, message: str, *, status: int | None, transient: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.transient, self.retry_after = status, transient, retry_after


@dataclass(frozen=True)
class RemoteRecord:
    id: str
    properties: dict[str, Any]
    updated_at: str  # ISO 8601 from the CRM


class CrmClient(Protocol):
    def changed_contacts(self, since_ms: int, properties: Sequence[str]) -> list[RemoteRecord]: ...
    def upsert_contacts(self, inputs: Sequence[dict[str, Any]]) -> list[RemoteRecord]: ...
    def update_contacts(self, inputs: Sequence[dict[str, Any]]) -> list[RemoteRecord]: ...
    def create_notes(self, notes: Sequence[dict[str, Any]]) -> list[str]: ...
    def changed_notes(self, since_ms: int) -> list[RemoteRecord]: ...
    def note_contacts(self, note_ids: Sequence[str]) -> dict[str, list[str]]: ...


class HubSpotClient:
    """One private-app token, one connection pool."""

    def __init__(self, token: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(
            base_url=BASE_URL,
            timeout=TIMEOUT,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._http.post(path, json=body)
        except httpx.HTTPError as error:
            raise CrmError(f"HubSpot unreachable: {error}", status=None, transient=True) from None
        if answer.status_code in (200, 201, 207):
            found: dict[str, Any] = answer.json()
            return found
        try:
            detail = answer.json().get("message") or answer.text[:300]
        except ValueError:
            detail = answer.text[:300]
        transient = answer.status_code == 429 or answer.status_code >= 500
        retry_after = answer.headers.get("Retry-After")
        raise CrmError(
            f"HubSpot answered {answer.status_code}: {detail}",
            status=answer.status_code,
            transient=transient,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    def changed_contacts(self, since_ms: int, properties: Sequence[str]) -> list[RemoteRecord]:
        """Contacts modified at or after ``since_ms``, oldest first, every page."""
        wanted = sorted({*properties, *CONTACT_PROPERTIES_ALWAYS})
        return self._changed_since("contacts", "lastmodifieddate", since_ms, wanted)

    def upsert_contacts(self, inputs: Sequence[dict[str, Any]]) -> list[RemoteRecord]:
        """``inputs``: ``{"idProperty": "email", "id": …, "properties": {…}}`` each."""
        return self._batched("/crm/v3/objects/contacts/batch/upsert", inputs)

    def update_contacts(self, inputs: Sequence[dict[str, Any]]) -> list[RemoteRecord]:
        """``inputs``: ``{"id": <HubSpot id>, "properties": {…}}`` each."""
        return self._batched("/crm/v3/objects/contacts/batch/update", inputs)

    def create_notes(self, notes: Sequence[dict[str, Any]]) -> list[str]:
        """``notes``: ``{"contact_id": <HubSpot id>, "at": datetime, "body": text}`` each."""
        inputs = [
            {
                "properties": {
                    "hs_timestamp": _iso(note["at"]),
                    "hs_note_body": note["body"],
                },
                "associations": [
                    {
                        "to": {"id": str(note["contact_id"])},
                        "types": [
                            {
                                "associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": NOTE_TO_CONTACT,
                            }
                        ],
                    }
                ],
            }
            for note in notes
        ]
        return [r.id for r in self._batched("/crm/v3/objects/notes/batch/create", inputs)]

    def changed_notes(self, since_ms: int) -> list[RemoteRecord]:
        """Notes modified at or after ``since_ms``, oldest first, every page."""
        properties = ["hs_note_body", "hs_timestamp", "hs_lastmodifieddate"]
        return self._changed_since("notes", "hs_lastmodifieddate", since_ms, properties)

    def _changed_since(
        self, objects: str, modified: str, since_ms: int, properties: Sequence[str]
    ) -> list[RemoteRecord]:
        """CRM search of ``objects`` whose ``modified`` property is at or after ``since_ms``,
        oldest first, following every page."""
        newer = {"propertyName": modified, "operator": "GTE", "value": str(since_ms)}
        found: list[RemoteRecord] = []
        after: str | None = None
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": [newer]}],
                "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                "properties": list(properties),
                "limit": PAGE,
            }
            if after is not None:
                body["after"] = after
            page = self._post(f"/crm/v3/objects/{objects}/search", body)
            found.extend(_records(page.get("results", [])))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found

    def note_contacts(self, note_ids: Sequence[str]) -> dict[str, list[str]]:
        """The contacts each note is associated with (associations v4, batch read)."""
        found: dict[str, list[str]] = {}
        for start in range(0, len(note_ids), BATCH):
            chunk = [{"id": str(n)} for n in note_ids[start : start + BATCH]]
            answer = self._post("/crm/v4/associations/notes/contacts/batch/read", {"inputs": chunk})
            for result in answer.get("results", []):
                note = str((result.get("from") or {}).get("id"))
                found[note] = [str(t["toObjectId"]) for t in result.get("to", [])]
        return found

    def _batched(self, path: str, inputs: Sequence[dict[str, Any]]) -> list[RemoteRecord]:
        found: list[RemoteRecord] = []
        for start in range(0, len(inputs), BATCH):
            answer = self._post(path, {"inputs": list(inputs[start : start + BATCH])})
            errors = answer.get("errors") or []
            if errors:
                first = errors[0]
                raise CrmError(
                    f"HubSpot refused {answer.get('numErrors', len(errors))} of the batch: "
                    f"{first.get('message', first)}",
                    status=207,
                    transient=False,
                )
            found.extend(_records(answer.get("results", [])))
        return found


def _records(results: Sequence[dict[str, Any]]) -> list[RemoteRecord]:
    return [
        RemoteRecord(
            id=str(r["id"]),
            properties=dict(r.get("properties") or {}),
            updated_at=str(
                r.get("updatedAt") or (r.get("properties") or {}).get("lastmodifieddate") or ""
            ),
        )
        for r in results
    ]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
