"""A local HubSpot, built from the request and response shapes of HubSpot's CRM v3 API
reference (contacts search, batch upsert and update; notes batch create with associations),
served through ``httpx.MockTransport``. It checks what it is sent as HubSpot does — the token,
the batch limit of 100, the fields each input needs, the association type — and answers
with HubSpot's shapes, including 207 batch errors, 401 and 429 with Retry-After."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

TOKEN = "pat-na1-00000000-1111-2222-3333-444444444444"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class FakeHubSpot:
    now: Callable[[], datetime]
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # status codes to answer next, in turn
    failing: dict[str, list[int]] = field(default_factory=dict)  # the same, for one path
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(501))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_contact(self, **properties: str) -> str:
        contact_id = str(next(self._ids))
        self._write(contact_id, properties)
        return contact_id

    def edit_contact(self, contact_id: str, **properties: str) -> None:
        self._write(contact_id, properties)

    def _write(self, contact_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        stamp = _iso(self.now())
        found = self.contacts.setdefault(
            contact_id, {"id": contact_id, "properties": {}, "createdAt": stamp, "archived": False}
        )
        found["properties"].update(properties)
        found["properties"]["hs_object_id"] = contact_id
        found["properties"]["lastmodifieddate"] = stamp
        found["updatedAt"] = stamp
        return found

    def add_note(self, contact_id: str, body: str) -> str:
        """A note someone writes in HubSpot."""
        note_id = str(next(self._ids))
        stamp = _iso(self.now())
        self.notes.append(
            {
                "id": note_id,
                "contact": contact_id,
                "hs_timestamp": stamp,
                "hs_note_body": body,
                "hs_lastmodifieddate": stamp,
            }
        )
        return note_id

    def _search_notes(self, body: dict[str, Any]) -> httpx.Response:
        try:
            [group] = body["filterGroups"]
            [condition] = group["filters"]
            assert condition["propertyName"] == "hs_lastmodifieddate"
            since = int(condition["value"])
            limit = int(body.get("limit", 10))
            assert 1 <= limit <= 200
        except (KeyError, ValueError, AssertionError, TypeError):
            return _error(400, "Invalid search request", "VALIDATION_ERROR")
        matching = [n for n in self.notes if _ms(n["hs_lastmodifieddate"]) >= since]
        start = int(body.get("after") or 0)
        answer: dict[str, Any] = {
            "total": len(matching),
            "results": [_note_view(n) for n in matching[start : start + limit]],
        }
        if start + limit < len(matching):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return httpx.Response(200, json=answer)

    def _note_contacts(self, body: dict[str, Any]) -> httpx.Response:
        inputs = self._inputs(body)
        if isinstance(inputs, httpx.Response):
            return inputs
        by_id = {n["id"]: n for n in self.notes}
        results = [
            {
                "from": {"id": item["id"]},
                "to": [
                    {
                        "toObjectId": int(by_id[item["id"]]["contact"]),
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": 202, "label": None}
                        ],
                    }
                ],
            }
            for item in inputs
            if item.get("id") in by_id
        ]
        return httpx.Response(207 if len(results) < len(inputs) else 200, json=_batch(results))

    # --- the API --------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        if request.method != "POST" or request.headers.get("content-type") != "application/json":
            return _error(415, "Expected a JSON POST", "VALIDATION_ERROR")
        body = orjson.loads(request.content)
        self.calls.append((request.url.path, body))
        queue = next(
            (
                codes
                for end, codes in self.failing.items()
                if codes and request.url.path.endswith(end)
            ),
            self.failures,
        )
        if queue:
            status = queue.pop(0)
            response = _error(
                status, "Simulated failure", "RATE_LIMITS" if status == 429 else "ERROR"
            )
            if status == 429:
                response.headers["Retry-After"] = "10"
            return response
        routes = {
            "/crm/v3/objects/contacts/search": self._search,
            "/crm/v3/objects/contacts/batch/upsert": self._upsert,
            "/crm/v3/objects/contacts/batch/update": self._update,
            "/crm/v3/objects/notes/batch/create": self._notes,
            "/crm/v3/objects/notes/search": self._search_notes,
            "/crm/v4/associations/notes/contacts/batch/read": self._note_contacts,
        }
        route = routes.get(request.url.path)
        if route is None:
            return _error(404, f"No route for {request.url.path}", "OBJECT_NOT_FOUND")
        return route(body)

    def _inputs(self, body: dict[str, Any]) -> list[dict[str, Any]] | httpx.Response:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "inputs must be a non-empty list", "VALIDATION_ERROR")
        if len(inputs) > 100:
            return _error(400, "Batch input must not exceed 100 items", "VALIDATION_ERROR")
        return inputs

    def _search(self, body: dict[str, Any]) -> httpx.Response:
        try:
            [group] = body["filterGroups"]
            [condition] = group["filters"]
            assert condition["propertyName"] == "lastmodifieddate"
            assert condition["operator"] == "GTE"
            since = int(condition["value"])
            limit = int(body.get("limit", 10))
            assert 1 <= limit <= 200
            assert isinstance(body.get("properties"), list)
        except (KeyError, ValueError, AssertionError, TypeError):
            return _error(400, "Invalid search request", "VALIDATION_ERROR")
        matching = sorted(
            (
                c
                for c in self.contacts.values()
                if _ms(c["properties"]["lastmodifieddate"]) >= since
            ),
            key=lambda c: (c["properties"]["lastmodifieddate"], c["id"]),
        )
        start = int(body.get("after") or 0)
        page = matching[start : start + limit]
        wanted = set(body["properties"])
        answer: dict[str, Any] = {
            "total": len(matching),
            "results": [
                {**c, "properties": {k: v for k, v in c["properties"].items() if k in wanted}}
                for c in page
            ],
        }
        if start + limit < len(matching):
            answer["paging"] = {"next": {"after": str(start + limit), "link": "…"}}
        return httpx.Response(200, json=answer)

    def _upsert(self, body: dict[str, Any]) -> httpx.Response:
        inputs = self._inputs(body)
        if isinstance(inputs, httpx.Response):
            return inputs
        results = []
        for item in inputs:
            if (
                item.get("idProperty") != "email"
                or not item.get("id")
                or not isinstance(item.get("properties"), dict)
            ):
                return _error(
                    400, "Each input needs idProperty, id and properties", "VALIDATION_ERROR"
                )
            existing = next(
                (c for c in self.contacts.values() if c["properties"].get("email") == item["id"]),
                None,
            )
            contact_id = existing["id"] if existing else str(next(self._ids))
            written = self._write(contact_id, {**item["properties"], "email": item["id"]})
            results.append({**written, "new": existing is None})
        return httpx.Response(200, json=_batch(results))

    def _update(self, body: dict[str, Any]) -> httpx.Response:
        inputs = self._inputs(body)
        if isinstance(inputs, httpx.Response):
            return inputs
        results, errors = [], []
        for item in inputs:
            if str(item.get("id")) not in self.contacts:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": f"Object {item.get('id')} not found",
                    }
                )
                continue
            results.append(self._write(str(item["id"]), dict(item.get("properties") or {})))
        if errors:
            return httpx.Response(
                207, json={**_batch(results), "errors": errors, "numErrors": len(errors)}
            )
        return httpx.Response(200, json=_batch(results))

    def _notes(self, body: dict[str, Any]) -> httpx.Response:
        inputs = self._inputs(body)
        if isinstance(inputs, httpx.Response):
            return inputs
        results = []
        for item in inputs:
            properties = item.get("properties") or {}
            try:
                datetime.fromisoformat(str(properties["hs_timestamp"]).replace("Z", "+00:00"))
                assert properties["hs_note_body"]
                [association] = item["associations"]
                [kind] = association["types"]
                assert kind == {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}
                target = str(association["to"]["id"])
                assert target in self.contacts
            except (KeyError, ValueError, AssertionError, TypeError):
                return _error(400, "Invalid note input", "VALIDATION_ERROR")
            note_id = str(next(self._ids))
            stamp = _iso(self.now())
            self.notes.append(
                {"id": note_id, "contact": target, **properties, "hs_lastmodifieddate": stamp}
            )
            results.append(
                {
                    "id": note_id,
                    "properties": properties,
                    "createdAt": _iso(self.now()),
                    "updatedAt": _iso(self.now()),
                    "archived": False,
                }
            )
        return httpx.Response(201, json=_batch(results))


def _note_view(note: dict[str, Any]) -> dict[str, Any]:
    properties = {k: v for k, v in note.items() if k.startswith("hs_")}
    return {
        "id": note["id"],
        "properties": properties,
        "createdAt": note["hs_lastmodifieddate"],
        "updatedAt": note["hs_lastmodifieddate"],
        "archived": False,
    }


def _batch(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "COMPLETE", "results": results, "startedAt": "…", "completedAt": "…"}


def _error(status: int, message: str, category: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "status": "error",
            "message": message,
            "category": category,
            "correlationId": "c0ffee",
        },
    )
