"""Benchmark: one person's explanation, LightGBM's own TreeSHAP against the compiled one (issue 16).

Fits LightGBM through the project's pipeline on a sample of the dev file at three sizes from the search
space (the largest, a middle and a small one), then times, on the same encoded rows and in the same run:

- ``pred_contrib``: LightGBM's ``booster.predict(row, pred_contrib=True, num_threads=1)`` (the baseline:
  what the server did before);
- ``compiled``: :mod:`heartrisk.model.tree_shap` (what it does now: trees of at most 10 splits from their
  decision tables, larger ones by Linear TreeSHAP), checked equal to the baseline;
- ``linear``: the same trees all by Linear TreeSHAP (what it did before the decision tables);
- ``scorer``: a whole one-row ``Scorer.score`` with explanations (encoding, margin, SHAP, grouping,
  calibration), as the API calls it.

Per-row figures are medians of the CPU time (``time.thread_time``) of single-row calls (a person's
request is one row): CPU time is what the server pays, and unlike wall time it does not count waiting
for other processes; they still move it (shared caches), so the load average is printed beside.

    .venv/bin/python bench/explain.py [--csv PATH] [--rows 60000] [--repeats 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.bench import median_us, save_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
RESULTS = ROOT / "bench" / "results" / "explain.json"
#: (trees, leaves): the search space's largest, a middle and a small LightGBM (model/estimator.py), and
#: the shape the 1-SE rule chose for the full champion (301 x 10).
SIZES = ((499, 47), (300, 28), (150, 8), (301, 10))


def fit(csv: Path, rows: int, trees: int, leaves: int) -> Any:
    import pandas as pd

    from heartrisk.features import FEATURE_NAMES, LABEL
    from heartrisk.model.calibration import Platt
    from heartrisk.model.estimator import RiskModel, build_pipeline, model_input, raw_margin
    from heartrisk.sources.kaggle import read_kaggle_csv

    frame = read_kaggle_csv(csv).frame.sample(rows, random_state=7)
    X = model_input(frame[list(FEATURE_NAMES)], validate=False)
    y = frame[LABEL.name].astype(int).to_numpy()
    pipeline = build_pipeline("lightgbm", "none", threads=os.cpu_count() or 1)
    pipeline.set_params(classify__n_estimators=trees, classify__num_leaves=leaves,
                        classify__min_child_samples=20, classify__learning_rate=0.03)
    cut = int(0.85 * len(y))
    pipeline.fit(X.iloc[:cut], y[:cut])
    model = RiskModel(pipeline, Platt.fit(raw_margin(pipeline, X.iloc[cut:]), y[cut:]), 0.2, float(y.mean()))
    return model, pd.DataFrame(X.iloc[cut:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()

    from heartrisk.model.explain import compiled_trees
    from heartrisk.model.registry import LoadedModel
    from heartrisk.web.risk_check.scorer import Scorer, random_rows

    load_before = os.getloadavg()
    cells = []
    for trees, leaves in SIZES:
        model, held = fit(args.csv, args.rows, trees, leaves)
        booster = model.pipeline.named_steps["classify"].booster_
        started = time.perf_counter()
        compiled = compiled_trees(model)
        compile_s = time.perf_counter() - started
        assert compiled is not None, "the booster did not compile"
        Xt = model.encoded(held.iloc[: args.repeats], validate=False)
        one_rows = [Xt[i: i + 1] for i in range(len(Xt))]
        gap = np.abs(compiled.contributions(Xt)[0] - booster.predict(Xt, pred_contrib=True)[:, :-1]).max()
        native = median_us(lambda r, b=booster: b.predict(r, pred_contrib=True, num_threads=1), one_rows)
        fast = median_us(compiled.contributions, one_rows)
        linear = median_us(compiled.without_tables().contributions, one_rows)
        loaded = LoadedModel("bench", model.threshold, model.base_rate, None, "", {}, "", 0, model)  # type: ignore[arg-type]
        scorer = Scorer(loaded)
        answers = [[row] for row in random_rows(args.repeats, seed=5)]
        whole = median_us(lambda rows, s=scorer: s.score(rows, True), answers)
        risk_only = median_us(lambda rows, s=scorer: s.score(rows, False), answers)
        batch_native = median_us(lambda X, b=booster: b.predict(X, pred_contrib=True, num_threads=1),
                                 [Xt] * 5)
        batch_fast = median_us(compiled.contributions, [Xt] * 5)
        depth = compiled.max_depth
        leaves_total = int((compiled.left < 0).sum())
        cell = {"trees": trees, "num_leaves": leaves, "max_depth": depth, "leaves": leaves_total,
                "compile_s": compile_s, "max_abs_difference": float(gap),
                "pred_contrib_us_per_row": native, "compiled_us_per_row": fast,
                "linear_us_per_row": linear, "tabled_trees": compiled.tables.trees,
                "speedup": native / fast, "scorer_with_explanation_us": whole,
                "scorer_risk_only_us": risk_only,
                f"batch_{len(Xt)}_pred_contrib_us_per_row": batch_native / len(Xt),
                f"batch_{len(Xt)}_compiled_us_per_row": batch_fast / len(Xt)}
        cells.append(cell)
        print(f"LightGBM {trees} trees x {leaves} leaves (depth {depth}, {leaves_total} leaves, compiled "
              f"and checked in {compile_s:.2f} s): one row "
              f"pred_contrib {native:7.1f} us (baseline) vs compiled {fast:6.1f} us = {native / fast:4.1f}x "
              f"(all by Linear TreeSHAP {linear:6.1f} us; {compiled.tables.trees} trees tabled); "
              f"scorer with explanation {whole:6.1f} us, risk only {risk_only:5.1f} us; max difference "
              f"{gap:.1e}", flush=True)
    load_after = os.getloadavg()
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
          f"{os.cpu_count()} cores")
    save_results(RESULTS, "explain", load_before, load_after, rows=args.rows, repeats=args.repeats,
                 cells=cells)
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
