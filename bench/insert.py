"""Benchmark: the conflict-checked MERGE insert (issue 15) against the old read-keys-then-append.

The old insert read every stored key, dropped the batch's stored keys and appended the rest: atomic
only under a file lock (one machine). The new one is a Delta MERGE on the key, insert when not matched,
which delta-rs refuses to commit if another writer added data meanwhile. Both are timed here on the
same tables in the same run, alternating, median of several batches each:

* ``heart`` with the whole dev file (287,693 rows), a batch of 100 new rows (a daily run's size);
* ``heart_user`` after 300 one-row commits (a day of a busy form, before compaction), batches of 1 and
  of 50 rows (a serve replica's group commit).

    .venv/bin/python bench/insert.py [--csv PATH] [--repeat 7]

Saves bench/results/insert.json with the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.sources.submissions import submission_row
from heartrisk.store.groups import HEART, HEART_USER, open_group
from heartrisk.store.table import FeatureGroup, _key_array

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
ANSWERS = {"bmi": 27.0, "smoking": "No", "sex": "Female", "age_category": "55-59", "gen_health": "Good"}


def old_insert(group: FeatureGroup, batch: pa.Table) -> int:
    """The insert before issue 15 (read the stored keys, append the rest), as it was."""
    with group._lock():
        dt = group.table()
        stored = _key_array(dt.to_pyarrow_dataset(schema=group.spec.schema).to_table(
            columns=list(group.spec.key)), group.spec.key)
        new = batch.filter(pc.invert(pc.is_in(_key_array(batch, group.spec.key), value_set=stored)))
        if new.num_rows:
            write_deltalake(dt, new, mode="append")
        return new.num_rows


def heart_batch(group: FeatureGroup, rows: int, tag: str) -> pa.Table:
    sample = group.read_arrow().slice(0, rows)
    ids = pa.array([f"synthetic:bench-{tag}:{i:06d}" for i in range(rows)])
    return sample.set_column(sample.schema.get_field_index("record_id"), "record_id", ids)


def user_batch(settings: Settings, rows: int) -> pa.Table:
    import pandas as pd

    frame = pd.concat([submission_row(settings, ANSWERS, True)] * rows, ignore_index=True)
    frame["submission_id"] = [str(uuid.uuid4()) for _ in range(rows)]
    return pa.Table.from_pandas(frame[HEART_USER.columns], schema=HEART_USER.schema, preserve_index=False)


def timed(insert: Callable[[FeatureGroup, pa.Table], object], group: FeatureGroup,
          batch: pa.Table) -> float:
    start = time.perf_counter()
    insert(group, batch)
    return time.perf_counter() - start


def compare(name: str, repeat: int, group: FeatureGroup,
            make_batch: Callable[[str], pa.Table]) -> dict[str, float]:
    """Alternate old and new ``repeat`` times each on fresh batches (built outside the timing);
    medians in milliseconds."""
    olds, news = [], []
    for i in range(repeat):
        olds.append(timed(old_insert, group, make_batch(f"old{i}")))
        news.append(timed(FeatureGroup.insert_arrow, group, make_batch(f"new{i}")))
    row = {"baseline_ms": 1000 * statistics.median(olds), "merge_ms": 1000 * statistics.median(news)}
    row["ratio"] = row["merge_ms"] / row["baseline_ms"]
    print(f"{name:<48} baseline (read keys + append) {row['baseline_ms']:8.1f} ms   "
          f"MERGE {row['merge_ms']:8.1f} ms   x{row['ratio']:.2f}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, object] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        ingest(settings, args.csv)
        heart = open_group(settings, HEART)
        results["heart, 100 new rows into 287,693"] = compare(
            "heart: 100 new rows into 287,693", args.repeat, heart,
            lambda tag: heart_batch(heart, 100, tag))
        user = open_group(settings, HEART_USER)
        for _ in range(300):
            user.insert_arrow(user_batch(settings, 1))
        results["heart_user files"] = len(user.table().file_uris())
        for rows in (1, 50):
            results[f"heart_user, {rows} row(s) after 300 one-row commits"] = compare(
                f"heart_user: {rows} row(s), 300+ small files", args.repeat * 3, user,
                lambda _tag, n=rows: user_batch(settings, n))
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    out = ROOT / "bench" / "results" / "insert.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
