"""`heartrisk predict --csv IN --out OUT`: bad rows reported by line, good rows scored, OUT atomic."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, KAGGLE_COLUMNS
from heartrisk.model import registry


def write_rows(sample_csv: Path, path: Path, edits: dict[int, dict[str, str]], n: int = 6,
               drop_label: bool = False) -> None:
    with open(sample_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    for i, changes in edits.items():
        rows[i].update(changes)
    columns = [c for c in rows[0] if not (drop_label and c == "HeartDisease")]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_bad_rows_are_reported_by_line_and_good_rows_scored(trained: Settings, sample_csv: Path,
                                                            tmp_path: Path) -> None:
    given, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_rows(sample_csv, given, {
        1: {"BMI": "abc"},                               # file line 3: bad
        2: {"Smoking": "", "AgeCategory": ""},           # Unknowns: scored
        3: {"HeartDisease": ""},                         # unknown outcome: scored
        4: {"Sex": "Robot"},                             # file line 6: bad
    })
    result = CliRunner().invoke(app, ["predict", "--csv", str(given), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "scored 4 of 6 rows" in result.output
    assert "line 3, column BMI: 'abc' is not a number" in result.output
    assert "line 6, column Sex: 'Robot'" in result.output
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(scored.columns) == ["line", *KAGGLE_COLUMNS, "probability", "prediction"]
    assert scored["line"].tolist() == ["2", "4", "5", "7"]
    assert scored.loc[1, "Smoking"] == "" and scored.loc[1, "AgeCategory"] == ""
    assert scored.loc[2, "HeartDisease"] == ""

    model = registry.champion_model(trained)
    typed = pd.read_csv(out, keep_default_na=True)
    expected = model.predict_proba(typed.rename(columns=dict(zip(KAGGLE_COLUMNS[1:], FEATURE_NAMES,
                                                                 strict=True))).replace({float("nan"): None}))
    assert typed["probability"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert (typed["prediction"] == "Yes").tolist() == list(expected >= model.threshold)


def test_the_label_column_is_optional(trained: Settings, sample_csv: Path, tmp_path: Path) -> None:
    given, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_rows(sample_csv, given, {}, n=3, drop_label=True)
    result = CliRunner().invoke(app, ["predict", "--csv", str(given), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 3 and "HeartDisease" not in scored.columns


def test_nothing_to_score_writes_nothing(trained: Settings, sample_csv: Path, tmp_path: Path) -> None:
    given, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_rows(sample_csv, given, {0: {"BMI": "-1"}, 1: {"SleepTime": "99"}}, n=2)
    result = CliRunner().invoke(app, ["predict", "--csv", str(given), "--out", str(out)])
    assert result.exit_code == 2
    assert "none of the 2 rows can be scored" in result.output and "line 2, column BMI" in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["in.csv"]


def test_without_a_champion_predict_says_to_train(settings: Settings, sample_csv: Path,
                                                  tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", "--csv", str(sample_csv), "--out",
                                      str(tmp_path / "out.csv")])
    assert result.exit_code == 2 and "heartrisk train" in result.output
