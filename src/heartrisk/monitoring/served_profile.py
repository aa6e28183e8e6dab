"""The serving profile: what the web server was asked, counted in memory and written as aggregates.

The people who use the form and the API are not stored (by design), so the only view of them is this
profile, in the spirit of whylogs: per UTC day and model version, how often each answer was given to
each question (numbers in bins of width 1, Unknown counted apart), and a histogram of the predicted
risk (bins of 0.01) split by the decision, with the sum of the risks in each bin (what the estimated
performance, :mod:`heartrisk.monitoring.served`, needs). Nothing is per person: one request only
adds 1 to 18 counters and its risk to one sum, and the day is the finest time kept.

Cost per request: :meth:`ServingProfile.record` is a few dictionary increments under one lock
(a few microseconds), so it can sit in the request path of an API aiming at 1,000 requests a second.
A background thread writes the counts gathered since its last write every ``flush_seconds``
(default 15 minutes, so "at least hourly") and once more when the server stops (the app's lifespan).
A SIGKILL loses the counts since the last write: at most ``flush_seconds`` of requests.

Several ``serve`` replicas may share one store: each write is an *append* of the increments since
the replica's previous write, keyed by a ``flush_id`` made of the replica name, a random id of this
process's start and a sequence number, so replicas never touch each other's rows (Delta appends from
several writers land exactly once, see DESIGN.md) and a write retried after an error is not counted
twice (the insert skips keys already stored). Readers sum the rows (:func:`read_profile`).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from heartrisk.config import Settings
from heartrisk.features import FEATURES, Feature
from heartrisk.store.groups import SERVING_PROFILE, open_group

log = logging.getLogger(__name__)

#: The question name of the predicted-risk histogram (the features' rows carry the feature's name).
RISK = "risk"
UNKNOWN = "Unknown"
#: Counts below this are shown as "<10" wherever the profile is displayed.
SMALL_COUNT = 10
#: Default seconds between two writes of the profile (the most a SIGKILL can lose).
FLUSH_SECONDS = 900.0

#: Per (day, model version): counts of (question, answer) (the risk's answer is (bin, flagged)), and
#: the sum of the risks per (bin, flagged).
Cells = tuple[Counter, dict[tuple[str, bool], float]]


def number_bin(feature: Feature, value: float) -> str:
    """A number's bin: its floor within the feature's range (bins of width 1, labelled by the edge)."""
    low = math.floor(feature.low if feature.low is not None else value)
    high = math.floor(feature.high if feature.high is not None else value)
    return str(min(max(math.floor(value), low), high))


def risk_bin(probability: float) -> str:
    """The risk's bin of width 0.01, labelled by its lower edge ("0.17")."""
    return f"{min(max(math.floor(probability * 100), 0), 99) / 100:.2f}"


def answer_bin(feature: Feature, value: Any) -> str:
    """What a profile counts for one answer: Unknown, the allowed answer, or the number's bin."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    return number_bin(feature, float(value)) if feature.is_numeric else str(value)


def _number_labels(feature: Feature) -> dict[int, str]:
    return {i: str(i) for i in range(math.floor(feature.low or 0), math.floor(feature.high or 0) + 1)}


#: (name, numeric, labels of the number bins) per question, in the spec's order: computed once.
_QUESTIONS: tuple[tuple[str, bool, dict[int, str]], ...] = tuple(
    (f.name, f.is_numeric, _number_labels(f) if f.is_numeric else {}) for f in FEATURES)


def _bin(numeric: bool, labels: dict[int, str], value: Any) -> str:
    """:func:`answer_bin` for the request path (labels precomputed; the spec's range was checked)."""
    if value is None or value != value:  # None or NaN
        return UNKNOWN
    if not numeric:
        return value
    label = labels.get(math.floor(value))
    return label if label is not None else str(min(max(math.floor(value), min(labels)), max(labels)))


def bin_value(feature: Feature, answer: str) -> float | str | None:
    """A profile bin back as a value the drift measures can compare: the bin's middle for a number
    that is not whole (BMI, sleep), the value itself for whole days, None for Unknown."""
    if answer == UNKNOWN:
        return None
    if not feature.is_numeric:
        return answer
    return float(answer) + (0.0 if feature.whole else 0.5)


def shown_count(count: int) -> int | str:
    """A count as the page and the API show it: below :data:`SMALL_COUNT` as "<10"."""
    return f"<{SMALL_COUNT}" if count < SMALL_COUNT else int(count)


def replica_from_env(env: Mapping[str, str] | None = None) -> str:
    """A replica's name: ``HEARTRISK_REPLICA``, else the machine's name (never a person's)."""
    env = os.environ if env is None else env
    return env.get("HEARTRISK_REPLICA") or socket.gethostname() or "replica"


class ServingProfile:
    """Counts of what one server process was asked, written to ``serving_profile`` in the background."""

    def __init__(self, settings: Settings, replica: str | None = None,
                 flush_seconds: float = FLUSH_SECONDS,
                 today: Callable[[], date] | None = None) -> None:
        self.group = open_group(settings, SERVING_PROFILE)
        self.replica = replica or replica_from_env()
        self.flush_seconds = flush_seconds
        self._today = today or (lambda: datetime.now(UTC).date())
        self._boot = uuid.uuid4().hex[:12]
        self._sequence = 0
        self._cells: dict[tuple[date, str], Cells] = {}
        self._pending: tuple[str, pd.DataFrame] | None = None  # a write that failed, retried as is
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the request path
    def record(self, answers: Mapping[str, Any], probability: float, flagged: bool,
               model_version: str) -> None:
        """Count one answered request: each question's answer and the risk's bin (a few µs).

        The answers are binned before the lock is taken; under it, one C-level ``Counter.update``
        and one sum."""
        day = self._today()
        keys = [(name, _bin(numeric, labels, answers.get(name))) for name, numeric, labels in _QUESTIONS]
        risk = (risk_bin(probability), bool(flagged))
        with self._lock:
            counts, sums = self._cells.setdefault((day, model_version), (Counter(), {}))
            counts.update(keys)
            counts[(RISK, risk)] += 1
            sums[risk] = sums.get(risk, 0.0) + probability

    # ------------------------------------------------------------------ writing
    def flush(self) -> int:
        """Write the counts gathered since the last write (one append); returns the rows written.

        A write that fails keeps its rows and flush id and is tried again first next time, so an
        error delays counts but never loses or doubles them.
        """
        with self._write_lock:
            written = 0
            if self._pending is not None:
                written += self._write(*self._pending)
            with self._lock:
                cells, self._cells = self._cells, {}
            if cells:
                self._sequence += 1
                flush_id = f"{self.replica}:{self._boot}:{self._sequence:06d}"
                written += self._write(flush_id, self._frame(flush_id, cells))
            return written

    def _write(self, flush_id: str, frame: pd.DataFrame) -> int:
        self._pending = (flush_id, frame)
        result = self.group.insert(frame)
        self._pending = None
        return result.inserted

    def _frame(self, flush_id: str, cells: dict[tuple[date, str], Cells]) -> pd.DataFrame:
        rows = []
        for (day, version), (counts, sums) in cells.items():
            common = {"day": day, "replica": self.replica, "flush_id": flush_id, "model_version": version}
            for (question, answer), count in counts.items():
                if question == RISK:
                    (answer, flagged), total = answer, sums[answer]
                else:
                    flagged, total = False, 0.0
                rows.append({**common, "question": question, "answer": answer, "flagged": flagged,
                             "count": int(count), "probability_sum": float(total)})
        return pd.DataFrame(rows, columns=SERVING_PROFILE.columns)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> None:
        """Start the background writer (every ``flush_seconds``; 0 writes only at stop)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="serving-profile", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds if self.flush_seconds > 0 else None):
            self._flush_logged()

    def stop(self) -> None:
        """Stop the writer and write what is left (the server has stopped taking requests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # kept in memory (pending) and tried again at the next write
            log.exception("could not write the serving profile; it will be tried again")


# ---------------------------------------------------------------------------------- reading
def read_profile(settings: Settings, start: date | None = None, end: date | None = None,
                 model_version: str | None = None) -> pd.DataFrame:
    """The profile summed over replicas and writes: one row per (day, model version, question,
    answer, flagged) with ``count`` and ``probability_sum``; days in ``[start, end)`` if given."""
    columns = ["day", "model_version", "question", "answer", "flagged", "count", "probability_sum"]
    group = open_group(settings, SERVING_PROFILE)
    if not group.exists():
        return pd.DataFrame(columns=columns)
    frame = group.read(columns=columns)
    frame["day"] = pd.to_datetime(frame["day"])
    if start is not None:
        frame = frame[frame["day"] >= pd.Timestamp(start)]
    if end is not None:
        frame = frame[frame["day"] < pd.Timestamp(end)]
    if model_version is not None:
        frame = frame[frame["model_version"] == str(model_version)]
    if frame.empty:
        return frame.reset_index(drop=True)
    return (frame.groupby(columns[:5], as_index=False, sort=True)[["count", "probability_sum"]].sum())


def requests_by_day(profile: pd.DataFrame) -> pd.Series:
    """Requests answered per day (each request adds exactly one row of the risk histogram)."""
    risk = profile[profile["question"] == RISK]
    return risk.groupby("day")["count"].sum().astype(int)
