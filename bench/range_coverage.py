"""Benchmark: how often the uncertainty range (issue 17) holds the risk with the true answers.

Real held-out test records of a trained home (never used for training or for the stored survey
reference) get ``k`` answers blanked at random; the range is computed from the blanked answers and
the risk from the true ones (:func:`heartrisk.model.card.range_coverage`). Reported per ``k`` as mean,
min and max over masking seeds, beside the baseline of a range that ignores the Unknowns (the model's
calibration refits alone, as if every question had been answered), measured on the same records.

    .venv/bin/python bench/range_coverage.py [--home DIR | --rows 60000] [--records 300] [--seeds 3]

Without ``--home`` a quick LightGBM is trained on a stratified sample of the dev file first.
Prints the table and saves bench/results/range_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench helpers
from serve import DEFAULT_CSV, prepare_home

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "range_coverage.json"
UNKNOWNS = (1, 2, 3, 5, 8)


def calibration_only(model: Any, reference: Any, X: Any, per_count: int, seed: int) -> list[float]:
    """Coverage of the baseline range (calibration refits only, Unknowns imputed), per k."""
    from heartrisk.features import FEATURE_NAMES
    from heartrisk.model.estimator import raw_margin
    from heartrisk.model.reference import refit_risks

    rng = np.random.default_rng(seed)
    complete = X.dropna().reset_index(drop=True)
    truth = model.risk(complete, validate=False)
    out = []
    for k in UNKNOWNS:
        picked = rng.choice(len(complete), min(per_count, len(complete)), replace=False)
        blanked = complete.iloc[picked].copy()
        for row in range(len(picked)):
            for name in rng.choice(FEATURE_NAMES, k, replace=False):
                blanked.iloc[row, blanked.columns.get_loc(str(name))] = np.nan
        spread = refit_risks(reference.calibration_refits, raw_margin(model.pipeline, blanked))
        low, high = np.percentile(spread, 10, axis=0), np.percentile(spread, 90, axis=0)
        out.append(float(((low <= truth[picked]) & (truth[picked] <= high)).mean()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=60_000, help="sample ingested for the quick model")
    parser.add_argument("--home", type=Path, help="measure this home's champion instead")
    parser.add_argument("--records", type=int, default=300, help="test records per number of Unknowns")
    parser.add_argument("--seeds", type=int, default=3, help="masking seeds")
    args = parser.parse_args()

    from heartrisk.config import Settings
    from heartrisk.jobs.train import TrainSettings, load_data
    from heartrisk.model.card import range_coverage
    from heartrisk.model.registry import champion_model

    scratch = tempfile.TemporaryDirectory(prefix="bench-coverage-")
    home = args.home or Path(scratch.name) / "home"
    if args.home is None:
        print(f"preparing a home: {args.rows:,} sampled rows, quick LightGBM …", file=sys.stderr)
        prepare_home(home, args.csv, args.rows)
    settings = Settings(home=home)
    champion = champion_model(settings)
    reference = champion.reference
    if reference is None:
        sys.exit(f"version {champion.version} has no survey reference: train it again")
    X_test = load_data(settings, TrainSettings.for_quick()).X_test
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    runs = [range_coverage(champion.model, reference, X_test, args.records, UNKNOWNS, seed=s)
            for s in range(args.seeds)]
    baseline = [calibration_only(champion.model, reference, X_test, args.records, s)
                for s in range(args.seeds)]
    rows = []
    print(f"version {champion.version} ({champion.family}), {len(X_test):,} test records, "
          f"{args.records} per k, {args.seeds} masking seeds (mean [min, max])")
    for i, k in enumerate(UNKNOWNS):
        coverage = [r[i]["coverage"] for r in runs]
        width = [r[i]["mean_width"] for r in runs]
        base = [b[i] for b in baseline]
        rows.append({"unknowns": k, "coverage_mean": float(np.mean(coverage)), "coverage_min": min(coverage),
                     "coverage_max": max(coverage), "mean_width": float(np.mean(width)),
                     "baseline_coverage_mean": float(np.mean(base))})
        print(f"  {k} Unknown: inside the range {np.mean(coverage):.1%} [{min(coverage):.1%}, "
              f"{max(coverage):.1%}], mean width {100 * np.mean(width):.1f} points; baseline "
              f"(calibration only) {np.mean(base):.1%}")
    overall = float(np.mean([r["coverage_mean"] for r in rows]))
    print(f"overall {overall:.1%} (target >= 80 %); {time.perf_counter() - started:.0f} s; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "range_coverage", "command": "python bench/range_coverage.py " + " ".join(sys.argv[1:]),
        "version": champion.version, "family": champion.family, "test_records": len(X_test),
        "sampled_rows": None if args.home else args.rows, "records_per_k": args.records,
        "seeds": args.seeds, "rows": rows, "overall_coverage": overall,
        "load_average_before_after": [load_before, os.getloadavg()[0]],
    }, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
