"""Several processes doing one thing at the same moment: the races the scale-out work closes.

Each worker is a fresh interpreter (``spawn``: delta-rs' runtime does not survive a fork) that waits
for a shared start time, so their reads and commits overlap. A worker's answer, or its error's type
and text, comes back through a queue: a race is judged on what every side saw.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any


def _worker(func: Callable[..., Any], args: tuple[Any, ...], start: float, out: Any, index: int) -> None:
    while time.time() < start:
        time.sleep(0.001)
    try:
        out.put((index, "ok", func(*args)))
    except Exception as exc:
        out.put((index, "error", f"{type(exc).__name__}: {exc}"))


def at_once(func: Callable[..., Any], calls: Sequence[tuple[Any, ...]], lead_s: float = 6.0,
            timeout_s: float = 300.0) -> list[tuple[str, Any]]:
    """Run ``func(*args)`` for each args in ``calls``, each in its own process, starting together
    ``lead_s`` seconds from now (time to import); returns (``"ok"``, result) or (``"error"``, text)
    per call, in order. ``func`` must be importable (a module-level function)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start = time.time() + lead_s
    workers = [context.Process(target=_worker, args=(func, args, start, out, i))
               for i, args in enumerate(calls)]
    for worker in workers:
        worker.start()
    results: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(results) < len(workers) and time.monotonic() < deadline:
        try:
            index, kind, value = out.get(timeout=1.0)
        except Exception:
            if all(not w.is_alive() for w in workers) and out.empty():
                break
            continue
        results[index] = (kind, value)
    for worker in workers:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
    return [results.get(i, ("error", f"worker {i} died (exit code {w.exitcode})"))
            for i, w in enumerate(workers)]
