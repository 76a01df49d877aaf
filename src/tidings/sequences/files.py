"""The sequence file (S6): a documented, versioned YAML or JSON document holding a sequence and
the templates it uses, so a funnel can be cloned into another workspace.

Reading reports each problem with its place in the file: the path (``steps[2].duration``)
and, for YAML, the line. Writing produces the canonical form: export → import → export gives
the same bytes. Pure: text in, text out.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tidings.kernel.errors import TidingsError, invalid
from tidings.sequences.definition import (
    FORMAT,
    SequenceDefinition,
    dump_definition,
    parse_definition,
)

MAX_FILE_BYTES = 2_000_000


def read_sequence_file(text: str) -> SequenceDefinition:
    """Parse and check a sequence file (YAML or JSON, which is YAML too).

    Raises:
        TidingsError: 422 whose field is the path in the file and whose message starts with
            ``line N:`` when the line is known.
    """
    if len(text.encode()) > MAX_FILE_BYTES:
        raise invalid("file_too_large", "a sequence file is at most 2 MB", field="file")
    try:
        data = yaml.safe_load(text)
        lines = _lines_of(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise invalid("unreadable_file", f"{where}{problem}", field="file") from None
    if not isinstance(data, dict):
        raise invalid("invalid_sequence", "line 1: the file must hold one mapping", field="file")
    if data.get("format", FORMAT) != FORMAT:
        raise invalid(
            "unknown_format",
            f"line {lines.get('format', 1)}: this version reads {FORMAT!r}, "
            f"not {data.get('format')!r}",
            field="format",
        )
    try:
        return parse_definition(data)
    except TidingsError as error:
        line = _line_for(error.field or "", lines)
        if line is not None:
            error.message = f"line {line}: {error.message}"
        raise


def write_sequence_file(definition: SequenceDefinition, *, as_json: bool = False) -> str:
    """The canonical file of ``definition``."""
    data = _ordered(dump_definition(definition))
    if as_json:
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    return str(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100))


_TOP = (
    "format",
    "name",
    "description",
    "settings",
    "triggers",
    "steps",
    "templates",
    "email_templates",
)
_STEP_FIRST = ("id", "type", "title")


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    """Keys in reading order: the format first, and each step's id and type first."""
    ordered = {key: data[key] for key in _TOP if key in data}
    ordered |= {key: value for key, value in data.items() if key not in ordered}
    steps = []
    for step in ordered.get("steps", []):
        first = {key: step[key] for key in _STEP_FIRST if key in step}
        middle = {k: v for k, v in step.items() if k not in first and k != "next"}
        steps.append(first | middle | ({"next": step["next"]} if "next" in step else {}))
    if steps:
        ordered["steps"] = steps
    return ordered


def _lines_of(node: Any, path: str = "") -> dict[str, int]:
    """Each path of the document (``steps[2].duration``) → its 1-based line."""
    found: dict[str, int] = {}
    if node is None:
        return found
    found[path or "sequence"] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            found[child] = key.start_mark.line + 1
            found |= {k: v for k, v in _lines_of(value, child).items() if k != child}
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found |= _lines_of(item, f"{path}[{index}]")
    return found


def _line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of ``path`` or of its nearest enclosing part that the file has."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("sequence")
