"""Pure rules of broadcasts: their states, when each recipient's message is due, and how a
template's parameters are personalised without ever sending a raw placeholder (A6)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tidings.kernel.errors import invalid

CONTACT_FIELDS = ("name", "first_name", "last_name", "phone", "country")
PARAMETER_LIMIT = 1024  # Meta refuses longer template parameters


class BroadcastStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time
    PLANNING = "planning"  # recipients being decided and queued, chunk by chunk
    SENDING = "sending"  # all queued; the dispatcher is working through them
    FINISHED = "finished"  # nothing of it is waiting any more
    CANCELLED = "cancelled"


ACTIVE = frozenset({BroadcastStatus.SCHEDULED, BroadcastStatus.PLANNING, BroadcastStatus.SENDING})


def send_time(
    *,
    send_at: datetime,
    local_date: date | None,
    local_time: time | None,
    timezone: str,
    now: datetime,
) -> datetime:
    """When one recipient's message is due: the broadcast's instant, or the given local wall
    time in the recipient's own time zone ("14:00 wherever they are"); never in the past."""
    if local_date is None or local_time is None:
        return max(send_at, now)
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    moment = datetime.combine(local_date, local_time, tzinfo=zone).astimezone(UTC)
    return max(moment, now)


def earliest_local(local_date: date, local_time: time) -> datetime:
    """The first instant anywhere on Earth that is ``local_date local_time`` (UTC+14)."""
    return datetime.combine(local_date, local_time, tzinfo=UTC) - timedelta(hours=14)


def check_parameters(components: Any, field_keys: set[str]) -> list[dict[str, Any]]:
    """Template components whose text parameters may name a contact field to fill in:
    ``{"type": "text", "field": "first_name", "fallback": "friend"}``.

    Raises:
        TidingsError: 422 naming the parameter for an unknown field or a missing fallback.
    """
    if components is None:
        return []
    if not isinstance(components, list):
        raise invalid("invalid_components", "a list of components", field="template.components")
    checked = []
    for c_index, component in enumerate(components):
        where = f"template.components[{c_index}]"
        if not isinstance(component, Mapping) or component.get("type") not in (
            "header",
            "body",
            "button",
        ):
            raise invalid("invalid_components", "header, body or button", field=where)
        parameters = component.get("parameters") or []
        if not isinstance(parameters, list):
            raise invalid("invalid_parameters", "a list", field=f"{where}.parameters")
        for p_index, parameter in enumerate(parameters):
            at = f"{where}.parameters[{p_index}]"
            if not isinstance(parameter, Mapping):
                raise invalid("invalid_parameter", "an object", field=at)
            name = parameter.get("field")
            if name is None:
                continue
            if name not in CONTACT_FIELDS and name not in field_keys:
                raise invalid(
                    "unknown_field",
                    f"{name!r} is neither a contact field ({', '.join(CONTACT_FIELDS)}) nor a "
                    "custom field",
                    field=f"{at}.field",
                )
            fallback = parameter.get("fallback")
            if not isinstance(fallback, str) or not fallback.strip():
                raise invalid(
                    "fallback_required",
                    "a field may be empty for some contacts: give the words to use then",
                    field=f"{at}.fallback",
                )
        checked.append(dict(component))
    return checked


def personalise(components: list[dict[str, Any]], contact: Mapping[str, Any]) -> list[Any]:
    """The components for one contact: each field parameter replaced by the contact's value,
    or by its fallback when the contact has none."""
    result = []
    for component in components:
        parameters = []
        for parameter in component.get("parameters") or []:
            name = parameter.get("field")
            if name is None:
                parameters.append(parameter)
                continue
            value = contact.get(name)
            text = str(value).strip() if value not in (None, "") else ""
            parameters.append(
                {"type": "text", "text": (text or str(parameter["fallback"]))[:PARAMETER_LIMIT]}
            )
        result.append({**component, "parameters": parameters} if parameters else component)
    return result
