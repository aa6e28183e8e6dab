"""The history of check runs: ``<home>/monitoring/checks.jsonl``, one JSON line per run, newest last.

Written by :mod:`heartrisk.runtime.check` (``heartrisk check`` and the check after each scheduled
batch inference), read by the monitoring report so the dashboard shows pass/fail over time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from heartrisk.config import Settings
from heartrisk.files import atomic_write

HISTORY_FILE = "checks.jsonl"
#: Runs kept in the history file (a run after each scheduled infer: about a year of them).
HISTORY_RUNS = 400


def history_path(settings: Settings) -> Path:
    return settings.monitoring_dir / HISTORY_FILE


def save_run(settings: Settings, run: Any) -> None:
    """Append the run to the history (the last :data:`HISTORY_RUNS` are kept), atomically."""
    path = history_path(settings)
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [*lines, json.dumps(run.to_dict())][-HISTORY_RUNS:]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as partial:
        Path(partial).write_text("\n".join(lines) + "\n")


def load_history(settings: Settings, runs: int = 30) -> list[dict[str, Any]]:
    """The latest ``runs`` check runs, newest last."""
    path = history_path(settings)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[-runs:] if line.strip()]
