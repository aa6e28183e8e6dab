"""Benchmark: do synthetic rows help the classifier? (issue 3: "measure whether they help").

The champion's recipe (family, imbalance treatment, hyperparameters) is refitted on the real training
side plus N rows from the champion synthesizer, for several N. Everything else is held still: the same
real records to fit on, the same real held-out slice for Platt calibration and the threshold, the same
real test records. Each N is compared with N = 0 by a paired bootstrap of the test PR-AUC difference,
so a change smaller than the noise is reported as no change.

Volumes: ``DEFAULT_SYNTHETIC`` (100) rows a day means about 3,000 a month and 36,500 a year; the
larger volumes show what happens if an operator asks for many more (``heartrisk daily --synthetic N``).
``--positives N`` adds a run with N synthetic rows that all have heart disease: CTGAN used as an
oversampler of the rare class, in place of SMOTE.

    .venv/bin/python bench/synthetic_value.py --home DIR [--volumes 0,3000,36500,100000,195000]

DIR must hold the ingested dev data, a champion classifier (`heartrisk train`) and a champion
synthesizer (`heartrisk synth train`). Saves bench/results/synthetic_value.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "synthetic_value.json"


def fit_and_score(recipe: dict[str, Any], data: Any, extra: pd.DataFrame | None) -> tuple[np.ndarray, dict]:
    """Refit ``recipe`` on the real fit rows plus ``extra``; calibrate on the real holdout; test."""
    from heartrisk.features import FEATURE_NAMES, LABEL
    from heartrisk.model.estimator import Platt, build_pipeline, model_input, raw_margin, sigmoid
    from heartrisk.model.evaluation import best_f1_threshold, scores

    X, y = data.X_fit, data.y_fit
    if extra is not None and len(extra):
        X = pd.concat([X, model_input(extra[list(FEATURE_NAMES)], validate=False)], ignore_index=True)
        y = np.concatenate([y, extra[LABEL.name].astype(bool).to_numpy()])
    pipeline = build_pipeline(recipe["family"], recipe["treatment"], threads=os.cpu_count() or 1)
    pipeline.set_params(**recipe["params"])
    started = time.perf_counter()
    pipeline.fit(X, y)
    seconds = time.perf_counter() - started
    calibration = Platt.fit(raw_margin(pipeline, data.X_holdout), data.y_holdout)
    threshold = best_f1_threshold(data.y_holdout, sigmoid(calibration(raw_margin(pipeline, data.X_holdout))))
    p_test = sigmoid(calibration(raw_margin(pipeline, data.X_test)))
    result = scores(data.y_test, p_test, threshold)
    result.update(fit_seconds=seconds, train_rows=len(y), train_positive_rate=float(np.mean(y)))
    return p_test, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--volumes", default="0,3000,36500,100000,195000",
                        help="synthetic rows to add, comma-separated (0 = real rows only)")
    parser.add_argument("--positives", type=int, default=30_000,
                        help="an extra run adding this many positive-only synthetic rows (0: skip)")
    parser.add_argument("--bootstrap", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))

    from heartrisk.config import Settings
    from heartrisk.jobs.train import TrainSettings, load_data
    from heartrisk.model.evaluation import compare
    from heartrisk.model.registry import champion_model
    from heartrisk.synth.registry import load_synthesizer

    settings = Settings(home=args.home)
    champion = champion_model(settings)
    recipe = {k: champion.model.info[k] for k in ("family", "treatment", "params")}
    synthesizer = load_synthesizer(settings)
    data = load_data(settings, TrainSettings(include_synthetic=False))
    print(f"recipe: v{champion.version} {recipe['family']}/{recipe['treatment']} {recipe['params']}")
    print(f"synthesizer v{synthesizer.version}; real fit rows {len(data.y_fit):,}, holdout "
          f"{len(data.y_holdout):,}, test {len(data.y_test):,} (all real)\n")

    runs: list[tuple[str, pd.DataFrame | None]] = []
    for volume in (int(v) for v in args.volumes.split(",")):
        runs.append((f"+{volume:,} synthetic", None if volume == 0 else
                     synthesizer.synthesizer.sample(volume, seed=volume).frame))
    if args.positives:
        runs.append((f"+{args.positives:,} synthetic positives only",
                     synthesizer.synthesizer.sample(args.positives, positive_rate=1.0, seed=7).frame))

    baseline: np.ndarray | None = None
    table = []
    for name, extra in runs:
        p_test, result = fit_and_score(recipe, data, extra)
        row = {"run": name, **{k: round(float(v), 4) for k, v in result.items()
                                if k in ("roc_auc", "pr_auc", "brier", "f1", "fit_seconds",
                                         "train_positive_rate")}, "train_rows": result["train_rows"]}
        if baseline is None:
            baseline = p_test
        else:
            c = compare(data.y_test, baseline, p_test, resamples=args.bootstrap)
            row.update(pr_auc_difference=round(c.difference, 4), low=round(c.low, 4), high=round(c.high, 4),
                       verdict=("helps" if c.low > 0 else "hurts" if c.high < 0 else "no measurable change"))
        table.append(row)
        print(json.dumps(row), flush=True)

    print()
    print(pd.DataFrame(table).to_string(index=False))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "home": str(args.home), "recipe": recipe, "classifier_version": champion.version,
        "synthesizer_version": synthesizer.version, "real_fit_rows": len(data.y_fit),
        "test_records": len(data.y_test), "load_average_1min": os.getloadavg()[0], "runs": table,
    }, indent=2, default=str) + "\n")
    print(f"\nsaved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
