"""When the jobs of `heartrisk up` run: schedules (``every 30s``, crontab lines, ``off``) and their settings.

The daily feature pipeline, batch inference and the weekly retrain run on these schedules inside
`heartrisk up` (:mod:`heartrisk.runtime.scheduler`); they are also CLI commands that cron, Kubernetes or
Airflow can run on the same crontab lines instead (docs/running.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tzlocal import get_localzone

from heartrisk.config import settings_from_env

OFF = ("off", "never", "none", "")

#: Environment variables of the schedule settings (docs/running.md lists the same).
SCHEDULE_ENV_VARS: dict[str, str] = {
    "daily": "HEARTRISK_DAILY_SCHEDULE",
    "infer": "HEARTRISK_INFER_SCHEDULE",
    "retrain": "HEARTRISK_RETRAIN_SCHEDULE",
    "retries": "HEARTRISK_JOB_RETRIES",
    "backoff_s": "HEARTRISK_JOB_BACKOFF",
    "timezone": "HEARTRISK_TIMEZONE",
}


_EVERY = re.compile(r"^every\s+(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?$", re.IGNORECASE)
_UNIT_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Schedule:
    """When a job runs: ``"every 30s"`` (also ``m``, ``h``, ``d``), a crontab line such as
    ``"0 2 * * *"`` (minute hour day month weekday, weekday 0 or 7 = Sunday as in cron), or ``off``."""

    text: str
    interval_s: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        spec = " ".join(text.strip().split())
        if spec.lower() in OFF:
            return cls(text="off")
        if match := _EVERY.match(spec):
            seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
            if seconds <= 0:
                raise ValueError(f"{text!r}: the interval must be more than 0 seconds")
            return cls(text=spec, interval_s=seconds)
        fields = spec.split(" ")
        if len(fields) != 5:
            raise ValueError(f"{text!r}: expected 'every 30s|5m|2h|1d', a crontab line of 5 fields "
                             "such as '0 2 * * *', or 'off'")
        # APScheduler 3 counts weekdays from Monday = 0; cron from Sunday = 0 (and 7). Use names.
        fields[4] = re.sub(r"(?<![/\d])\d+",
                           lambda m: _CRON_DAYS[int(m.group()) % 7] if int(m.group()) <= 7 else m.group(),
                           fields[4])
        cron = " ".join(fields)
        try:
            CronTrigger.from_crontab(cron, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        return cls(text=spec, cron=cron)

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None or self.cron is not None

    def trigger(self, tz: tzinfo) -> BaseTrigger | None:
        """The APScheduler trigger; intervals count from now, cron lines follow the clock."""
        if self.interval_s is not None:
            return IntervalTrigger(seconds=self.interval_s, timezone=tz)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=tz)
        return None

    def next_after(self, moment: datetime, tz: tzinfo) -> datetime | None:
        """The first time this schedule fires strictly after ``moment``."""
        if self.interval_s is not None:
            return moment + timedelta(seconds=self.interval_s)
        if self.cron is not None:
            trigger = CronTrigger.from_crontab(self.cron, timezone=tz)
            return trigger.get_next_fire_time(None, moment.astimezone(tz) + timedelta(microseconds=1))
        return None


class ScheduleSettings(BaseModel):
    """When the jobs of `heartrisk up` run and how failures are retried. ``extra="forbid"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily: str = Field(default="0 2 * * *", description="feature pipeline (default 02:00 every day)")
    infer: str = Field(default="30 2 * * *", description="batch inference (default 02:30 every day)")
    retrain: str = Field(default="0 4 * * sun",
                         description="retrain through the champion gate (default Sunday 04:00)")
    retries: int = Field(default=3, ge=0, description="retries of a failed run before the next regular one")
    backoff_s: float = Field(default=60.0, gt=0,
                             description="seconds before the first retry; doubles with each retry")
    timezone: str | None = Field(default=None, description="time zone of the cron lines (default: local)")

    @field_validator("daily", "infer", "retrain")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return Schedule.parse(value).text

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a time zone name such as 'UTC' or "
                                 "'Europe/Paris'") from None
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ScheduleSettings:
        """Schedule settings from ``HEARTRISK_*`` variables, CLI options as overrides."""
        return settings_from_env(cls, SCHEDULE_ENV_VARS, "schedule", env, overrides)

    def schedule(self, job: str) -> Schedule:
        return Schedule.parse(getattr(self, job))

    def tz(self) -> tzinfo:
        return ZoneInfo(self.timezone) if self.timezone else get_localzone()
