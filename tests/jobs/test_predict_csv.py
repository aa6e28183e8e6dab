"""The eleven kinds of malformed file of support/malformed_csv.py, given to `heartrisk predict --csv`:
each gets its own clear message (exit 2), and no output file, half-written or temporary, is left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heartrisk.cli import app
from heartrisk.config import Settings
from heartrisk.store.groups import HEART, open_group
from support.malformed_csv import MALFORMED

NOT_SCORED = r"none of the 1 rows can be scored \(line 2, column "
#: predict's own words for each kind (HeartDisease is optional for predict, so headers differ).
EXPECTED: dict[str, str] = {
    "wrong encoding": r"not UTF-8 text \(byte \d+: invalid continuation byte\)",
    "wrong delimiter": r"line 1 \(header\): missing column\(s\) BMI, Smoking",
    "quoted newline in a value": NOT_SCORED + r"GenHealth: 'Very\\ngood' is not allowed",
    "huge line": NOT_SCORED + r"Sex: 'FFFF[F]*…\[5,000,000 characters\]' is not allowed",
    "missing header": r"line 1 \(header\): missing column\(s\) BMI",
    "extra columns": r"unexpected column\(s\) 'Weight'",
    "NaN strings": NOT_SCORED + r"BMI: 'NaN' is not a number\)",
    "negative BMI": NOT_SCORED + r"BMI: '-16.6' is out of range: expected a number from 10 to 100\)",
    "binary garbage": r"binary data \(a NUL byte at \d+\), not a CSV text file",
    "empty file": r"the file is empty",
    "fields missing on a line": r"line 3: 15 fields, expected 18",
}


def test_every_kind_has_an_expected_message() -> None:
    assert set(EXPECTED) == set(MALFORMED) and len(EXPECTED) >= 10


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_file_gets_a_clear_message_and_no_output(trained: Settings, tmp_path: Path,
                                                           kind: str) -> None:
    given, out = tmp_path / "in" / "heart.csv", tmp_path / "out" / "scored.csv"
    given.parent.mkdir()
    out.parent.mkdir()
    given.write_bytes(MALFORMED[kind][0])
    version = open_group(trained, HEART).version()
    result = CliRunner().invoke(app, ["predict", "--csv", str(given), "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # rich wraps long lines
    assert re.search(EXPECTED[kind], message), message[:500]
    assert str(given) in message and len(message) < 2_000  # a clear line, not the file echoed back
    assert "Traceback" not in result.output
    assert list(out.parent.iterdir()) == []  # no OUT, no temporary file beside it
    assert open_group(trained, HEART).version() == version
