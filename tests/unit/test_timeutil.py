"""The range of times ch_time formats, which meter_values' readings are checked against
before ClickHouse makes their times from milliseconds (projections/sessions.py)."""

from __future__ import annotations

import pytest

from hub.domain.timeutil import CH_TIME_END_MS, CH_TIME_FIRST_MS, ch_time


def test_ch_time_formats_exactly_the_range_it_declares() -> None:
    assert ch_time(CH_TIME_FIRST_MS) == "0001-01-01 00:00:00.000"
    assert ch_time(CH_TIME_END_MS - 1) == "9999-12-31 23:59:59.999"
    for beyond in (CH_TIME_FIRST_MS - 1, CH_TIME_END_MS):
        with pytest.raises(OverflowError):
            ch_time(beyond)
