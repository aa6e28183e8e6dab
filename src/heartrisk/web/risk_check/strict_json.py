"""JSON bodies read strictly: a key given twice is refused, naming it.

JSON leaves duplicate keys to the parser: Python keeps the last, while a proxy, a log or the client's
own records may keep the first. ``{"consent": false, …, "consent": true}`` would be stored as consent
given, so a body with an answer given twice is refused with 422 rather than read one way here and
another way elsewhere. The check runs inside the parser (``object_pairs_hook``, about 2 µs a body).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads`: the object, or :class:`DuplicateKeyError`."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise DuplicateKeyError(f"the key {twice!r} appears twice")
    return obj


class StrictJSONRequest(Request):
    """A request whose ``json()`` refuses duplicate keys. Errors are raised as ``JSONDecodeError``,
    which FastAPI turns into a 422 for the body, with the one line to show as the error's ``msg``:
    the key given twice, or where the text stops being JSON."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body, object_pairs_hook=unique_keys)
            except DuplicateKeyError as exc:  # the message the client sees is the error's msg
                raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace"), 0) from None
            except json.JSONDecodeError as exc:
                raise json.JSONDecodeError(f"not valid JSON: {exc}", exc.doc, exc.pos) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route that reads its body with :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
