"""The fitted synthesizer: a CTGAN and the facts about the real data that make its rows valid.

:meth:`Synthesizer.sample` gives exactly the rows asked for, every one repaired or rejected by the spec
(:mod:`heartrisk.synth.repair`), at a set positive rate; :meth:`Synthesizer.save` and
:meth:`Synthesizer.load` keep it as two files (the CTGAN's weights and a JSON of the facts), refusing
anything damaged or made for another feature spec. Fitting is in :mod:`heartrisk.synth.fit`, measuring
in :mod:`heartrisk.synth.quality`.

No training row is saved: CTGAN's fitted object keeps, for every answer of every categorical column,
the indices of the training rows that gave it (``_data_sampler._rid_by_cat_cols``: it picks real rows
for the discriminator while fitting), which rebuilds every fitted row's 13 answers and diagnosis.
:func:`strip_training_state` keeps only what sampling needs (:data:`SAMPLING_STATE`); saving writes the
stripped model, loading strips versions saved before (their files still hold the rows until
`heartrisk synth scrub` rewrites them). What else the model holds is aggregate: the per-column
Gaussian mixtures and one-hot categories of its transformer, category frequencies, the weights.

torch and ctgan are imported inside the methods that need them: importing this module (for its
errors and types) stays cheap.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from heartrisk.errors import UserError
from heartrisk.features import FEATURE_NAMES, LABEL, NUMERIC_FEATURES
from heartrisk.files import sha256
from heartrisk.synth.repair import repair

#: Bumped when the saved layout changes; a loader refuses layouts it does not know.
FORMAT_VERSION = 1
MODEL_FILE = "ctgan.pt"
INFO_FILE = "synthesizer.json"
#: Sampling draws rows in rounds until each label has its count (repair may reject rows, one label
#: may be rare), up to this many draws per row wanted (plus 10,000), in batches of at most
#: MAX_BATCH_ROWS.
MAX_DRAWS_PER_ROW = 200
MAX_BATCH_ROWS = 100_000
#: The most rows one call may ask for; more is almost certainly a typo (and memory).
MAX_SAMPLE_ROWS = 1_000_000
#: What the generated label column holds (CTGAN's discrete columns are strings here).
LABEL_TEXT = {True: "Yes", False: "No"}
#: What ctgan 0.12's DataSampler needs to sample (``sample_original_condvec`` and, for a conditioned
#: sample, ``generate_cond_from_condition_column_info``): category frequencies and offsets, no rows.
#: Anything else it holds is dropped before saving, so per-row state a later ctgan adds is dropped too.
SAMPLING_STATE = frozenset({
    "_data_length", "_discrete_column_matrix_st", "_discrete_column_cond_st", "_discrete_column_n_category",
    "_discrete_column_category_prob", "_n_discrete_columns", "_n_categories",
})


class SynthError(UserError, ValueError):
    """The synthesizer cannot do what was asked; the message says what to change."""


@dataclass
class SynthInfo:
    """What a fitted synthesizer needs besides its weights, saved next to them as JSON."""

    feature_names: list[str]
    label: str
    bounds: dict[str, tuple[float, float]]
    precision: dict[str, int]
    positive_rate: float
    fit_rows: int
    epochs: int
    best_epoch: int
    best_score: float | None
    trained_at: str
    settings: dict[str, Any]
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, text: str) -> SynthInfo:
        data = json.loads(text)
        data["bounds"] = {k: (float(v[0]), float(v[1])) for k, v in data["bounds"].items()}
        return cls(**data)


@dataclass
class Sample:
    """Exactly the rows asked for, and the sampling effort behind them."""

    frame: pd.DataFrame
    drawn: int = 0
    repaired: int = 0
    rejected: int = 0

    @property
    def positive_rate(self) -> float:
        return float(self.frame[LABEL.name].mean()) if len(self.frame) else 0.0


class Synthesizer:
    """A fitted CTGAN plus the facts about the real data that make its rows valid."""

    def __init__(self, model: Any, info: SynthInfo) -> None:
        self.model = model
        self.info = info

    # -------------------------------------------------------------- sampling
    def sample_raw(self, n: int, positive: bool | None = None) -> pd.DataFrame:
        """CTGAN's own output (unrepaired), optionally conditioned on the label (CTGAN's way)."""
        import torch

        with torch.no_grad():
            if positive is None:
                return self.model.sample(n)
            return self.model.sample(n, LABEL.name, LABEL_TEXT[positive])

    def sample(self, n: int, *, positive_rate: float | None = None, seed: int | None = None) -> Sample:
        """``n`` valid rows, ``round(n * positive_rate)`` of them positive (default: the real rate).

        Rows are drawn unconditionally, repaired, and kept by their own label until both counts are
        met (rejection sampling on the label). Conditioning CTGAN on the label instead was measured
        to weaken the label's link to the answers (TSTR ROC-AUC 0.725 against 0.79; docs/synthetic.md).
        With a ``seed`` the rows are reproducible (the daily job seeds with its run id).
        """
        check_row_count(n)
        rate = self.info.positive_rate if positive_rate is None else positive_rate
        if not 0.0 <= rate <= 1.0:
            raise SynthError(f"positive rate {rate!r} must be between 0 and 1")
        if seed is not None:
            self.model.set_random_state(int(seed) % (2**32))
        positives = int(np.floor(n * rate + 0.5))
        total = Sample(pd.DataFrame())
        frame = self._draw({True: positives, False: n - positives}, total)
        order = np.random.default_rng(seed).permutation(len(frame))
        total.frame = frame.iloc[order].reset_index(drop=True)
        return total

    def _draw(self, wanted: dict[bool, int], tally: Sample) -> pd.DataFrame:
        """Valid rows, ``wanted[label]`` of each label, drawn in rounds sized by the label shares seen.

        Gives up with a clear error after :data:`MAX_DRAWS_PER_ROW` draws per wanted row (a
        synthesizer that hardly ever produces one of the labels).
        """
        kept: dict[bool, list[pd.DataFrame]] = {True: [], False: []}
        have = {True: 0, False: 0}
        seen = {True: 0, False: 0}
        share = {True: self.info.positive_rate or 0.5, False: 1 - (self.info.positive_rate or 0.5)}
        drawn = 0
        limit = MAX_DRAWS_PER_ROW * sum(wanted.values()) + 10_000
        while any(have[k] < wanted[k] for k in have) and drawn < limit:
            need = max((wanted[k] - have[k]) / max(share[k], 1e-3) for k in have if have[k] < wanted[k])
            size = int(min(max(1.2 * need, 64), MAX_BATCH_ROWS, limit - drawn + 64))
            fixed = repair(self.sample_raw(size), self.info.bounds, self.info.precision)
            for label in (True, False):
                rows = fixed.frame[fixed.frame[LABEL.name] == label]
                take = rows.iloc[:max(wanted[label] - have[label], 0)]
                kept[label].append(take)
                have[label] += len(take)
                seen[label] += len(rows)
            tally.drawn += fixed.drawn
            tally.repaired += fixed.repaired
            tally.rejected += fixed.rejected
            drawn += size
            share = {k: seen[k] / drawn for k in seen}
        short = [k for k in have if have[k] < wanted[k]]
        if short:
            label = short[0]
            raise SynthError(
                f"the synthesizer gave {have[label]:,} of {wanted[label]:,} valid rows with "
                f"{LABEL.name}={label} in {drawn:,} draws ({share[label]:.2%} of its rows have that label, "
                f"{tally.rejected:,} rows rejected); ask for another positive rate, or retrain it with "
                "`heartrisk synth train` (more epochs or rows)"
            )
        parts = [part for label in (True, False) for part in kept[label] if len(part)]
        return pd.concat(parts, ignore_index=True) if parts else _empty_rows()

    # -------------------------------------------------------------- persistence
    def save(self, folder: Path) -> str:
        """Write the weights (stripped of every training row) and the info into ``folder``; returns
        the weights' sha256. The fitted object in memory is left as it is."""
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        self.model.set_device(torch.device("cpu"))
        torch.save(strip_training_state(self.model), folder / MODEL_FILE)
        (folder / INFO_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return sha256(folder / MODEL_FILE)

    @classmethod
    def load(cls, folder: Path, expected_sha256: str | tuple[str, ...] | None = None) -> Synthesizer:
        """Read a saved synthesizer, refusing anything damaged or made for another feature spec.

        The weights are a pickle (torch.save of the CTGAN object): load only from a registry you trust.
        """
        import torch

        model_path, info_path = folder / MODEL_FILE, folder / INFO_FILE
        for path in (model_path, info_path):
            if not path.is_file():
                raise SynthError(f"{path.name} is missing from {folder}")
        accepted = (expected_sha256,) if isinstance(expected_sha256, str) else tuple(expected_sha256 or ())
        if accepted and sha256(model_path) not in accepted:
            raise SynthError(f"{model_path.name} does not match the checksum recorded at registration")
        try:
            info = SynthInfo.from_json(info_path.read_text())
        except (ValueError, TypeError, KeyError) as exc:
            raise SynthError(f"{info_path.name} is unreadable: {exc}") from None
        if info.format_version != FORMAT_VERSION:
            raise SynthError(f"saved format {info.format_version} is not {FORMAT_VERSION}")
        if info.feature_names != list(FEATURE_NAMES) or info.label != LABEL.name:
            raise SynthError("it was trained for a different feature spec")
        try:
            model = torch.load(model_path, weights_only=False, map_location="cpu")
        except Exception as exc:
            raise SynthError(f"{model_path.name} cannot be read: {type(exc).__name__}: {exc}") from None
        if getattr(model, "_generator", None) is None or getattr(model, "_transformer", None) is None:
            raise SynthError(f"{model_path.name} does not hold a fitted CTGAN")
        model = strip_training_state(model)  # a version saved before stripping: not kept in memory
        model.set_device(torch.device("cpu"))
        return cls(model, info)


def strip_training_state(model: Any) -> Any:
    """A copy of a fitted CTGAN that keeps only what sampling needs (:data:`SAMPLING_STATE` of its data
    sampler); shallow, so the weights and the transformer are shared, not copied."""
    sampler = getattr(model, "_data_sampler", None)
    if sampler is None:
        return model
    stripped = copy.copy(model)
    kept = copy.copy(sampler)
    kept.__dict__ = {k: v for k, v in vars(sampler).items() if k in SAMPLING_STATE}
    stripped._data_sampler = kept
    return stripped


def holds_training_rows(model: Any) -> bool:
    """Whether a CTGAN object still holds per-row state (anything beyond :data:`SAMPLING_STATE`)."""
    sampler = getattr(model, "_data_sampler", None)
    return sampler is not None and bool(set(vars(sampler)) - SAMPLING_STATE)


def check_row_count(n: object) -> int:
    """A row count a person could mean: a whole number from 0 to :data:`MAX_SAMPLE_ROWS`."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise SynthError(f"the number of synthetic rows must be a whole number, not {n!r}")
    if n < 0 or n > MAX_SAMPLE_ROWS:
        raise SynthError(f"the number of synthetic rows must be from 0 to {MAX_SAMPLE_ROWS:,}, not {n:,}")
    return int(n)


def _empty_rows() -> pd.DataFrame:
    empty = pd.DataFrame({name: pd.Series(dtype=float if name in NUMERIC_FEATURES else object)
                          for name in FEATURE_NAMES})
    empty[LABEL.name] = pd.Series(dtype="boolean")
    return empty
