"""Helpers shared by the web tests (plain functions; the fixtures live in each test module).

A web test runs the real app under uvicorn on 127.0.0.1 (a free port) against its own copy of the
session's trained home, so submissions it makes never leak into another test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from heartrisk.config import Settings
from heartrisk.store.groups import HEART_USER, open_group

#: Flags for Chromium under Playwright (DESIGN.md, pitfalls).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: One person's answers with three Unknowns (physical_health, race, sleep_time).
ANSWERS: dict[str, Any] = {
    "bmi": 31.5, "smoking": "Yes", "alcohol_drinking": "No", "stroke": "No",
    "physical_health": None, "mental_health": 2.0, "diff_walking": "No", "sex": "Male",
    "age_category": "65-69", "race": None, "diabetic": "No, borderline diabetes",
    "physical_activity": "Yes", "gen_health": "Good", "sleep_time": None, "asthma": "No",
    "kidney_disease": "No", "skin_cancer": "Yes",
}
UNKNOWNS = sorted(k for k, v in ANSWERS.items() if v is None)


def answer(page: Any, name: str, value: Any) -> None:
    """Answer one question in the form the way a person would: type a number, click a choice, pick
    from a list."""
    from heartrisk.features import BY_NAME

    field = page.locator(f"#q-{name}")
    feature = BY_NAME[name]
    if feature.is_numeric:
        field.get_by_role("textbox").fill(f"{value:g}")
    elif len(feature.values) + 1 > 7:  # a dropdown
        field.get_by_role("combobox").click()
        page.get_by_role("option", name=value, exact=True).click()
    else:
        field.get_by_label(value, exact=True).check()



def chromium() -> str:
    """The Chromium to drive: the one `make test` chose (scripts/find-browser puts it in
    HEARTRISK_BROWSER), else a system `chromium` on PATH; a clear failure when there is neither."""
    import pytest

    chosen = os.environ.get("HEARTRISK_BROWSER") or shutil.which("chromium")
    if not chosen or not Path(chosen).exists():
        pytest.fail("no Chromium for the browser tests: run them through `make test` (scripts/find-browser "
                    "finds or installs one) or set HEARTRISK_BROWSER to a Chromium executable")
    return chosen


def keep_docs_image(shot: Path, name: str) -> None:
    """Copy a screenshot into the README's images, only under `make docs-images` (which sets
    HEARTRISK_DOCS_IMAGES): tests never rewrite tracked files."""
    folder = os.environ.get("HEARTRISK_DOCS_IMAGES")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(folder) / name)


def copy_home(source: Settings, dest: Path) -> Settings:
    """A private copy of a trained home, free to write."""
    shutil.copytree(source.home, dest)
    return Settings(home=dest)


def stored_submissions(settings: Settings) -> Any:
    """Every row of heart_user (empty frame if the table was never created)."""
    group = open_group(settings, HEART_USER)
    if not group.exists():
        import pandas as pd

        return pd.DataFrame(columns=HEART_USER.columns)
    return group.read()
