"""The consent scope (issue 14, item 3): what the form's consent text promises follows the one setting
that lets shared submissions into synthesizer fits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.web.risk_check.form import consent_text


def test_by_default_the_consent_promises_the_model_only(tmp_path: Path) -> None:
    text = consent_text(Settings(home=tmp_path))
    assert "used to check and improve this model." in text
    assert "synthetic" not in text and "generator" not in text


def test_with_a_consent_scope_the_text_names_the_synthesizer(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEARTRISK_SYNTH_SUBMISSIONS_FROM": "2026-03-01T12:00:00+01:00"},
                                 home=tmp_path)
    assert settings.synth_submissions_from == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    text = consent_text(settings)
    assert "check and improve this model" in text and "synthetic" in text and "generator" in text


def test_a_bad_consent_time_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="HEARTRISK_SYNTH_SUBMISSIONS_FROM"):
        Settings.from_env({"HEARTRISK_SYNTH_SUBMISSIONS_FROM": "last tuesday"}, home=tmp_path)
