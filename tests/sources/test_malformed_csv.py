"""Ten kinds of malformed file: each gets its own clear message from `ingest` and writes no row."""

from __future__ import annotations

from pathlib import Path

import pytest

from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.sources.kaggle import DatasetError
from heartrisk.store.groups import HEART, open_group
from heartrisk.validation import ValidationError
from support.malformed_csv import HEADER, LINE, MALFORMED


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_file_gets_a_clear_message_and_writes_nothing(settings: Settings, tmp_path: Path,
                                                                kind: str) -> None:
    content, message = MALFORMED[kind]
    path = tmp_path / "heart.csv"
    path.write_bytes(content)
    with pytest.raises((DatasetError, ValidationError), match=message) as caught:
        ingest(settings, path)
    assert str(path) in str(caught.value)
    assert not open_group(settings, HEART).exists()


def test_a_utf8_bom_is_accepted(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "heart.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n{LINE}\n".encode())
    assert ingest(settings, path).inserted == 1
