"""Who is the operator: a live session, or the password given with the request (HTTP Basic).

Used by the dashboard's routes (web/dashboard/routes.py). The rules, each from a finding of issue 12:

* **A valid session is always let in**, lockout or not: a session id is 256 random bits the server
  issued after a correct password, so checking one is not a guess. (Before, every request carrying
  credentials was refused during a lockout, so anyone could lock the logged-in operator out.)
* **Only password guesses count towards the lockout**: a wrong password in the login form or in a
  Basic header. A stale or unknown session cookie is not a guess: it gets the login page, nothing
  more. (Before, stale cookies counted, and so did the refusals during a lockout, so about five
  requests every 15 minutes kept an address locked for ever.)
* **A locked-out source gets its password refused unchecked**, and that refusal is not counted again:
  the lockout ends ``login_window_s`` after the guesses that caused it.
* **The login form must come from this site** (login CSRF): a POST whose ``Sec-Fetch-Site`` says
  ``cross-site``/``same-site`` or whose ``Origin`` is another origin is refused with 403 before the
  password is looked at, so another site can neither plant a session nor burn the lockout. Programs
  that send neither header (curl, scripts) are not browsers and cannot be made to post by a page.
* Sessions are server-side (web/guard/sessions.py): logout deletes them, expiry is the server's.

Sources are told apart by :class:`~heartrisk.web.guard.rate_limits.ClientKeys` (a keyed hash of the client
address, which trusted proxies may set: ``HEARTRISK_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from heartrisk.web.dashboard.page import login_page
from heartrisk.web.guard.auth import COOKIE, REALM, OperatorAuth
from heartrisk.web.guard.rate_limits import ClientKeys
from heartrisk.web.guard.sessions import FailureLog, SessionStore

#: Seconds a wrong password waits before the answer, to slow down guessing.
FAILED_LOGIN_DELAY = 0.5
PRIVATE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin"}
#: ``Sec-Fetch-Site`` values a browser sends for a request made by this site's own pages.
OWN_SITE = frozenset({"same-origin", "none"})


@dataclass(frozen=True)
class Verdict:
    """Whether a request is the operator's; ``locked`` seconds when its password was not checked."""

    allowed: bool
    locked: float = 0.0


ALLOWED = Verdict(True)
DENIED = Verdict(False)


def from_this_site(request: Request) -> bool:
    """The browser says the request comes from this site's own page (or it is not a browser).

    ``Sec-Fetch-Site`` decides when it is there (every current browser sends it, and a page cannot
    forge it). Without it, ``Origin`` must be this site's: a browser sends ``Origin: null`` for a
    same-origin form under ``Referrer-Policy: no-referrer``, so the dashboard's pages use
    ``same-origin`` (:data:`PRIVATE`), which still sends no referrer to another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.lower() in OWN_SITE
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin.lower() == own.lower()


@dataclass
class OperatorAccess:
    """The password check, the sessions and the lockout together (see the module docstring)."""

    auth: OperatorAuth
    sessions: SessionStore
    failures: FailureLog
    keys: ClientKeys
    session_seconds: float
    #: Look, check, count as one step: routes run in worker threads, and concurrent guesses must not
    #: all slip in under the limit before any of them is counted.
    _guess: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def has_session(self, request: Request) -> bool:
        return self.sessions.valid(request.cookies.get(COOKIE, ""))

    def check(self, request: Request) -> Verdict:
        """A request to the dashboard or its API: a session, else the Basic header, else nothing."""
        if self.has_session(request):
            return ALLOWED
        header = request.headers.get("authorization")
        if header is None:
            return DENIED  # a first visit or a stale cookie: not a guess
        key = self.keys(request.scope)
        with self._guess:
            wait = self.failures.retry_after(key)
            if wait:
                return Verdict(False, locked=wait)
            if self.auth.check_basic(header):
                self.failures.clear(key)
                return ALLOWED
            self.failures.record(key)
        return DENIED

    async def login(self, request: Request, password: str) -> Response:
        """The login form's POST: 303 with a new session, or why not (nothing is checked cross-site)."""
        if not from_this_site(request):
            return HTMLResponse(login_page("Log in from this site's own login page."), status_code=403,
                                headers=PRIVATE)
        key = self.keys(request.scope)
        with self._guess:
            wait = self.failures.retry_after(key)
            right = not wait and self.auth.check_password(password)
            if right:
                self.failures.clear(key)
            elif not wait:
                self.failures.record(key)
        if wait:
            return locked_out(wait, html=True)
        if not right:
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            return HTMLResponse(login_page("Wrong password."), status_code=401, headers=PRIVATE)
        response = RedirectResponse("/monitor", status_code=303, headers=PRIVATE)
        response.set_cookie(COOKIE, self.sessions.create(self.session_seconds),
                            max_age=int(self.session_seconds), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    def logout(self, request: Request) -> Response:
        """End the request's session on the server and drop its cookie."""
        if not from_this_site(request):
            return HTMLResponse(login_page("Log out from this site's own page."), status_code=403,
                                headers=PRIVATE)
        self.sessions.revoke(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/monitor/login", status_code=303, headers=PRIVATE)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response


def lockout(wait: float) -> tuple[str, dict[str, str]]:
    """What a password sent while its source is locked out is told, and the headers: 401 with
    ``Retry-After`` (the answer a wrong password gets, so a client needs no new case)."""
    seconds = max(1, int(wait + 0.999))
    detail = (f"too many wrong operator passwords from this client; the password is not checked "
              f"for {seconds} s")
    return detail, {"Retry-After": str(seconds), "WWW-Authenticate": f'Basic realm="{REALM}"'}


def locked_out(wait: float, html: bool) -> Response:
    """:func:`lockout` as a login page (``html``) or a JSON error body."""
    detail, headers = lockout(wait)
    if html:
        return HTMLResponse(login_page(detail.capitalize() + "."), status_code=401,
                            headers={**PRIVATE, "Retry-After": headers["Retry-After"]})
    return JSONResponse({"detail": detail, "errors": []}, status_code=401, headers={**PRIVATE, **headers})
