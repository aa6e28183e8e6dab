"""The job record, jobs.json: replaced atomically, so a reader never sees half of it."""

from __future__ import annotations

import os

from heartrisk.config import Settings
from heartrisk.runtime.state import JobState


def test_state_file_is_replaced_atomically(settings: Settings) -> None:
    state = JobState(settings)
    state.update_job("daily", last_outcome="ok")
    leftovers = [p for p in settings.home.iterdir() if p.name.startswith(".jobs")]
    assert leftovers == []
    assert os.stat(settings.home / "jobs.json").st_size > 0
