"""Errors a user can fix, under one base class, so the CLI turns every one of them into one line.

An error whose message tells the user what to change (a bad file, a wrong setting, a model that does
not exist yet) derives from :class:`UserError` *and* from the built-in class it always had
(``ValueError``, ``RuntimeError``), so code that catches those keeps working. The `heartrisk` command
prints a ``UserError`` as ``error: <message>`` and exits with code 2; anything else is a bug and keeps
its traceback. Each error class lives with the concern that raises it (``DatasetError`` in
``sources/kaggle.py``, ``NoModelError`` in ``model/registry.py``, ...).
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


def first_line(exc: BaseException) -> str:
    """An error's first line of text (its type's name when it has none): what a one-line message quotes
    of an error from a library, whose text may run over many lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
