"""Helpers the benchmark scripts share: how a result file is written (the machine, the load, the command)
and how a one-row call is timed."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def save_results(path: Path, name: str, load_before: tuple[float, ...], load_after: tuple[float, ...],
                 **figures: Any) -> None:
    """``bench/results/<name>.json``: the benchmark, its command, the machine and load, the figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": name, "command": f"python bench/{name}.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "load_average_before_after": [load_before[0], load_after[0]], **figures}, indent=2) + "\n")


def median_us(call: Any, items: list[Any]) -> float:
    """Median CPU time of ``call(item)`` over the items, in microseconds (``time.thread_time``: what
    the calling thread spent, not time waiting for other processes)."""
    times = []
    for item in items:
        started = time.thread_time()
        call(item)
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1e6
