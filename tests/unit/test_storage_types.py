"""UTC datetimes on SQLite: the stored text matches SQLAlchemy's own format, and round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from tidings.db.base import UTCDateTime

DIALECT = sqlite.dialect()
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_sqlite_text_is_sqlalchemys_format_and_reads_back_equal(moment: datetime) -> None:
    ours = UTCDateTime().bind_processor(DIALECT)
    reader = UTCDateTime().result_processor(DIALECT, None)
    theirs = sqlite.DATETIME().bind_processor(DIALECT)
    assert ours is not None and reader is not None and theirs is not None
    text = ours(moment)
    assert text == theirs(moment.replace(tzinfo=None))
    assert reader(text) == moment


def test_other_time_zones_are_stored_as_utc_and_naive_values_refused() -> None:
    bind = UTCDateTime().bind_processor(DIALECT)
    assert bind is not None
    taipei = datetime(2026, 11, 22, 14, 0, tzinfo=timezone(timedelta(hours=8)))
    assert bind(taipei) == "2026-11-22 06:00:00.000000"
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 11, 22, 6, 0))
