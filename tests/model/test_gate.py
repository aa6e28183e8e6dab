"""The classifier's champion gate on numbers alone: no MLflow, no model (like the synthesizer's gate)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from heartrisk.model.gate import (
    GATE_SOURCES,
    MIN_POSITIVES,
    ChampionScores,
    GateTolerance,
    SubgroupScores,
    gate,
)


def records(n: int = 2000, seed: int = 0, source: str = "kaggle") -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Ids, labels and an informative probability for ``n`` test records."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    p = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.15, n), 0.001, 0.999)
    return pd.Series([f"{source}:f:{i}" for i in range(n)]), y, p


def test_without_a_champion_or_when_it_cannot_score_the_new_model_is_promoted() -> None:
    ids, y, p = records()
    assert gate(ids, y, p, None).text == "promoted: there was no champion"
    broken = gate(ids, y, p, ChampionScores("3", None, "ValueError: unknown answer"))
    assert broken.promoted and broken.comparison is None
    assert broken.text == ("promoted: champion v3 could not score the test records "
                           "(ValueError: unknown answer)")


def test_better_beyond_the_noise_is_promoted_and_equal_is_kept_out() -> None:
    ids, y, p = records()
    worse = np.clip(p + np.random.default_rng(1).normal(0, 0.25, len(p)), 0.001, 0.999)
    better = gate(ids, y, p, ChampionScores("1", worse), resamples=100)
    assert better.promoted and better.comparison is not None and better.comparison.low > 0
    assert better.text.startswith("promoted: PR-AUC ") and "vs champion v1" in better.text
    same = gate(ids, y, p, ChampionScores("1", p.copy()), resamples=100)
    assert not same.promoted and same.text.endswith("(not better by more than the noise)")


def test_only_curated_records_judge() -> None:
    """A flood of shared outcomes on the test side, labelled so that the new model looks far better,
    does not count: only records from the gate's sources decide."""
    kaggle_ids, y, p = records(1000)
    user_ids, y_user, p_user = records(3000, seed=2, source="user")
    ids = pd.concat([kaggle_ids, user_ids], ignore_index=True)
    labels = np.concatenate([y, 1 - y_user])          # wrong on purpose
    champion = np.concatenate([p, p_user])            # right about the user rows' real pattern
    challenger = np.concatenate([p, 1 - p_user])      # fitted to the wrong labels
    decision = gate(ids, labels, challenger, ChampionScores("1", champion), resamples=100)
    assert GATE_SOURCES == ("kaggle",)
    assert not decision.promoted and "on 1,000 kaggle test records" in decision.text


def test_too_few_judging_records_keep_the_new_model_out() -> None:
    ids, y, p = records(2000, source="user")
    few = pd.Series([f"kaggle:f:{i}" if i < MIN_POSITIVES else v for i, v in enumerate(ids)])
    decision = gate(few, y, p, ChampionScores("1", p))
    assert not decision.promoted and decision.comparison is None
    assert decision.text.startswith(f"kept out: only {MIN_POSITIVES} test records from kaggle")


def grouped_records(n: int = 6000, seed: int = 3) -> tuple[pd.Series, np.ndarray, pd.DataFrame, np.ndarray]:
    """Ids, labels, the subgroup answers and a champion's probabilities (like :func:`records`)."""
    from heartrisk.features import BY_NAME

    ids, y, champion = records(n, seed)
    rng = np.random.default_rng(seed + 1)
    answers = pd.DataFrame({
        "sex": rng.choice(BY_NAME["sex"].values, n),
        "age_category": np.array(BY_NAME["age_category"].values)[np.arange(n) % 13],
        "race": rng.choice(BY_NAME["race"].values, n),
    })
    return ids, y, answers, champion


def subgroup_scores(answers: pd.DataFrame, y: np.ndarray, challenger: np.ndarray,
                    champion: np.ndarray) -> SubgroupScores:
    from heartrisk.monitoring.subgroups import subgroup_table

    def table(p: np.ndarray) -> pd.DataFrame:
        return subgroup_table(answers.assign(heart_disease=y.astype(bool), probability=p))

    return SubgroupScores(challenger=table(challenger), champion=table(champion))


def test_a_model_made_worse_for_one_group_on_purpose_is_kept_out() -> None:
    """Better overall (less noise), but twice as noisy as the champion for everyone aged 80 or older."""
    ids, y, answers, champion = grouped_records()
    rng = np.random.default_rng(9)
    challenger = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.04, len(y)), 0.001, 0.999)
    oldest = (answers["age_category"] == "80 or older").to_numpy()
    challenger[oldest] = np.clip(0.15 + 0.3 * y[oldest] + rng.normal(0, 0.3, oldest.sum()), 0.001, 0.999)
    without = gate(ids, y, challenger, ChampionScores("1", champion), resamples=100)
    assert without.promoted, without.text  # better on PR-AUC overall: the old rule would promote it
    decision = gate(ids, y, challenger, ChampionScores("1", champion), resamples=100,
                    subgroups=subgroup_scores(answers, y, challenger, champion))
    assert not decision.promoted
    assert "ROC-AUC for age_group=80+" in decision.text and "kept out" in decision.text
    assert "sex=" not in decision.text  # the other groups are served no worse


def test_a_better_ranking_with_worse_calibration_is_kept_out() -> None:
    ids, y, answers, champion = grouped_records()
    rng = np.random.default_rng(9)
    better = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.04, len(y)), 0.001, 0.999)
    squashed = np.sqrt(better)  # the same order, risks far too high
    tolerance = GateTolerance()
    decision = gate(ids, y, squashed, ChampionScores("1", champion), resamples=100, tolerance=tolerance,
                    subgroups=subgroup_scores(answers, y, squashed, champion))
    assert not decision.promoted and "Brier" in decision.text
    fine = gate(ids, y, better, ChampionScores("1", champion), resamples=100, tolerance=tolerance,
                subgroups=subgroup_scores(answers, y, better, champion))
    assert fine.promoted, fine.text
