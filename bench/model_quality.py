"""Benchmark: the trained classifier against the original project's recipe, on the same real test split.

Targets (issue 3, full dev data, real test records): ROC-AUC >= 0.842, PR-AUC >= 0.350, positive-class
F1 >= 0.40 at the stored threshold, Brier <= 0.066; the full `heartrisk train` within 10 minutes on
2 cores. The original recipe (one-hot + MinMax, SMOTE, RandomForest n_estimators=200, max_depth=10,
min_samples_split=5, min_samples_leaf=2, max_features='sqrt', bootstrap=False, decision at 0.5) is
trained here on the same training side and scored on the same test records, and both are printed side
by side and saved to bench/results/model_quality.json.

    .venv/bin/python bench/model_quality.py [--csv PATH] [--home DIR] [--reuse] [--split-seeds 1,2,3]

``--home DIR`` keeps the home (default: a temporary one); ``--reuse`` scores the champion already in
DIR instead of training (its training time is then not measured).

``--split-seeds`` measures how much the figures owe to the one test split: for each seed the champion's
recipe (family, treatment, hyperparameters; no new search) goes through the training code path again
(fit, Platt calibration and threshold on the held-out slice) on that seed's split, the original recipe
is fitted on the same training side, and both are scored on that seed's real test records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
RESULTS = ROOT / "bench" / "results" / "model_quality.json"
TARGETS = {"roc_auc": (">=", 0.842), "pr_auc": (">=", 0.350), "f1": (">=", 0.40),
           "brier": ("<=", 0.066), "train_seconds": ("<=", 600.0)}


def original_recipe(seed: int = 42):
    """The seed project's model: one-hot + MinMax, SMOTE, a 200-tree random forest."""
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    from heartrisk.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    return Pipeline([
        ("encode", ColumnTransformer([
            ("number", MinMaxScaler(), list(NUMERIC_FEATURES)),
            ("category", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ])),
        ("resample", SMOTE(random_state=seed)),
        ("classify", RandomForestClassifier(
            n_estimators=200, max_depth=10, min_samples_split=5, min_samples_leaf=2,
            max_features="sqrt", bootstrap=False, n_jobs=os.cpu_count(), random_state=seed)),
    ])


def pr_auc_interval(y: np.ndarray, p: np.ndarray, resamples: int = 200,
                    seed: int = 0) -> tuple[float, float]:
    """95 % stratified bootstrap interval of PR-AUC: how far the test split alone can move it."""
    from heartrisk.model.evaluation import average_precision

    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    values = []
    for _ in range(resamples):
        counts = np.zeros(len(y))
        np.add.at(counts, rng.choice(positives, len(positives)), 1)
        np.add.at(counts, rng.choice(negatives, len(negatives)), 1)
        values.append(average_precision(y, p, counts))
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def split_sensitivity(settings, ours, seeds: list[int]) -> list[dict[str, float]]:
    """The champion's recipe and the original recipe, refitted and tested on other seeded splits."""
    import pandas as pd

    from heartrisk.jobs.train import load_data
    from heartrisk.model.evaluation import scores
    from heartrisk.model.training import Candidate, TrainSettings, fit_candidate

    info = ours.model.info
    rows = []
    for seed in seeds:
        print(f"split seed {seed}: refitting {info['family']}/{info['treatment']} and the original recipe …",
              flush=True)
        ts = TrainSettings(seed=seed, include_synthetic=False)
        data = load_data(settings, ts)
        candidate = Candidate(info["family"], info["treatment"], dict(info["params"]), *[float("nan")] * 4,
                              search_seconds=0.0)
        model = fit_candidate(candidate, data, ts)
        mine = scores(data.y_test, model.risk(data.X_test, validate=False), model.threshold)
        X_train = pd.concat([data.X_fit, data.X_holdout], ignore_index=True)
        y_train = np.concatenate([data.y_fit, data.y_holdout])
        recipe = original_recipe(seed).fit(X_train, y_train)
        theirs = scores(data.y_test, recipe.predict_proba(data.X_test)[:, 1], 0.5)
        row = {"seed": seed, "test_positive_rate": float(data.y_test.mean()),
               **{f"heartrisk_{k}": float(mine[k]) for k in ("roc_auc", "pr_auc", "f1", "brier")},
               **{f"original_{k}": float(theirs[k]) for k in ("roc_auc", "pr_auc", "f1", "brier")}}
        rows.append(row)
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "seed"), flush=True)
    if rows:
        table = pd.DataFrame(rows).set_index("seed")
        print("\nacross split seeds (mean ± sd):")
        for column in table.columns:
            print(f"  {column:24} {table[column].mean():.4f} ± {table[column].std(ddof=1):.4f}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--split-seeds", default="",
                        help="comma-separated split seeds to repeat the comparison on (see above)")
    args = parser.parse_args()

    from heartrisk.config import Settings
    from heartrisk.jobs.ingest import ingest
    from heartrisk.jobs.train import TrainSettings, train
    from heartrisk.model import registry
    from heartrisk.model.evaluation import compare, scores
    from heartrisk.store.groups import HEART, open_group
    from heartrisk.store.view import FeatureView

    home = args.home or Path(tempfile.mkdtemp(prefix="heartrisk-bench-")) / "home"
    settings = Settings(home=home)
    if not open_group(settings, HEART).exists():
        print(f"ingesting {args.csv} into {home} …", flush=True)
        ingest(settings, args.csv)

    train_seconds = None
    if args.reuse and registry.champion_version(settings):
        print("reusing the champion already registered in this home", flush=True)
    else:
        print("training (full `heartrisk train` settings) …", flush=True)
        started = time.perf_counter()
        result = train(settings, TrainSettings())
        train_seconds = time.perf_counter() - started
        print(result.candidates.drop(columns="params").to_string(index=False))
        print(result.decision)
    ours = registry.champion_model(settings)

    split = FeatureView(open_group(settings, HEART)).train_test_split(include_synthetic=False)
    y_test = split.y_test.to_numpy()
    p_ours = ours.predict_proba(split.X_test)
    ours_scores = scores(y_test, p_ours, ours.threshold)

    print("training the original recipe (SMOTE + RandomForest) on the same training side …",
          flush=True)
    started = time.perf_counter()
    recipe = original_recipe().fit(split.X_train, split.y_train.to_numpy())
    recipe_seconds = time.perf_counter() - started
    p_recipe = recipe.predict_proba(split.X_test)[:, 1]
    recipe_scores = scores(y_test, p_recipe, 0.5)

    rows = [("ROC-AUC", "roc_auc"), ("PR-AUC", "pr_auc"), ("F1 (positive class)", "f1"),
            ("precision", "precision"), ("recall", "recall"), ("Brier", "brier"),
            ("mean predicted risk", "mean_probability"), ("threshold", "threshold")]
    print(f"\n{len(y_test):,} real test records (positive rate {y_test.mean():.4f}), "
          f"heart_v1@v{split.table_version}")
    print(f"{'metric':22} {'original recipe':>16} {'heartrisk v' + ours.version:>16} {'target':>10}")
    for label, key in rows:
        target = TARGETS.get(key)
        mark = ""
        if target:
            ok = ours_scores[key] >= target[1] if target[0] == ">=" else ours_scores[key] <= target[1]
            mark = f"{target[0]} {target[1]:.3f} {'ok' if ok else 'MISSED'}"
        print(f"{label:22} {recipe_scores[key]:16.4f} {ours_scores[key]:16.4f} {mark:>10}")
    if train_seconds is not None:
        ok = train_seconds <= TARGETS["train_seconds"][1]
        print(f"{'train time (s)':22} {recipe_seconds:16.1f} {train_seconds:16.1f} "
              f"<= 600 {'ok' if ok else 'MISSED'}")
    print(f"chosen model: {ours.family}/{ours.tags.get('treatment', '?')}")
    low, high = pr_auc_interval(y_test, p_ours)
    versus = compare(y_test, p_recipe, p_ours, resamples=200)
    print(f"PR-AUC of heartrisk, 95% bootstrap interval: [{low:.4f}, {high:.4f}]; "
          f"heartrisk - original: {versus.difference:+.4f} [{versus.low:+.4f}, {versus.high:+.4f}]")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "csv": str(args.csv), "cores": os.cpu_count(), "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
        "test_records": len(y_test), "test_positive_rate": float(y_test.mean()),
        "table_version": split.table_version,
        "heartrisk": {"version": ours.version, "family": ours.family,
                      "treatment": ours.tags.get("treatment"), "train_seconds": train_seconds,
                      **{k: float(v) for k, v in ours_scores.items()}},
        "original_recipe": {"train_seconds": recipe_seconds,
                            **{k: float(v) for k, v in recipe_scores.items()}},
        "heartrisk_pr_auc_interval_95": [low, high],
        "pr_auc_difference_vs_original": {"difference": versus.difference, "low": versus.low,
                                          "high": versus.high},
        "targets": {k: list(v) for k, v in TARGETS.items()},
        "split_seeds": split_sensitivity(settings, ours, [int(v) for v in args.split_seeds.split(",") if v]),
    }, indent=2))
    print(f"saved {RESULTS.relative_to(ROOT)}")
    missed = [k for k, (op, v) in TARGETS.items() if k in ours_scores and not (
        ours_scores[k] >= v if op == ">=" else ours_scores[k] <= v)]
    return 1 if missed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
