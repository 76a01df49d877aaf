"""Partial updates (``PATCH``): a field left out stays as it is; ``null`` clears a field only
where clearing means something.

A body of ``{"timezone": null}`` is neither "leave the time zone" nor a time zone: it is
refused (422, naming the field) unless the field is listed in ``clearable``, instead of
reaching a service that expects a value.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clearable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_clearable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.clearable:
            raise ValueError("may be left out, but cannot be null")
        return value
