"""What the `heartrisk` command prints: the status tables."""

from __future__ import annotations

import pytest

from heartrisk.config import Settings
from heartrisk.runtime.lock import job_lock
from heartrisk.runtime.status import schedule_status


def test_status_table_shows_each_job_outcome_and_error(settings: Settings) -> None:
    from rich.console import Console

    from heartrisk.cli.render import schedule_table

    with job_lock(settings, "daily") as run:
        run.summary = "100 synthetic rows"
    with pytest.raises(OSError), job_lock(settings, "infer"):
        raise OSError("disk full")
    console = Console(record=True, width=200)
    console.print(*schedule_table(schedule_status(settings)), sep="\n")
    text = console.export_text()
    assert "heartrisk up is not running" in text
    assert "100 synthetic rows" in text and "OSError: disk full" in text
    assert "failed (1 in a row)" in text
