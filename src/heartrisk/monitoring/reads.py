"""What monitoring reads: predictions, recent rows, the champion's reference sample, the synthesizer,
synthetic rows that copy a real one (never listed), and the models that learned from erased rows.

The one report (:mod:`heartrisk.monitoring.snapshot`) reads everything through here, so the images
batch inference logs to MLflow and the live dashboard are drawn from the same rows. Everything is read
from the store and the registry as they are now; nothing here writes to a feature group. The
reference samples are cached under ``<home>/monitoring/reference/``, one file per model version; this
module is the only one that knows that layout (``heartrisk forget`` scrubs it through
:func:`scrub_reference_samples`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES, LABEL
from heartrisk.files import atomic_write
from heartrisk.monitoring.drift import (
    PROBABILITY,
    DriftReport,
    DriftSettings,
    Window,
    drift_report,
    pooled_window,
)
from heartrisk.monitoring.metrics import volume_by_day
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, REAL_SOURCES, open_group

#: Rows of the champion's training data kept as the drift reference (cached per model version).
REFERENCE_ROWS = 20_000


# ------------------------------------------------------------------------------------ predictions
def read_predictions(settings: Settings, model_version: str | None = None,
                     start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """Rows of ``heart_predictions`` (optionally of one model version, in an event-time window)."""
    group = open_group(settings, HEART_PREDICTIONS)
    if not group.exists():
        return pd.DataFrame(columns=HEART_PREDICTIONS.columns)
    table = group.read_arrow(start=start, end=end)
    if model_version is not None:
        table = table.filter(pc.equal(table.column("model_version"), str(model_version)))
    return table.to_pandas()


def scored_ids(settings: Settings, model_version: str, start: datetime | None = None) -> pa.Array:
    """record_ids the given model version has already scored (events from ``start`` on)."""
    group = open_group(settings, HEART_PREDICTIONS)
    if not group.exists():
        return pa.array([], pa.string())
    table = group.read_arrow(start=start, columns=["record_id", "model_version"])
    table = table.filter(pc.equal(table.column("model_version"), str(model_version)))
    return table.column("record_id").combine_chunks()


# ----------------------------------------------------------------------------------- recent rows
def heart_rows(settings: Settings, start: datetime | None, end: datetime | None,
               columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``heart`` with event time in ``[start, end)`` (empty frame if there is no table)."""
    group = open_group(settings, HEART)
    if not group.exists():
        return pd.DataFrame(columns=columns or HEART.columns)
    return group.read(start=start, end=end, columns=columns)


def window_for(settings: Settings, end: datetime, hours: float,
               config: DriftSettings | None = None) -> Window:
    """The recent window of ``heart`` for drift, pooled back until it holds enough rows."""
    config = config or DriftSettings()
    oldest = pd.Timestamp(end) - pd.Timedelta(days=config.max_days)
    times = heart_rows(settings, oldest.to_pydatetime(), end, columns=["event_time"])["event_time"]
    return pooled_window(times, end, hours, config)


def window_rows(settings: Settings, window: Window, model_version: str | None,
                known: Known | None = None) -> pd.DataFrame:
    """Rows of ``heart`` in the window, with the model version's probability where it scored them.

    ``known`` rows and predictions the caller already holds are used instead of reading again.
    """
    if known is not None and known.rows is not None and window.start >= known.rows_from:
        in_window = (known.rows["event_time"] >= window.start) & (known.rows["event_time"] < window.end)
        rows = known.rows.loc[in_window, ["record_id", "event_time", "source", *FEATURE_NAMES,
                                          LABEL.name]]
    else:
        rows = heart_rows(settings, window.start, window.end,
                          columns=["record_id", "event_time", "source", *FEATURE_NAMES, LABEL.name])
    if model_version is None or rows.empty:
        return rows.assign(**{PROBABILITY: np.nan})
    if known is not None and known.predictions is not None:
        scored = known.predictions
    else:
        scored = read_predictions(settings, model_version, window.start, window.end)
    probability = scored.set_index("record_id")["probability"]
    return rows.assign(**{PROBABILITY: rows["record_id"].map(probability).astype(float)})


@dataclass(frozen=True)
class Known:
    """What a caller has already read: ``heart`` rows from ``rows_from`` on, the model's predictions."""

    rows: pd.DataFrame | None = None
    rows_from: datetime | None = None
    predictions: pd.DataFrame | None = None


# ------------------------------------------------------------------------------ reference sample
def reference_sample(settings: Settings, model: Any, rows: int = REFERENCE_ROWS) -> pd.DataFrame:
    """A seeded sample of the data the model was trained on, with the model's probabilities.

    The rows are ``heart`` as of the feature group version the model records (time travel), so the
    reference does not move as new rows arrive. Cached as Parquet under the monitoring folder, one
    file per model version and purge of ``heart``'s history: a registered version never changes, but
    ``heartrisk forget`` (on any machine) purges the history, and every replica then sees a new purge
    time in the shared table and rebuilds its sample without the forgotten row.
    """
    group = open_group(settings, HEART)
    purged = hashlib.sha256(group.purged_at().encode()).hexdigest()[:12]
    path = reference_folder(settings) / f"model-{model.version}-{purged}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    folder = reference_folder(settings)
    older = [*folder.glob(f"model-{model.version}-*.parquet"), folder / f"model-{model.version}.parquet"]
    for stale in older:
        stale.unlink(missing_ok=True)  # built before the last purge: may hold a forgotten row
    columns = ["record_id", "source", *FEATURE_NAMES, LABEL.name]
    version = model.feature_group_version if model.feature_group_version >= 0 else None
    try:
        table = group.read_arrow(version=version, columns=columns)
    except Exception:  # the version was vacuumed away: the rows that existed when it was trained
        table = group.read_arrow(end=model.trained_at, columns=columns)
    if table.num_rows > rows:  # sample before pandas: converting rows we drop costs more than reading
        table = table.take(np.sort(np.random.default_rng(0).choice(table.num_rows, rows, replace=False)))
    frame = table.to_pandas()
    frame[PROBABILITY] = model.predict_proba(frame[list(FEATURE_NAMES)]) if len(frame) else []
    with atomic_write(path) as partial:
        frame.to_parquet(partial, index=False)
    return frame


def scrub_reference_samples(settings: Settings, record_id: str) -> int:
    """Rewrite the cached reference samples without ``record_id`` (``heartrisk forget``); returns how
    many files held it. A sample that is rebuilt later reads the store, which no longer has it."""
    folder = reference_folder(settings)
    cleaned = 0
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        table = pq.read_table(path)
        if "record_id" not in table.column_names:
            continue
        keep = pc.not_equal(table.column("record_id"), record_id)
        if pc.all(keep).as_py() is not False:
            continue
        with atomic_write(path) as partial:
            pq.write_table(table.filter(keep), partial)
        cleaned += 1
    return cleaned


def reference_folder(settings: Settings) -> Path:
    """Where the reference samples are cached: one Parquet file per model version."""
    return settings.monitoring_dir / "reference"


def current_drift(settings: Settings, model: Any, end: datetime, hours: float,
                  config: DriftSettings | None = None,
                  known: Known | None = None) -> tuple[DriftReport, pd.DataFrame]:
    """Drift between the model's reference sample and the recent (pooled) window, and its rows."""
    window = window_for(settings, end, hours, config)
    rows = window_rows(settings, window, model.version, known)
    return drift_report(reference_sample(settings, model), rows, window, config), rows


# --------------------------------------------------------------------------------- data
def heart_volume(settings: Settings, start: datetime | None = None) -> pd.DataFrame:
    """Rows of ``heart`` per UTC day and source (columns event_time, source only)."""
    return volume_by_day(heart_rows(settings, start, None, columns=["event_time", "source"]))


def copies_of_real(settings: Settings, record_ids: pd.Series) -> set[str]:
    """Which of the synthetic ``record_ids`` are exact copies (17 answers and the diagnosis) of a real
    row of ``heart`` (Kaggle or shared): such a row is someone's answers and is never listed.

    Reads the real rows' answers (about 0.3 s for 288k rows) only when there are synthetic ids to
    check."""
    from heartrisk.synth.privacy import COLUMNS, comparable, row_hashes

    wanted = set(record_ids[record_ids.astype(str).str.startswith("synthetic:")])
    heart = open_group(settings, HEART)
    if not wanted or not heart.exists():
        return set()
    synthetic = heart.read(sources=["synthetic"], columns=["record_id", *COLUMNS])
    synthetic = synthetic[synthetic["record_id"].isin(wanted)].reset_index(drop=True)
    if synthetic.empty:
        return set()
    real = comparable(heart.read(sources=list(REAL_SOURCES), columns=list(COLUMNS)))
    copied = np.isin(row_hashes(comparable(synthetic)), row_hashes(real))
    return set(synthetic.loc[copied, "record_id"])


def erased_models(settings: Settings) -> dict[str, Any]:
    """Registered versions that learned from rows `heartrisk forget` erased, and the champions among
    them (`status` and the dashboard show them until none is champion)."""
    from heartrisk.model.registry import versions
    from heartrisk.synth.registry import champion_version, synthesizer_versions
    from heartrisk.tracking import CHAMPION, ERASED_TAG

    classifiers = [row for row in versions(settings) if ERASED_TAG in row["tags"]]
    synthesizers = [row for row in synthesizer_versions(settings) if ERASED_TAG in row["tags"]]
    synth_champion = champion_version(settings)
    report: dict[str, Any] = {
        "classifier_versions": ", ".join(sorted((r["version"] for r in classifiers), key=int)) or "none",
        "synthesizer_versions": ", ".join(r["version"] for r in synthesizers) or "none",
        "champion_classifier": next((r["version"] for r in classifiers if CHAMPION in r["aliases"]), None),
        "champion_synthesizer": next((r["version"] for r in synthesizers if r["version"] == synth_champion),
                                     None),
    }
    report["serving"] = bool(report["champion_classifier"] or report["champion_synthesizer"])
    if report["champion_classifier"]:
        report["note"] = (f"champion classifier v{report['champion_classifier']} learned from erased rows: "
                          "it is replaced at the next scheduled retrain (or `heartrisk train` now)")
    elif report["champion_synthesizer"]:
        report["note"] = (f"champion synthesizer v{report['champion_synthesizer']} learned from erased rows "
                          "and is retired: `heartrisk synth train` fits a new one")
    return report


def synthesizer_quality(settings: Settings) -> dict[str, Any]:
    """The synthesizer in use and the quality it logged (its registry entry; no weights are read)."""
    try:
        from heartrisk.synth.registry import synthesizer_status

        return synthesizer_status(settings)
    except Exception as exc:  # the dashboard shows the rest even if this part cannot be read
        return {"registered": False, "error": f"{type(exc).__name__}: {exc}"}
