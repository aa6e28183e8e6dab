"""Schedules: intervals, crontab lines (Sunday as cron counts it) and off; bad ones named by their setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from heartrisk.config import ConfigError
from heartrisk.runtime.schedule import Schedule, ScheduleSettings


def test_schedules_parse_intervals_cron_and_off() -> None:
    assert Schedule.parse("every 30s").interval_s == 30
    assert Schedule.parse("every 5m").interval_s == 300
    assert Schedule.parse("every 2h").interval_s == 7200
    assert not Schedule.parse("off").enabled
    # cron counts weekdays from Sunday = 0; APScheduler 3 from Monday = 0: the names settle it.
    sunday = Schedule.parse("0 4 * * 0")
    monday_noon = datetime(2024, 1, 1, 12, tzinfo=UTC)  # a Monday
    assert sunday.next_after(monday_noon, UTC) == datetime(2024, 1, 7, 4, tzinfo=UTC)
    assert Schedule.parse("0 4 * * 7").next_after(monday_noon, UTC) == datetime(2024, 1, 7, 4, tzinfo=UTC)
    assert Schedule.parse("0 2 * * *").next_after(monday_noon, UTC) == datetime(2024, 1, 2, 2, tzinfo=UTC)
    assert Schedule.parse("30 2 * * 1-5").next_after(monday_noon, UTC) == datetime(2024, 1, 2, 2, 30,
                                                                                  tzinfo=UTC)


@pytest.mark.parametrize("text", ["every", "every -3s", "0 2 * *", "61 2 * * *", "0 4 * * 9",
                                  "daily at noon"])
def test_bad_schedules_are_refused_with_the_setting_named(text: str) -> None:
    with pytest.raises(ConfigError, match="HEARTRISK_DAILY_SCHEDULE"):
        ScheduleSettings.from_env({"HEARTRISK_DAILY_SCHEDULE": text})


def test_schedule_settings_from_env_and_overrides() -> None:
    env = {"HEARTRISK_INFER_SCHEDULE": "every 10s", "HEARTRISK_JOB_RETRIES": "5"}
    chosen = ScheduleSettings.from_env(env, daily="every 20s")
    assert (chosen.daily, chosen.infer, chosen.retries) == ("every 20s", "every 10s", 5)
    with pytest.raises(ConfigError, match="HEARTRISK_TIMEZONE"):
        ScheduleSettings.from_env({"HEARTRISK_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="HEARTRISK_JOB_BACKOFF"):
        ScheduleSettings.from_env({"HEARTRISK_JOB_BACKOFF": "0"})
