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


@pytest.mark.parametrize("groups", [
    {"error": "StoreError: reading heart_v1: files were missing"},  # the whole section failed
    {"heart_v1": {"exists": True, "uri": "/store/heart_v1",
                  "error": "reading heart_v1: files were missing"},
     "heart_user_v1": {"exists": False, "uri": "/store/heart_user_v1"}},  # one group failed
], ids=["section", "group"])
def test_store_table_shows_an_unreadable_table_as_a_line(groups: dict) -> None:
    """`status` crashed with AttributeError on the section's {"error": ...} (a table that lost a file)."""
    from rich.console import Console

    from heartrisk.cli.render import store_table

    console = Console(record=True, width=200)
    console.print(store_table(groups))
    text = console.export_text()
    assert "cannot be read:" in text and "reading heart_v1: files were missing" in text
    assert ("not created" in text) == ("heart_user_v1" in groups)
