"""The contacts CSV format: which columns mean what, and how one row is checked (X5).

Pure: takes header names and cell text, returns typed rows or every error of a row with its
column. Reading files and writing to the database live in ``csv_import``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.contacts.domain import (
    STANDARD_FIELDS,
    Channel,
    ConsentPurpose,
    FieldSpec,
    normalize_tag,
    prepare_contact_fields,
)
from tidings.kernel.errors import TidingsError, invalid

COLLECTIONS = ("tags", "lists")
IGNORE = "ignore"
# Columns our own export writes that an import skips without a warning.
EXPORT_ONLY = ("id", "created_at", "updated_at")

ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "full_name", "姓名", "名稱", "ชื่อ", "ชื่อ-นามสกุล"),
    "first_name": ("first name", "first_name", "given name", "名", "ชื่อจริง"),
    "last_name": ("last name", "last_name", "surname", "family name", "姓", "นามสกุล"),
    "phone": (
        "phone",
        "mobile",
        "phone number",
        "phone_number",
        "telephone",
        "whatsapp",
        "tel",
        "電話",
        "手機",
        "手機號碼",
        "電話號碼",
        "เบอร์โทร",
        "โทรศัพท์",
        "เบอร์โทรศัพท์",
    ),
    "email": ("email", "e-mail", "email address", "mail", "電郵", "電子郵件", "อีเมล"),
    "locale": ("locale", "language", "語言", "ภาษา"),
    "timezone": ("timezone", "time zone", "tz", "時區"),
    "country": ("country", "國家", "ประเทศ"),
    "lifecycle_stage": ("lifecycle_stage", "lifecycle stage", "stage"),
    "score": ("score",),
    "lead_source": ("lead_source", "lead source", "source"),
    "do_not_contact": ("do_not_contact", "do not contact"),
    "tags": ("tags", "tag", "labels", "標籤", "แท็ก"),
    "lists": ("lists", "list", "名單", "รายชื่อ"),
}
TAG_SEPARATORS = (";", "|", ",")


@dataclass(frozen=True)
class RowProblem:
    column: str
    value: str
    code: str
    message: str


@dataclass
class ContactRow:
    """One valid row, normalised, ready to be written."""

    line: int
    fields: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    external_ids: dict[str, str] = field(default_factory=dict)
    consents: dict[tuple[str, str], bool] = field(default_factory=dict)

    def identity_keys(self) -> list[tuple[str, str]]:
        keys = [("external_id:" + s, v) for s, v in self.external_ids.items()]
        if self.fields.get("phone"):
            keys.append(("phone", self.fields["phone"]))
        if self.fields.get("email"):
            keys.append(("email", self.fields["email"]))
        return keys


@dataclass(frozen=True)
class ColumnPlan:
    """What each column of a file feeds, decided once from the header."""

    targets: tuple[str, ...]
    headers: tuple[str, ...]
    warnings: tuple[str, ...]


def plan_columns(
    header: Sequence[str], *, explicit: Mapping[str, str], specs: Mapping[str, FieldSpec]
) -> ColumnPlan:
    """Decide the target of every column.

    Targets: a standard field, ``tags``, ``lists``, ``custom_fields.<key>``,
    ``external_ids.<system>``, ``consent.<channel>.<purpose>`` or ``ignore``. ``explicit``
    (``{"Mobile No": "phone"}``) wins over the built-in aliases in English, Chinese and Thai.

    Raises:
        TidingsError: empty or duplicate headers, an unusable explicit target, or no column
            that identifies a contact.
    """
    headers = tuple(h.strip() for h in header)
    if not headers or not any(headers):
        raise invalid("empty_header", "the first line must name the columns", field="line 1")
    seen: set[str] = set()
    for name in headers:
        if name.casefold() in seen:
            raise invalid("duplicate_column", f"column {name!r} appears twice", field="line 1")
        seen.add(name.casefold())
    lookup = {alias.casefold(): target for target, names in ALIASES.items() for alias in names}
    explicit_folded = {k.strip().casefold(): v.strip() for k, v in explicit.items()}
    for column in explicit_folded:
        if column not in seen:
            raise invalid(
                "unknown_column", f"--map names {column!r}, which the file lacks", field="map"
            )
    targets: list[str] = []
    warnings: list[str] = []
    for name in headers:
        folded = name.casefold()
        if folded in explicit_folded:
            targets.append(_check_target(explicit_folded[folded], specs))
        elif folded in lookup:
            targets.append(lookup[folded])
        elif folded in EXPORT_ONLY:
            targets.append(IGNORE)
        else:
            target = _implicit_target(name, specs)
            if target == IGNORE:
                warnings.append(
                    f"column {name!r} ignored: not a field; map it with --map '{name}=FIELD' "
                    "or define a custom field with that key"
                )
            targets.append(target)
    identity = {"phone", "email"}
    if not any(t in identity or t.startswith("external_ids.") for t in targets):
        raise invalid(
            "no_identity_column",
            "the file needs a phone, e-mail or external id column so rows can be matched",
            field="line 1",
        )
    used = [t for t in targets if t != IGNORE]
    duplicates = {t for t in used if used.count(t) > 1}
    if duplicates:
        raise invalid(
            "duplicate_target",
            f"several columns feed {', '.join(sorted(duplicates))}",
            field="line 1",
        )
    return ColumnPlan(tuple(targets), headers, tuple(warnings))


def _implicit_target(name: str, specs: Mapping[str, FieldSpec]) -> str:
    folded = name.strip().casefold()
    if folded in specs:
        return f"custom_fields.{folded}"
    try:
        return _check_target(name.strip(), specs)
    except TidingsError:
        return IGNORE


def _check_target(target: str, specs: Mapping[str, FieldSpec]) -> str:
    if target in STANDARD_FIELDS or target in COLLECTIONS or target == IGNORE:
        return target
    kind, _, rest = target.partition(".")
    if kind == "custom_fields" and rest in specs:
        return target
    if kind == "external_ids" and rest.strip():
        return f"external_ids.{rest.strip().lower()}"
    if kind == "consent":
        channel, _, purpose = rest.partition(".")
        if channel in set(Channel) and purpose in set(ConsentPurpose):
            return target
    raise invalid(
        "unknown_target",
        f"{target!r} is not a field: use a contact field, tags, lists, custom_fields.KEY, "
        "external_ids.SYSTEM, consent.CHANNEL.PURPOSE or ignore",
        field="map",
    )


# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"):
# exported cells that do are prefixed with an apostrophe, which spreadsheets hide and which an
# import takes off again, so that export → import still round-trips exactly.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def guarded_cell(value: str) -> str:
    """A cell as exported: never read as a formula by a spreadsheet."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unguarded_cell(value: str) -> str:
    """The cell's value, without the apostrophe :func:`guarded_cell` put before it."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def parse_row(
    line: int,
    values: Sequence[str],
    plan: ColumnPlan,
    *,
    specs: Mapping[str, FieldSpec],
    region: str,
) -> ContactRow | list[RowProblem]:
    """Check one row; return it normalised, or every problem found in it."""
    if len(values) > len(plan.targets) and any(v.strip() for v in values[len(plan.targets) :]):
        return [
            RowProblem(
                "", "", "extra_cells", f"{len(values)} cells for {len(plan.targets)} columns"
            )
        ]
    row = ContactRow(line=line, fields={})
    problems: list[RowProblem] = []
    raw_fields: dict[str, tuple[str, str]] = {}
    custom: dict[str, tuple[str, str]] = {}
    for index, target in enumerate(plan.targets):
        value = unguarded_cell(values[index].strip()) if index < len(values) else ""
        if target == IGNORE or not value:
            continue
        if "\x00" in value:
            problems.append(
                RowProblem(plan.headers[index], "", "nul_character", "contains a NUL character")
            )
            continue
        column = plan.headers[index]
        if target in STANDARD_FIELDS:
            raw_fields[target] = (column, value)
        elif target == "tags":
            _collect(problems, column, value, lambda v: row.tags.extend(_split_tags(v)))
        elif target == "lists":
            row.lists.extend(n.strip() for n in _split(value) if n.strip())
        elif target.startswith("custom_fields."):
            custom[target.partition(".")[2]] = (column, value)
        elif target.startswith("external_ids."):
            row.external_ids[target.partition(".")[2]] = value
        elif target.startswith("consent."):
            _collect(problems, column, value, lambda v, t=target: _consent(row, t, v))
    for name, (column, value) in raw_fields.items():
        _collect(
            problems,
            column,
            value,
            lambda v, n=name: row.fields.update(
                prepare_contact_fields({n: v}, specs=specs, region=region)
            ),
        )
    if custom:
        prepared: dict[str, Any] = {}
        for key, (column, value) in custom.items():
            _collect(
                problems,
                column,
                value,
                lambda v, k=key: prepared.update(
                    prepare_contact_fields({"custom_fields": {k: v}}, specs=specs, region=region)[
                        "custom_fields"
                    ]
                ),
            )
        row.fields["custom_fields"] = prepared
    if not problems and not row.identity_keys():
        problems.append(
            RowProblem(
                "",
                "",
                "no_identity",
                "a row needs a phone, e-mail or external id to be matched again",
            )
        )
    return problems or row


def _collect(problems: list[RowProblem], column: str, value: str, action: Any) -> None:
    try:
        action(value)
    except TidingsError as error:
        problems.append(RowProblem(column, value, error.code, error.message))


def _split(value: str) -> list[str]:
    for separator in TAG_SEPARATORS:
        if separator in value:
            return value.split(separator)
    return [value]


def _split_tags(value: str) -> list[str]:
    return [normalize_tag(t) for t in _split(value) if t.strip()]


def _consent(row: ContactRow, target: str, value: str) -> None:
    _, channel, purpose = target.split(".")
    folded = value.strip().lower()
    if folded in {"true", "yes", "y", "1", "opted_in", "opt-in", "in"}:
        row.consents[(channel, purpose)] = True
    elif folded in {"false", "no", "n", "0", "opted_out", "opt-out", "out"}:
        row.consents[(channel, purpose)] = False
    else:
        raise invalid("invalid_value", f"{value!r}: use yes/no (opted in or out)", field=target)
