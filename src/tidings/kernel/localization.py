"""Checks of regions, time zones and locales, shared by workspaces and contacts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from babel import Locale, UnknownLocaleError

from tidings.kernel.errors import invalid


def check_region(region: str, *, field: str = "default_region") -> str:
    """Return the upper-cased region if phone numbers can be parsed for it.

    Raises:
        TidingsError: 422 naming ``field``.
    """
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise invalid("invalid_region", f"{region!r} is not an ISO 3166 region code", field=field)
    return code


def check_timezone(name: str, *, field: str = "timezone") -> str:
    """Return ``name`` if it is an IANA time zone.

    Raises:
        TidingsError: 422 naming ``field``.
    """
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(
            "invalid_timezone", f"{name!r} is not an IANA time zone", field=field
        ) from None
    return name.strip()


def check_locale(tag: str, *, field: str = "locale") -> str:
    """Return ``tag`` in BCP 47 form (``zh-Hant-TW``) if babel knows the locale.

    Raises:
        TidingsError: 422 naming ``field``.
    """
    try:
        locale = Locale.parse(tag.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise invalid("invalid_locale", f"{tag!r} is not a known locale", field=field) from None
    parts = [locale.language, locale.script, locale.territory]
    return "-".join(p for p in parts if p)


def natural_ago(then: datetime, now: datetime, locale: str | None) -> str:
    """How long ago, in words of the locale: "3 days ago", "3 วันที่ผ่านมา", "3 天前" (A6).
    An unknown or missing locale speaks English."""
    from babel.dates import format_timedelta

    try:
        chosen = Locale.parse((locale or "en").strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        chosen = Locale.parse("en")
    return str(format_timedelta(then - now, add_direction=True, locale=chosen))
