"""A clock a test moves by hand, for code that takes ``clock=time.monotonic`` or ``time.time``."""

from __future__ import annotations


class Clock:
    """Returns ``now`` until the test sets it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
