"""User-written templates (quick replies, message texts) rendered in Jinja's sandbox.

Users write ``{{ contact.first_name }}``; the sandbox keeps them away from Python internals,
and a variable that is not there renders as nothing rather than failing a send — a raw
placeholder is never sent. ``{{ contact.first_name | fallback("friend") }}`` gives the words to
use when a value is missing or blank (Jinja's own ``default`` does not treat "" as missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from tidings.kernel.errors import invalid


def fallback(value: Any, words: str = "") -> Any:
    """The value, or ``words`` when it is missing, None or blank."""
    if (
        isinstance(value, Undefined)
        or value is None
        or (isinstance(value, str) and not value.strip())
    ):
        return words
    return value


_ENVIRONMENT = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)
# HTML bodies (e-mail): every value is escaped, so a contact named "<b>Ann" stays text.
_HTML_ENVIRONMENT = SandboxedEnvironment(undefined=ChainableUndefined, autoescape=True)
for _environment in (_ENVIRONMENT, _HTML_ENVIRONMENT):
    _environment.filters["fallback"] = fallback


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool = False) -> Template:
    return (_HTML_ENVIRONMENT if html else _ENVIRONMENT).from_string(source)


def check_template(source: str, *, field: str) -> str:
    """Raises ``TidingsError`` (422 naming ``field`` and the line) for a template that will not
    compile."""
    try:
        _compiled(source)
    except TemplateSyntaxError as error:
        raise invalid(
            "invalid_template", f"line {error.lineno}: {error.message}", field=field
        ) from None
    return source


def render_template(
    source: str, variables: Mapping[str, Any], *, field: str, html: bool = False
) -> str:
    """Render ``source`` with ``variables`` (escaped for HTML when ``html``). Raises
    ``TidingsError`` (422) when it cannot."""
    check_template(source, field=field)
    try:
        return _compiled(source, html).render(**variables)
    except (SecurityError, OverflowError) as error:
        # The sandbox refuses unsafe calls and oversized ranges; say so instead of failing.
        raise invalid("unsafe_template", str(error), field=field) from None
