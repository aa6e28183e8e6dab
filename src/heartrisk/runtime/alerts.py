"""Alerts: tell the operator about a failed check or a job that failed all its retries.

A message goes to a webhook (``HEARTRISK_ALERT_WEBHOOK``: a JSON POST, which Slack, Teams, Mattermost
and most incident tools accept) and/or by e-mail (``HEARTRISK_SMTP_*``, sent with the standard
library's ``smtplib``), with a link to the dashboard. Each problem has a key (``check:served_drift``,
``job:infer``); a key that was alerted within ``cooldown_hours`` (default a day) is not sent again, so
one problem sends one alert a day however often the checks run. The record of what was sent,
``<home>/monitoring/alerts.json``, is updated under a file lock, so two processes (``up`` and a
hand-run ``heartrisk check``) never both send the same alert; it is kept per channel, so a channel
that failed is tried again alone.
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.clock import utc_now
from heartrisk.config import Settings, settings_from_env
from heartrisk.files import atomic_write

log = logging.getLogger(__name__)

ALERT_ENV: dict[str, str] = {
    "webhook": "HEARTRISK_ALERT_WEBHOOK",
    "smtp_host": "HEARTRISK_SMTP_HOST",
    "smtp_port": "HEARTRISK_SMTP_PORT",
    "smtp_user": "HEARTRISK_SMTP_USER",
    "smtp_password": "HEARTRISK_SMTP_PASSWORD",
    "smtp_starttls": "HEARTRISK_SMTP_STARTTLS",
    "mail_from": "HEARTRISK_SMTP_FROM",
    "mail_to": "HEARTRISK_SMTP_TO",
    "dashboard_url": "HEARTRISK_DASHBOARD_URL",
    "cooldown_hours": "HEARTRISK_ALERT_COOLDOWN_HOURS",
}


class AlertSettings(BaseModel):
    """Where alerts go. Nothing set: alerts are only logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str | None = Field(None, pattern=r"^https?://", description="URL that receives a JSON POST")
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "heartrisk@localhost"
    mail_to: str | None = Field(None, description="comma-separated recipients")
    dashboard_url: str = "http://127.0.0.1:7860/monitor"
    cooldown_hours: float = Field(24.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AlertSettings:
        return settings_from_env(cls, ALERT_ENV, "alert settings", env, overrides)

    @property
    def mail(self) -> bool:
        return bool(self.smtp_host and self.mail_to)


@dataclass(frozen=True)
class Problem:
    """One thing to tell the operator: its de-duplication key, a title and the details."""

    key: str
    title: str
    detail: str


def message_text(problems: list[Problem], config: AlertSettings) -> str:
    lines = [f"- {p.title}: {p.detail}" for p in problems]
    return "heartrisk needs attention:\n" + "\n".join(lines) + f"\n\nDashboard: {config.dashboard_url}"


def send_webhook(problems: list[Problem], config: AlertSettings) -> None:
    body = {"text": message_text(problems, config), "dashboard": config.dashboard_url,
            "problems": [{"key": p.key, "title": p.title, "detail": p.detail} for p in problems]}
    response = httpx.post(config.webhook or "", json=body, timeout=config.timeout_s)
    response.raise_for_status()


def send_mail(problems: list[Problem], config: AlertSettings) -> None:
    message = EmailMessage()
    message["Subject"] = f"heartrisk: {problems[0].title}" + (
        f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    message["From"] = config.mail_from
    message["To"] = config.mail_to or ""
    message.set_content(message_text(problems, config))
    with smtplib.SMTP(config.smtp_host or "", config.smtp_port, timeout=config.timeout_s) as smtp:
        if config.smtp_starttls:
            smtp.starttls()
        if config.smtp_user:
            smtp.login(config.smtp_user, config.smtp_password or "")
        smtp.send_message(message)


#: A channel's sending function.
Sender = Callable[[list[Problem], AlertSettings], None]


class Alerter:
    """Sends each problem at most once per cooldown, to every configured channel."""

    def __init__(self, settings: Settings, config: AlertSettings | None = None) -> None:
        self.config = config or AlertSettings.from_env()
        self.path = settings.monitoring_dir / "alerts.json"
        self.lock = FileLock(str(settings.locks_dir / "alerts.lock"), timeout=30)
        settings.locks_dir.mkdir(parents=True, exist_ok=True)

    def alert(self, problems: list[Problem], now: datetime | None = None) -> list[Problem]:
        """Send the problems not alerted within the cooldown; returns those every configured channel
        now has (or that were logged, with no channel configured).

        What was sent is recorded per channel (``webhook|<key>``), so a channel that failed is tried
        again on the next run without the others sending the same alert twice."""
        now = now or utc_now()
        with self.lock:
            sent = self._sent()
            channels = self._channels()
            due = {name: [p for p in problems if self._due(sent, name, p.key, now)] for name, _ in channels}
            fresh = [p for p in problems if any(p in waiting for waiting in due.values())]
            if not fresh:
                return []
            log.warning("ALERT: %s", message_text(fresh, self.config))
            failed: set[str] = set()
            for name, send in channels:
                if due[name] and self._deliver(name, send, due[name]):
                    sent.update({f"{name}|{p.key}": now.isoformat() for p in due[name]})
                elif due[name]:
                    failed.update(p.key for p in due[name])
            with atomic_write(self.path) as partial:
                Path(partial).write_text(json.dumps(sent, indent=1, sort_keys=True))
            return [p for p in fresh if p.key not in failed]

    def _channels(self) -> list[tuple[str, Sender | None]]:
        """The configured channels by name; ``log`` alone (the warning above) when none is."""
        channels = [(name, send) for name, enabled, send in
                    (("webhook", self.config.webhook, send_webhook), ("mail", self.config.mail, send_mail))
                    if enabled]
        return channels or [("log", None)]

    def _due(self, sent: dict[str, str], channel: str, key: str, now: datetime) -> bool:
        # A record without a channel (written before records were per channel) counts for all.
        when = sent.get(f"{channel}|{key}") or sent.get(key)
        cooldown = timedelta(hours=self.config.cooldown_hours)
        return when is None or now - datetime.fromisoformat(when) >= cooldown

    def _deliver(self, name: str, send: Sender | None, problems: list[Problem]) -> bool:
        """True when the channel took the message (``log``: the warning was the message)."""
        if send is None:
            return True
        try:
            send(problems, self.config)
        except Exception as exc:  # the next check run tries this channel again
            log.error("could not send the alert by %s: %s", name, exc)
            return False
        return True

    def _sent(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        try:
            return dict(json.loads(self.path.read_text()))
        except (ValueError, TypeError):
            return {}
