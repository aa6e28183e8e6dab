"""Malformed Kaggle-format files, one per kind, with the message ``ingest`` gives for each (the
ingest and ``predict --csv`` tests both use them)."""

from __future__ import annotations

import random

from heartrisk.features import KAGGLE_COLUMNS

HEADER = ",".join(KAGGLE_COLUMNS)
LINE = "No,16.6,Yes,No,No,3.0,30.0,No,Female,55-59,White,Yes,Yes,Very good,5.0,Yes,No,Yes"
LATIN1_LINE = LINE.replace("White", "Wh\u00efte")
QUOTED_NEWLINE_LINE = LINE.replace("Very good", '"Very\ngood"')

MALFORMED: dict[str, tuple[bytes, str]] = {
    "wrong encoding": (
        f"{HEADER}\n{LINE}\n{LATIN1_LINE}\n".encode("latin-1"),
        r"not UTF-8 text"),
    "wrong delimiter": (
        f"{HEADER}\n{LINE}\n".replace(",", ";").encode(),
        r"line 1 \(header\): missing column\(s\) HeartDisease, BMI"),
    "quoted newline in a value": (
        f"{HEADER}\n{QUOTED_NEWLINE_LINE}\n".encode(),
        r"column GenHealth: 'Very\\ngood' is not allowed"),
    "huge line": (
        f"{HEADER}\n{LINE.replace('Female', 'F' * 5_000_000)}\n".encode(),
        r"column Sex: 'FFFF.*' is not allowed"),
    "missing header": (
        f"{LINE}\n{LINE}\n".encode(),
        r"line 1 \(header\): missing column\(s\) HeartDisease"),
    "extra columns": (
        f"{HEADER},Weight\n{LINE},80\n".encode(),
        r"unexpected column\(s\) 'Weight'"),
    "NaN strings": (
        f"{HEADER}\n{LINE.replace('16.6', 'NaN')}\n".encode(),
        r"line 2, column BMI: 'NaN' is not a number"),
    "negative BMI": (
        f"{HEADER}\n{LINE.replace('16.6', '-16.6')}\n".encode(),
        r"line 2, column BMI: '-16.6' is out of range: expected a number from 10 to 100"),
    "binary garbage": (
        random.Random(0).randbytes(4096) + b"\x00\xff\xfe",
        r"binary data \(a NUL byte at \d+\), not a CSV text file"),
    "empty file": (b"", r"the file is empty"),
    "fields missing on a line": (
        f"{HEADER}\n{LINE}\n{LINE.rsplit(',', 3)[0]}\n".encode(),
        r"line 3: 15 fields, expected 18"),
}
