"""UTC, the one clock: every time the system stores, compares or records is timezone-aware UTC.

A naive datetime given by a caller (a test, a backfill) is taken to be UTC already, never the
machine's local time, so a run's window does not move with the time zone of the machine it runs on.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive: already UTC). A pandas ``Timestamp`` stays a ``Timestamp``."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def from_millis(milliseconds: float) -> datetime:
    """A time given as milliseconds since the epoch (MLflow's and Delta's), in UTC."""
    return datetime.fromtimestamp(milliseconds / 1000, UTC)


def stamp(reason: str) -> str:
    """``<now, to the second>: <reason>``: how a registry records when and why something happened."""
    return f"{utc_now().isoformat(timespec='seconds')}: {reason}"
