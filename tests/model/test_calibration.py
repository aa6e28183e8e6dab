"""Calibration chosen per version (model/calibration.py): the candidates, the out-of-fold choice, ECE."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from heartrisk.model.calibration import (
    Isotonic,
    Platt,
    Uncalibrated,
    choose,
    expected_calibration_error,
    sigmoid,
)
from heartrisk.model.estimator import RiskModel


def labels(true_log_odds: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(true_log_odds)) < sigmoid(true_log_odds)).astype(int)


def test_expected_calibration_error_on_known_bins() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0]), bins=2) == 0.0
    # two bins: mean predictions 0.25 and 0.75 against rates 0 and 1 -> 0.25 off on every row
    assert expected_calibration_error(y, np.array([0.2, 0.3, 0.7, 0.8]), bins=2) == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_model_that_is_off_by_an_affine_map_gets_platt(seed: int) -> None:
    margin = np.random.default_rng(seed).normal(-2, 1.5, 8000)
    y = labels(0.5 * margin - 1.0, seed)  # scores twice too sure and too high
    chosen, rows = choose(margin, y, seed)
    by_method = {r["method"]: r for r in rows}
    assert chosen.method in ("platt", "isotonic")
    assert by_method["none"]["brier"] > by_method[chosen.method]["brier"]
    assert by_method["none"]["ece"] > 3 * by_method["platt"]["ece"]
    assert [r["chosen"] for r in rows].count(True) == 1 and by_method[chosen.method]["chosen"]


def test_a_bend_no_sigmoid_can_follow_goes_to_isotonic() -> None:
    margin = np.random.default_rng(5).uniform(-4, 4, 20000)
    y = labels(np.where(margin < 0, -3.0, 2.0 * margin - 3.0), 5)  # flat, then steep
    chosen, _rows = choose(margin, y, 5)
    assert chosen.method == "isotonic"


def test_an_already_calibrated_model_keeps_its_scores_or_nearly() -> None:
    margin = np.random.default_rng(7).normal(-2.4, 1.2, 8000)
    chosen, rows = choose(margin, labels(margin, 7), 7)
    by_method = {r["method"]: r for r in rows}
    assert by_method[chosen.method]["brier"] <= by_method["none"]["brier"]
    assert by_method["none"]["brier"] - by_method[chosen.method]["brier"] < 2e-4


def test_isotonic_is_monotone_and_its_explanation_factor_adds_up() -> None:
    margin = np.random.default_rng(3).normal(-2, 1.5, 5000)
    iso = Isotonic.fit(margin, labels(margin, 3))
    grid = np.linspace(-8, 5, 400)
    assert np.all(np.diff(iso(grid)) >= 0)
    base = -2.0
    factor = iso.scale(grid, base)
    np.testing.assert_allclose(iso(np.array([base]))[0] + (grid - base) * factor, iso(grid), atol=1e-9)
    assert np.isfinite(iso.scale(np.array([base]), base)).all()


def test_models_store_their_calibration_and_old_ones_keep_platt() -> None:
    model = RiskModel(pipeline=None, calibration=Uncalibrated(), threshold=0.3, base_rate=0.1)  # type: ignore[arg-type]
    again = pickle.loads(pickle.dumps(model))
    assert again.calibration.method == "none" and again.calibration(np.array([1.5]))[0] == 1.5
    old = RiskModel.__new__(RiskModel)
    old.__setstate__({"slope": 2.0, "intercept": -1.0, "threshold": 0.3, "base_rate": 0.1})
    assert old.calibration == Platt(2.0, -1.0) and old.calibration.method == "platt"
