"""The privacy report and gate: the measures equal SDMetrics' own, a synthesizer that copies its fit rows
fails the gate, real rows in its place pass, and the gate's rule on numbers alone."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from heartrisk.features import LABEL
from heartrisk.sources.kaggle import read_kaggle_csv
from heartrisk.synth.gate import ChampionFigures, PrivacyLimits, gate, privacy_verdict
from heartrisk.synth.privacy import (
    KNOWN_COLUMNS,
    SENSITIVE_COLUMN,
    PrivacySettings,
    cap_protection,
    closest_distances,
    comparable,
    measure_privacy,
    numeric_ranges,
    privacy_rows,
)


@pytest.fixture(scope="module")
def real(sample_csv: Path) -> dict[str, pd.DataFrame]:
    """Disjoint samples of real rows: the fit, held-out rows, a second held-out sample, fresh people."""
    frame = comparable(read_kaggle_csv(sample_csv).frame)
    order = np.random.default_rng(3).permutation(len(frame))
    cut = {"fit": (0, 2_500), "holdout": (2_500, 3_500), "other": (3_500, 4_200), "fresh": (4_200, 6_000)}
    return {name: frame.iloc[order[a:b]].reset_index(drop=True) for name, (a, b) in cut.items()}


def sdmetrics_table() -> dict:
    from heartrisk.synth.quality import sdmetrics_metadata

    return sdmetrics_metadata()["tables"]["heart"]


def test_closest_distances_are_sdmetrics_dcr(real: dict[str, pd.DataFrame]) -> None:
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    rows, reference = real["fresh"].iloc[:150], real["fit"].iloc[:400]
    ours = closest_distances(rows, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = calculate_dcr(rows, reference, sdmetrics_table()).to_numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-8)
    assert (ours > 0).any() and (closest_distances(reference.iloc[:50], reference) == 0).all()


def test_cap_protection_is_sdmetrics_cap(real: dict[str, pd.DataFrame]) -> None:
    from sdmetrics.single_table.privacy.cap import CategoricalCAP

    def known(frame: pd.DataFrame) -> pd.DataFrame:  # BMI to whole units, so that keys repeat
        out = frame[[*KNOWN_COLUMNS, SENSITIVE_COLUMN]].copy()
        out["bmi"] = out["bmi"].round().astype(int)
        return out

    targets, released = known(real["holdout"].iloc[:300]), known(real["fit"].iloc[:800])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = CategoricalCAP._compute(targets.astype(str), released.astype(str),
                                         key_fields=list(KNOWN_COLUMNS), sensitive_fields=[SENSITIVE_COLUMN])
    assert cap_protection(targets, released) == pytest.approx(theirs, abs=1e-12)


def copier(fit: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """What a synthesizer that memorised its fit rows gives: those rows, drawn again."""
    return fit.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)


def test_a_copying_synthesizer_fails_the_gate_and_real_rows_pass(real: dict[str, pd.DataFrame]) -> None:
    settings = PrivacySettings.quick()
    held = (real["fit"], real["holdout"], real["other"])
    leaked = measure_privacy(*held, copier(real["fit"], 2_000), settings)
    fresh = measure_privacy(*held, real["fresh"], settings)
    m, baseline = leaked.metrics, fresh.metrics
    # The copier, every way it can be seen:
    assert m["privacy_exact_copy_share"] == 1.0 and m["privacy_exact_copy_share_real"] < 0.05
    assert m["privacy_membership_auc"] > 0.6 and m["privacy_dcr_overfitting_protection"] < 0.9
    assert m["privacy_disclosure_gap"] > 0.05
    verdict = privacy_verdict(m, PrivacyLimits())
    assert not verdict.passed and len(verdict.failures) == 3, verdict.text
    for words in ("membership AUC", "DCR overfitting protection", "exact copies"):
        assert words in verdict.text
    # Fresh real people in its place: no leak, by the same measures and limits.
    assert privacy_verdict(baseline, PrivacyLimits()).passed, privacy_verdict(baseline, PrivacyLimits()).text
    assert abs(baseline["privacy_membership_auc"] - 0.5) < 0.04
    assert baseline["privacy_dcr_overfitting_protection"] > 0.9
    # The real-vs-real baselines do not depend on the synthetic rows.
    for key in ("privacy_membership_auc_real", "privacy_exact_copy_share_real",
                "privacy_dcr_overfitting_protection_real", "privacy_dcr_baseline_protection_real"):
        assert m[key] == baseline[key]
    assert (leaked.sizes["attacked_members"], leaked.sizes["attacked_non_members"]) == (500, 500)
    assert leaked.sizes["reference_rows"] == 1_000


def test_the_report_is_the_same_for_the_same_rows(real: dict[str, pd.DataFrame]) -> None:
    settings = PrivacySettings.quick()
    rows = (real["fit"], real["holdout"], real["other"], real["fresh"])
    first, second = measure_privacy(*rows, settings), measure_privacy(*rows, settings)
    strip = {k: v for k, v in first.metrics.items() if k != "privacy_seconds"}
    assert strip == {k: v for k, v in second.metrics.items() if k != "privacy_seconds"}


def test_the_ranges_are_the_fit_rows(real: dict[str, pd.DataFrame]) -> None:
    ranges = numeric_ranges(real["fit"])
    assert ranges["bmi"] == pytest.approx(real["fit"]["bmi"].max() - real["fit"]["bmi"].min())
    assert set(ranges) == {"bmi", "physical_health", "mental_health", "sleep_time"}
    assert real["fit"][LABEL.name].dtype == bool


# ------------------------------------------------------------------------------------- the rule on numbers
def figures(**privacy: float) -> dict[str, float]:
    values = {"quality_overall": 0.93, "tstr_roc_auc": 0.81, "privacy_membership_auc": 0.50,
              "privacy_dcr_overfitting_protection": 1.0, "privacy_exact_copy_excess": -0.01,
              "privacy_disclosure_gap": 0.0}
    return {**values, **privacy}


@pytest.mark.parametrize(("failing", "words"), [
    ({"privacy_membership_auc": 0.56}, "membership AUC 0.560 above 0.55"),
    ({"privacy_dcr_overfitting_protection": 0.89}, "DCR overfitting protection 0.890 below 0.9"),
    ({"privacy_exact_copy_excess": 0.03}, "above 0.02"),
])
def test_a_fit_failing_one_privacy_limit_never_becomes_champion(failing: dict[str, float],
                                                               words: str) -> None:
    for champion in (None, ChampionFigures("1", {"quality_overall": 0.5, "tstr_roc_auc": 0.5}),
                     ChampionFigures("1", {}, erased=True)):
        decision = gate(figures(**failing), champion, 0.01, PrivacyLimits())
        assert not decision.promoted and decision.text.startswith("kept out: privacy failed: ")
        assert words in decision.text and decision.privacy is not None and not decision.privacy.passed


def test_limits_on_the_border_pass_and_a_missing_figure_fails() -> None:
    border = figures(privacy_membership_auc=0.55, privacy_dcr_overfitting_protection=0.9,
                     privacy_exact_copy_excess=0.02)
    assert privacy_verdict(border, PrivacyLimits()).passed
    missing = {k: v for k, v in figures().items() if k != "privacy_membership_auc"}
    verdict = privacy_verdict(missing, PrivacyLimits())
    assert not verdict.passed and "membership AUC was not measured" in verdict.text
    assert privacy_verdict(figures(privacy_membership_auc=float("nan")), PrivacyLimits()).failures


def test_the_disclosure_gap_is_reported_and_gated_only_when_set() -> None:
    wide = figures(privacy_disclosure_gap=0.2)
    assert privacy_verdict(wide, PrivacyLimits()).passed  # default: reported, not gated
    verdict = privacy_verdict(wide, PrivacyLimits(max_disclosure_gap=0.1))
    assert not verdict.passed and "disclosure gap" in verdict.text
    with pytest.raises(ValueError):
        PrivacyLimits(max_membership_auc=0.4)  # below chance: a typo, refused
    with pytest.raises(ValueError, match="Extra inputs"):
        PrivacyLimits(max_auc=0.6)


def test_a_champion_that_learned_from_erased_rows_gives_way_to_a_private_fit() -> None:
    erased = ChampionFigures("4", {"quality_overall": 0.99, "tstr_roc_auc": 0.99}, erased=True)
    decision = gate(figures(), erased, 0.01, PrivacyLimits())
    assert decision.promoted and "champion v4 learned from erased rows" in decision.text
    assert gate(figures(), ChampionFigures("4", erased.figures), 0.01, PrivacyLimits()).promoted is False


def test_the_privacy_table_puts_each_figure_beside_its_baseline_and_limit() -> None:
    metrics = {**figures(privacy_membership_auc=0.7), "privacy_membership_auc_real": 0.5,
               "privacy_exact_copy_share": 0.3, "privacy_exact_copy_share_real": 0.01,
               "privacy_disclosure_protection": 0.3, "privacy_disclosure_protection_holdout": 0.31}
    rows = privacy_rows(metrics, PrivacyLimits().model_dump())
    auc = rows["membership attack AUC (0.5: no leak)"]
    assert auc == {"value": 0.7, "real_vs_real": 0.5, "limit": "<= 0.55", "passed": False}
    copies = rows["exact copies of a fit row (share)"]
    assert copies["real_vs_real"] == 0.01 and copies["passed"] is True and "0.02" in copies["limit"]
    disclosure = rows["diagnosis disclosure protection (SDMetrics CAP), fit rows"]
    assert disclosure == {"value": 0.3, "real_vs_real": 0.31}  # reported, not gated by default
