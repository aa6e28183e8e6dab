"""One clock: every time the system keeps is timezone-aware UTC; a naive time given to it is UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd

from heartrisk.clock import as_utc, from_millis, stamp, utc_now


def test_naive_times_are_utc_and_aware_ones_are_converted() -> None:
    assert as_utc(datetime(2026, 3, 1, 12)) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    paris = timezone(timedelta(hours=1))
    assert as_utc(datetime(2026, 3, 1, 13, tzinfo=paris)) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert as_utc(datetime(2026, 3, 1, 13, tzinfo=paris)).utcoffset() == timedelta(0)
    converted = as_utc(pd.Timestamp("2026-03-01 13:00:00.000000001", tz="Europe/Paris"))
    assert isinstance(converted, pd.Timestamp) and converted.nanosecond == 1 and str(converted.tz) == "UTC"


def test_milliseconds_and_stamps() -> None:
    assert from_millis(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert utc_now().tzinfo is UTC
    when, reason = stamp("promoted: it was better").split(": ", 1)
    assert reason == "promoted: it was better"
    assert abs(datetime.fromisoformat(when) - utc_now()) < timedelta(minutes=1)
