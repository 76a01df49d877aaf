"""Pure rules of WhatsApp message templates: what a definition must hold, how many parameters
each component takes (``{{1}}`` … ``{{n}}``), and whether a send gives exactly those — checked
before sending, so that a template Meta would refuse (132000 "parameter count mismatch") never
leaves, and the error names the field at fault.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidings.kernel.errors import invalid
from tidings.messaging.domain import LANGUAGE_CODE, TEMPLATE_NAME, Purpose

PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
PARAMETERISED = ("header", "body")


class TemplateCategory(enum.StrEnum):
    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"


class TemplateStatus(enum.StrEnum):
    APPROVED = "approved"
    PENDING = "pending"
    REJECTED = "rejected"
    PAUSED = "paused"
    DISABLED = "disabled"
    LOCAL = "local"  # defined here, not (yet) known to be approved by Meta
    UNKNOWN = "unknown"

    @classmethod
    def from_provider(cls, value: Any) -> TemplateStatus:
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNKNOWN


SENDABLE = frozenset({TemplateStatus.APPROVED, TemplateStatus.LOCAL})


def purpose_of(category: TemplateCategory) -> Purpose:
    """The sending purpose a template's category imposes: a marketing template is a
    promotion whatever the caller says (its consent and weekly cap apply, P4)."""
    return {
        TemplateCategory.MARKETING: Purpose.MARKETING,
        TemplateCategory.UTILITY: Purpose.UTILITY,
        TemplateCategory.AUTHENTICATION: Purpose.AUTHENTICATION,
    }[category]


@dataclass(frozen=True)
class TemplateShape:
    """How many parameters each parameterised component of a template takes."""

    counts: Mapping[str, int]

    @classmethod
    def of(cls, components: Sequence[Mapping[str, Any]]) -> TemplateShape:
        counts: dict[str, int] = {}
        for component in components:
            kind = str(component.get("type", "")).lower()
            if kind not in PARAMETERISED:
                continue
            text = component.get("text")
            numbers = sorted({int(n) for n in PLACEHOLDER.findall(text)}) if text else []
            counts[kind] = len(numbers)
        return cls(counts)


def check_definition(data: Mapping[str, Any]) -> dict[str, Any]:
    """A locally defined template in canonical form.

    Raises:
        TidingsError: 422 naming the field: name, language, category, components (a BODY with
            text is required; placeholders must be ``{{1}}`` … ``{{n}}`` without gaps).
    """
    name = data.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise invalid("invalid_template", "lowercase letters, digits and underscores", field="name")
    language = data.get("language")
    if not isinstance(language, str) or not LANGUAGE_CODE.match(language):
        raise invalid(
            "invalid_language", "a language code such as en, th or zh_TW", field="language"
        )
    try:
        category = TemplateCategory(str(data.get("category", "")).lower())
    except ValueError:
        raise invalid(
            "invalid_category", "marketing, utility or authentication", field="category"
        ) from None
    components = data.get("components")
    if not isinstance(components, list) or not components:
        raise invalid("required", "a list of components with a BODY", field="components")
    checked = []
    for index, component in enumerate(components):
        where = f"components[{index}]"
        if not isinstance(component, Mapping):
            raise invalid("invalid_component", "an object with a type", field=where)
        kind = str(component.get("type", "")).upper()
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise invalid("invalid_component", "HEADER, BODY, FOOTER or BUTTONS", field=where)
        text = component.get("text")
        if kind in ("BODY", "FOOTER") and (not isinstance(text, str) or not text.strip()):
            raise invalid("required", f"a {kind} needs its text", field=f"{where}.text")
        if isinstance(text, str):
            numbers = sorted({int(n) for n in PLACEHOLDER.findall(text)})
            if numbers != list(range(1, len(numbers) + 1)):
                raise invalid(
                    "invalid_placeholders",
                    "placeholders are {{1}}, {{2}} … in order, without gaps",
                    field=f"{where}.text",
                )
        checked.append({**component, "type": kind})
    if not any(c["type"] == "BODY" for c in checked):
        raise invalid("required", "a template has a BODY", field="components")
    return {"name": name, "language": language, "category": category, "components": checked}


def check_send(shape: TemplateShape, status: TemplateStatus, content: Mapping[str, Any]) -> None:
    """Refuse a template message the provider would refuse: not approved, or parameters that
    do not fit its placeholders.

    Raises:
        TidingsError: 422 on ``content.template.name`` or on the component's parameters.
    """
    if status not in SENDABLE:
        raise invalid(
            "template_not_approved",
            f"this template is {status}: only approved templates can be sent",
            field="content.template.name",
        )
    template = content.get("template") or {}
    given: dict[str, int] = {}
    for component in template.get("components") or []:
        kind = str(component.get("type", "")).lower()
        if kind in PARAMETERISED:
            given[kind] = len(component.get("parameters") or [])
    for kind in sorted(set(shape.counts) | set(given)):
        wanted, got = shape.counts.get(kind, 0), given.get(kind, 0)
        if wanted != got:
            raise invalid(
                "parameter_count",
                f"the template's {kind} takes {wanted} parameter(s); {got} given",
                field=f"content.template.components.{kind}.parameters",
            )
