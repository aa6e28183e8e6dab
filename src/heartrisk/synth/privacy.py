"""Can a synthesizer's rows tell who was in the rows it was fitted on? The privacy report of one fit.

Every figure is measured on held-out real rows the synthesizer never saw, and each sits beside what
real rows alone give (a second, disjoint real sample in place of the synthetic one), because survey
answers are coarse: 5.3 % of the dev data's rows repeat another row exactly, so a synthetic row equal
to a real one is not by itself a leak. The four views (El Emam et al., JMIR 2020: identity,
membership and attribute disclosure):

* **distance to the closest record**, SDMetrics' own metrics: ``DCROverfittingProtection`` (are
  synthetic rows closer to the fit rows than to as many held-out rows? 1.0 = no more often than
  chance) and ``DCRBaselineProtection`` (synthetic rows' median distance to the fit rows against
  random rows'; fresh real people score about 0.2 on this data, which is the baseline to read it by);
* **exact copies**: the share of synthetic rows equal (17 answers and the diagnosis) to a fit row,
  against the share of held-out real rows equal to a fit row;
* **membership inference**: an attacker holding the synthetic rows scores each candidate by its
  distance to the closest synthetic row (closer = "was in the fit"); the ROC-AUC of that score at
  telling fit rows from held-out rows. 0.5 = the attacker learns nothing; the same attack with real
  rows in place of the synthetic ones is the baseline;
* **attribute disclosure**: SDMetrics ``DisclosureProtection`` (its CAP attack) guessing
  ``heart_disease`` from age, sex, race and BMI, on fit rows and on held-out rows, with SDMetrics'
  random-guess baseline. A leak shows as fit rows being less protected than held-out rows.

The distance is SDMetrics' (Gower): per column, a numeric difference as a share of the fit rows'
range, 0/1 for a differing answer, averaged over the 18 columns. :func:`closest_distances` computes
it with a nearest-neighbour search (an L1 distance on scaled one-hot rows, equal to SDMetrics'
``calculate_dcr``, tested) because SDMetrics' cross join costs about 4-8 s per million pairs here.

Cost, and why the sample sizes (:class:`PrivacySettings`): SDMetrics' DCR metrics grow with the
product of their row counts, so they get ``dcr_rows`` rows a side; the attacks and the copy count use
larger samples because they are cheap. The report is meant to add under 10 % to a default fit
(bench/synth.py measures it). sdmetrics and scikit-learn are imported inside the functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.features import CATEGORICAL_FEATURES, FEATURE_NAMES, LABEL, NUMERIC_FEATURES
from heartrisk.synth.gate import PRIVACY_CHECKS, PrivacyLimits

#: What the attribute-disclosure attacker is assumed to know about a person, and what it guesses.
KNOWN_COLUMNS: tuple[str, ...] = ("age_category", "sex", "race", "bmi")
SENSITIVE_COLUMN = LABEL.name
COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, LABEL.name)


class PrivacySettings(BaseModel):
    """Sample sizes of the privacy report and the gate's thresholds (:class:`PrivacyLimits`).

    Defaults sized on the dev data (bench/synth.py measures the cost): about 20 s on 2 cores, most of
    it in the DCR distances (``dcr_rows`` a side)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synthetic_rows: int = Field(10_000, ge=50, description=(
        "synthetic rows sampled for the copy count, the membership and the disclosure attacks"))
    attack_rows: int = Field(2_000, ge=20, description=(
        "fit rows the membership attack tries, and at most as many held-out rows (fewer when fewer "
        "were held out); the standard error of its AUC is about 0.009 at 2,000 a side"))
    dcr_rows: int = Field(1_000, ge=20, description="synthetic rows whose closest record is measured (DCR)")
    reference_rows: int = Field(10_000, ge=20, description=(
        "fit rows and as many held-out rows the DCR metrics search (all fit rows would be best: a "
        "subsample dilutes memorisation, since a copied row's source is in it only that often)"))
    bmi_step: float = Field(0.01, gt=0, description=(
        "the disclosure attacker knows BMI to this step (the data's 2 decimals: the worst case) and "
        "age, sex and race exactly"))
    seed: int = Field(0, description="seed of every sample the report draws")
    limits: PrivacyLimits = Field(default_factory=PrivacyLimits, description="the privacy gate")

    @classmethod
    def quick(cls, **overrides: Any) -> PrivacySettings:
        """Small samples for tests and smoke runs (a few seconds; the figures are noisier)."""
        values: dict[str, Any] = {"synthetic_rows": 2_000, "attack_rows": 500, "dcr_rows": 500,
                                  "reference_rows": 2_000}
        return cls(**{**values, **overrides})


@dataclass
class PrivacyReport:
    """The figures (``privacy_*`` metric names, logged to MLflow) and what each was measured on."""

    metrics: dict[str, float]
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "sizes": self.sizes}


# ---------------------------------------------------------------------------------------- rows
def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The 18 columns as every measure here compares them: numbers as float rounded to 6 decimals,
    answers as text, the diagnosis as bool; incomplete rows dropped (synthetic rows are complete)."""
    out = frame[list(COLUMNS)].dropna().copy()
    for name in NUMERIC_FEATURES:
        out[name] = pd.to_numeric(out[name]).astype(float).round(6)
    for name in CATEGORICAL_FEATURES:
        out[name] = out[name].astype(str)
    out[LABEL.name] = out[LABEL.name].astype(bool)
    return out.reset_index(drop=True)


def _sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame.reset_index(drop=True)
    return frame.sample(n=n, random_state=seed).reset_index(drop=True)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of :func:`comparable` rows (equal rows, equal hashes)."""
    return pd.util.hash_pandas_object(frame[list(COLUMNS)], index=False).to_numpy()


def copy_share(rows: pd.DataFrame, reference: pd.DataFrame) -> float:
    """Share of ``rows`` identical (all 18 columns) to some row of ``reference``."""
    if rows.empty:
        return float("nan")
    return float(np.isin(row_hashes(rows), row_hashes(reference)).mean())


# ---------------------------------------------------------------------------------------- distance
def numeric_ranges(reference: pd.DataFrame) -> dict[str, float]:
    """Each number's range in ``reference``: SDMetrics scales numeric differences by it."""
    return {name: float(reference[name].max() - reference[name].min()) for name in NUMERIC_FEATURES}


#: Query rows compared with every reference row at once (a chunk of 256 x 10,000 pairs: ~20 MB).
_CHUNK = 256


def _answer_bits(frame: pd.DataFrame, categories: dict[str, list[Any]]) -> np.ndarray:
    """Each row's answers and diagnosis as one-hot bits packed in 64-bit words: two rows differ in
    an answer exactly when two of their bits differ, so a popcount of XOR counts differing answers."""
    width = sum(len(values) + 1 for values in categories.values())  # +1: an answer not seen
    words = np.zeros((len(frame), (width + 63) // 64), dtype=np.uint64)
    offset = 0
    for name, values in categories.items():
        codes = pd.Categorical(frame[name], categories=values).codes.astype(np.int64)
        position = offset + np.where(codes < 0, len(values), codes)
        np.bitwise_or.at(words, (np.arange(len(frame)), position // 64),
                         np.left_shift(np.uint64(1), (position % 64).astype(np.uint64)))
        offset += len(values) + 1
    return words


def closest_distances(rows: pd.DataFrame, reference: pd.DataFrame,
                      ranges: dict[str, float] | None = None) -> np.ndarray:
    """Each row's distance to its closest ``reference`` row: SDMetrics' DCR (per column, a numeric
    difference as a share of its range, capped at 1, or 1 for a differing answer; averaged over the
    18 columns). ``ranges`` default to the reference's, as in SDMetrics' ``calculate_dcr``.

    An exhaustive search in numpy, chunked: 20 million pairs took 2.4 s under load 6, against 3.6 s
    for scikit-learn's KD-tree and 4.9 s for its brute-force L1 search on one-hot rows (and a KD-tree
    slows down further on rows far from the data, such as SDMetrics' random baseline rows)."""
    ranges = ranges or numeric_ranges(reference)
    categories = {name: sorted(set(reference[name]) | set(rows[name]))
                  for name in (*CATEGORICAL_FEATURES, LABEL.name)}
    scale = np.array([ranges[n] if ranges[n] > 0 else 1.0 for n in NUMERIC_FEATURES])
    numbers_q = rows[list(NUMERIC_FEATURES)].to_numpy(dtype=float) / scale
    numbers_r = reference[list(NUMERIC_FEATURES)].to_numpy(dtype=float) / scale
    bits_q, bits_r = _answer_bits(rows, categories), _answer_bits(reference, categories)
    out = np.empty(len(rows))
    for start in range(0, len(rows), _CHUNK):
        part = slice(start, start + _CHUNK)
        flipped = np.bitwise_count(bits_q[part, None, :] ^ bits_r[None, :, :]).sum(axis=2)
        distance = flipped * 0.5
        for j in range(len(NUMERIC_FEATURES)):
            distance += np.minimum(np.abs(numbers_q[part, j, None] - numbers_r[None, :, j]), 1.0)
        out[part] = distance.min(axis=1)
    # rounded so that equal distances reached by different sums compare equal (ties matter here)
    return np.round(out / len(COLUMNS), 9)


# ---------------------------------------------------------------------------------------- the views
def membership_auc(members: pd.DataFrame, non_members: pd.DataFrame, released: pd.DataFrame,
                   ranges: dict[str, float]) -> float:
    """ROC-AUC of the distance attack: a candidate closer to a released row is guessed a member."""
    from sklearn.metrics import roc_auc_score

    distance = closest_distances(pd.concat([members, non_members], ignore_index=True), released, ranges)
    truth = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(truth, -distance))


def overfitting_protection(distances: dict[str, np.ndarray]) -> float:
    """SDMetrics' DCROverfittingProtection from each released row's distance to the closest fit row and
    to the closest of as many held-out rows: ``min(2 * (1 - share strictly closer to the fit), 1)``
    (1 = no closer to the fit rows than chance).

    The two sides must be the same size (the share is 0.5 by chance only then), and here they share
    one set of ranges: SDMetrics scales each side by its own sample's range, which put fresh real rows
    54 % closer to the fit side (a score of 0.91 for rows that cannot leak) when the fit sample held
    the more extreme BMI."""
    closer = float(np.mean(distances["fit"] < distances["holdout"]))
    return min(2.0 * (1.0 - closer), 1.0)


def random_rows(fit: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """SDMetrics' random baseline rows for DCRBaselineProtection (its own generator, seeded)."""
    from sdmetrics.single_table import DCRBaselineProtection

    seeded = type("SeededDCRBaselineProtection", (DCRBaselineProtection,), {"_seed": seed})
    return comparable(seeded._generate_random_data(fit, n))


def baseline_protection(released_to_fit: np.ndarray, random_to_fit: np.ndarray) -> float:
    """SDMetrics' DCRBaselineProtection: the released rows' median distance to the fit rows over that of
    random rows, capped at 1 (1 = as far from the people in the fit as random rows are)."""
    random_median = float(np.median(random_to_fit))
    if random_median == 0:
        return float("nan")
    return min(float(np.median(released_to_fit)) / random_median, 1.0)


def _known(frame: pd.DataFrame, bmi_step: float) -> pd.DataFrame:
    out = frame[[*KNOWN_COLUMNS, SENSITIVE_COLUMN]].copy()
    out["bmi"] = (out["bmi"] / bmi_step).round().astype(int)
    return out


def cap_protection(targets: pd.DataFrame, released: pd.DataFrame) -> float:
    """SDMetrics' CAP protection (``CategoricalCAP``): for every target whose known answers occur among
    the released rows, the share of those rows that give its true diagnosis; 1 minus the mean over
    the targets that matched (NaN if none did). Vectorised: SDMetrics' loop slices the frame per row
    (5-6 s for 1,000 targets and 2,000 rows here), so the report could afford only samples too small
    to tell a copying synthesizer from a real one; tested equal to SDMetrics' on small samples."""
    keys = list(KNOWN_COLUMNS)
    same = released.groupby([*keys, SENSITIVE_COLUMN]).size().rename("same").reset_index()
    total = released.groupby(keys).size().rename("total").reset_index()
    scored = targets[[*keys, SENSITIVE_COLUMN]].merge(same, how="left").merge(total, how="left")
    matched = scored["total"].notna()
    if not matched.any():
        return float("nan")
    return float(1.0 - (scored.loc[matched, "same"].fillna(0) / scored.loc[matched, "total"]).mean())


def disclosure(targets: pd.DataFrame, released: pd.DataFrame, bmi_step: float) -> dict[str, float]:
    """SDMetrics' DisclosureProtection of the diagnosis from age, sex, race and BMI (CAP attack): the
    score ``min(cap / baseline, 1)`` (1 = the attacker does no better than guessing at random), the
    CAP protection and the random-guess baseline ``1 - 1/categories``."""
    baseline = 1.0 - 1.0 / max(targets[SENSITIVE_COLUMN].nunique(dropna=False), 1)
    cap = cap_protection(_known(targets, bmi_step), _known(released, bmi_step))
    score = min(cap / baseline, 1.0) if baseline > 0 and np.isfinite(cap) else float("nan")
    return {"score": score, "cap_protection": cap, "baseline": baseline}


def measure_privacy(fit: pd.DataFrame, holdout: pd.DataFrame, other: pd.DataFrame, synthetic: pd.DataFrame,
                    settings: PrivacySettings | None = None) -> PrivacyReport:
    """Every privacy figure of one fit (see the module docstring).

    ``fit``: the real rows the synthesizer was fitted on; ``holdout`` and ``other``: two disjoint
    samples of real rows it never saw (``other`` stands in for the synthetic rows in the real-vs-real
    baselines); ``synthetic``: rows sampled from it. Each is a frame of the 17 answers and the label.
    """
    settings = settings or PrivacySettings()
    started = time.perf_counter()
    seed = settings.seed
    fit, holdout, other = comparable(fit), comparable(holdout), comparable(other)
    synthetic = _sample(comparable(synthetic), settings.synthetic_rows, seed)
    ranges = numeric_ranges(fit)
    members = _sample(fit, min(settings.attack_rows, len(fit)), seed + 1)
    non_members = _sample(holdout, min(settings.attack_rows, len(holdout)), seed + 2)
    reference = min(settings.reference_rows, len(fit), len(holdout))
    dcr_fit, dcr_holdout = _sample(fit, reference, seed + 3), _sample(holdout, reference, seed + 4)
    dcr_synthetic = _sample(synthetic, settings.dcr_rows, seed + 5)
    dcr_other = _sample(other, len(dcr_synthetic), seed + 6)
    synthetic_to = {side: closest_distances(dcr_synthetic, rows, ranges)
                    for side, rows in (("fit", dcr_fit), ("holdout", dcr_holdout))}
    other_to = {side: closest_distances(dcr_other, rows, ranges)
                for side, rows in (("fit", dcr_fit), ("holdout", dcr_holdout))}
    random_to_fit = closest_distances(random_rows(dcr_fit, len(dcr_synthetic), seed), dcr_fit, ranges)
    leaked = disclosure(fit, synthetic, settings.bmi_step)  # every row: cheap, and far less noisy
    natural = disclosure(holdout, synthetic, settings.bmi_step)
    metrics = {
        "privacy_dcr_overfitting_protection": overfitting_protection(synthetic_to),
        "privacy_dcr_closer_to_training": float(np.mean(synthetic_to["fit"] < synthetic_to["holdout"])),
        "privacy_dcr_overfitting_protection_real": overfitting_protection(other_to),
        "privacy_dcr_baseline_protection": baseline_protection(synthetic_to["fit"], random_to_fit),
        "privacy_dcr_baseline_protection_real": baseline_protection(other_to["fit"], random_to_fit),
        "privacy_exact_copy_share": copy_share(synthetic, fit),
        "privacy_exact_copy_share_real": copy_share(holdout, fit),
        "privacy_membership_auc": membership_auc(members, non_members, synthetic, ranges),
        "privacy_membership_auc_real": membership_auc(members, non_members, other, ranges),
        "privacy_disclosure_protection": leaked["score"],
        "privacy_disclosure_protection_holdout": natural["score"],
        "privacy_disclosure_baseline": leaked["baseline"],
    }
    metrics["privacy_exact_copy_excess"] = (metrics["privacy_exact_copy_share"]
                                            - metrics["privacy_exact_copy_share_real"])
    metrics["privacy_disclosure_gap"] = (metrics["privacy_disclosure_protection_holdout"]
                                         - metrics["privacy_disclosure_protection"])
    metrics["privacy_seconds"] = time.perf_counter() - started
    sizes = {"fit_rows": len(fit), "holdout_rows": len(holdout), "other_rows": len(other),
             "synthetic_rows": len(synthetic), "attacked_members": len(members),
             "attacked_non_members": len(non_members), "dcr_rows": len(dcr_synthetic),
             "reference_rows": reference}
    return PrivacyReport(metrics, sizes)


#: The privacy table of `synth train`, `status` and the dashboard: (what, metric, its real-vs-real
#: baseline, the gate's check on it or None).
TABLE_ROWS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("membership attack AUC (0.5: no leak)", "privacy_membership_auc", "privacy_membership_auc_real",
     "privacy_membership_auc"),
    ("DCR overfitting protection (SDMetrics; 1: no leak)", "privacy_dcr_overfitting_protection",
     "privacy_dcr_overfitting_protection_real", "privacy_dcr_overfitting_protection"),
    ("DCR baseline protection (SDMetrics)", "privacy_dcr_baseline_protection",
     "privacy_dcr_baseline_protection_real", None),
    ("exact copies of a fit row (share)", "privacy_exact_copy_share", "privacy_exact_copy_share_real",
     "privacy_exact_copy_excess"),
    ("diagnosis disclosure protection (SDMetrics CAP), fit rows", "privacy_disclosure_protection",
     "privacy_disclosure_protection_holdout", "privacy_disclosure_gap"),
)


def privacy_rows(metrics: dict[str, float], limits: dict[str, object]) -> dict[str, dict[str, Any]]:
    """The privacy figures beside their real-vs-real baselines and the gate's limits, one row per
    figure (empty for a fit made before the privacy report). ``limits`` are :class:`PrivacyLimits`
    values by field name (as logged with the run)."""
    checks = {key: (label, is_max, limit) for key, label, is_max, limit in PRIVACY_CHECKS}
    table: dict[str, dict[str, Any]] = {}
    for label, key, baseline, check in TABLE_ROWS:
        if key not in metrics:
            continue
        row: dict[str, Any] = {"value": round(float(metrics[key]), 4)}
        if baseline and baseline in metrics:
            row["real_vs_real"] = round(float(metrics[baseline]), 4)
        if check and check in checks and limits.get(checks[check][2]) not in (None, "None") \
                and check in metrics:
            what, is_max, field_name = checks[check]
            limit = float(limits[field_name])  # type: ignore[arg-type]
            value = float(metrics[check])
            row["limit"] = (f"{what} {'<=' if is_max else '>='} {limit:g}" if check != key
                            else f"{'<=' if is_max else '>='} {limit:g}")
            row["passed"] = value <= limit + 1e-9 if is_max else value >= limit - 1e-9
        table[label] = row
    if "privacy_disclosure_baseline" in metrics:
        table["disclosure random-guess baseline (SDMetrics)"] = {
            "value": round(float(metrics["privacy_disclosure_baseline"]), 4)}
    if "privacy_seconds" in metrics:
        table["seconds the report took"] = {"value": round(float(metrics["privacy_seconds"]), 1)}
    return table
