"""The operator password that guards the monitoring dashboard and its API.

The password is ``HEARTRISK_ADMIN_PASSWORD`` when set. Otherwise one is generated the first time a
server starts, stored at ``<home>/admin_password`` with mode 0600 and printed once to stderr; later
starts read it back and print nothing. Programs send it with HTTP Basic (user ``admin``); a browser
logs in through a form and gets a server-side session (web/guard/sessions.py; the lockout and the rules of
who is let in: web/guard/operator_access.py). Every comparison is constant-time (:func:`hmac.compare_digest`).

The session cookie used to be ``expiry.HMAC(key, expiry)`` with the key derived from the password
alone: anyone who knew the password could mint one valid until 2100, and logging out could not end
one (issue 12). Sessions are now ids the server issued and can delete.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from heartrisk.config import ConfigError, Settings

PASSWORD_ENV = "HEARTRISK_ADMIN_PASSWORD"
PASSWORD_FILE = "admin_password"
USERNAME = "admin"
COOKIE = "heartrisk_operator"
REALM = "heartrisk monitoring"


def password_path(settings: Settings) -> Path:
    return settings.home / PASSWORD_FILE


def operator_password(settings: Settings, env: Mapping[str, str] | None = None,
                      announce: Callable[[str], None] | None = None) -> tuple[str, str]:
    """The password and where it came from (``"env"`` or the file), generating it on first start."""
    env = os.environ if env is None else env
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV], "env"
    path = password_path(settings)
    settings.ensure_home()
    generated = secrets.token_urlsafe(18)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_password(path), str(path)
    with os.fdopen(handle, "w") as file:
        file.write(generated + "\n")
    (announce or _to_stderr)(
        f"operator password for /monitor (user {USERNAME}): {generated}\n"
        f"  stored in {path} (mode 0600); set {PASSWORD_ENV} to choose your own"
    )
    return generated, str(path)


def _read_password(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # someone loosened it; the password is only the operator's to read
    password = path.read_text().strip()
    if not password:
        raise ConfigError(f"{path} is empty: delete it to have a new operator password generated, "
                          f"or set {PASSWORD_ENV}")
    return password


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class OperatorAuth:
    """Checks a password or an HTTP Basic header against the operator password."""

    password: str
    source: str

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: object) -> OperatorAuth:
        password, source = operator_password(settings, **kwargs)  # type: ignore[arg-type]
        return cls(password=password, source=source)

    def check_password(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.password.encode())

    def check_basic(self, header: str | None) -> bool:
        """``Authorization: Basic base64(admin:password)``."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, given = decoded.partition(":")
        # Both compared, always, so the time taken says nothing about which one was wrong.
        user_ok = hmac.compare_digest(user.encode(), USERNAME.encode())
        return self.check_password(given) & user_ok
