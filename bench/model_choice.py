"""Benchmark: which configuration a training search keeps, the best CV score or the cheapest within one
standard error of it (issue 16), by test quality and by the CPU an explained prediction costs.

For each seed the same LightGBM search (the champion family; class weights, the treatment it won with;
the default 4 configurations x 3 folds on 60,000 rows) runs with ``select="best"`` (the baseline: what
training kept before) and ``select="one_se"`` (the default now), once per rule with the same seed: the
same configurations and folds, so the same CV results. Each kept configuration is refitted on the whole
training side, calibrated and measured on the same real test records. Per-row CPU is the median
``time.thread_time`` of one-row ``Scorer.score`` calls with explanations and of the risk in context
(``Scorer.contexts``), as the API makes them. Prints mean, min and max over seeds and saves
bench/results/model_choice.json.

    .venv/bin/python bench/model_choice.py [--csv PATH] [--seeds 3] [--repeats 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.bench import median_us, save_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
RESULTS = ROOT / "bench" / "results" / "model_choice.json"
RULES = ("best", "one_se")
FIGURES = ("trees", "leaves", "cv_pr_auc", "test_roc_auc", "test_pr_auc", "test_brier", "explain_us",
           "context_us")


def measure(settings: Any, seed: int, rule: str, repeats: int) -> dict[str, Any]:
    """One search, refit and measurement of the configuration ``rule`` keeps."""
    from heartrisk.jobs.train import TrainSettings, load_data
    from heartrisk.model.evaluation import scores
    from heartrisk.model.reference import build_reference
    from heartrisk.model.registry import LoadedModel
    from heartrisk.model.training import fit_candidate, search
    from heartrisk.web.risk_check.scorer import Scorer, random_rows

    ts = TrainSettings(families=("lightgbm",), treatments=("class_weight",), seed=seed, select=rule)
    data = load_data(settings, ts)
    candidate = search(data, ts)[0]
    model = fit_candidate(candidate, data, ts)
    test = scores(data.y_test, model.risk(data.X_test, validate=False), model.threshold)
    model.reference = build_reference(model, data.X_fit, data.X_holdout, data.y_holdout, seed=seed).to_dict()
    loaded = LoadedModel("bench", model.threshold, model.base_rate, None, "", {}, "", 0, model)  # type: ignore[arg-type]
    scorer = Scorer(loaded)
    people = [[row] for row in random_rows(repeats, seed=5)]
    booster = model.pipeline.named_steps["classify"].booster_
    return {"seed": seed, "rule": rule, "params": {k: (v.item() if hasattr(v, "item") else v)
                                                   for k, v in candidate.params.items()},
            "trees": booster.num_trees(), "leaves": int(booster.num_trees() and sum(
                t["num_leaves"] for t in booster.dump_model()["tree_info"])),
            "cv_pr_auc": candidate.cv_pr_auc, "cv_best_pr_auc": candidate.cv_best_pr_auc,
            "test_roc_auc": test["roc_auc"], "test_pr_auc": test["pr_auc"], "test_brier": test["brier"],
            "explain_us": median_us(lambda rows: scorer.score(rows, True), people),
            "context_us": median_us(scorer.contexts, people)}


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {k: {"mean": statistics.fmean(r[k] for r in rows), "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in FIGURES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, default=3, help="search seeds 0..N-1")
    parser.add_argument("--repeats", type=int, default=300, help="one-row calls timed per figure")
    args = parser.parse_args()

    from heartrisk.config import Settings
    from heartrisk.jobs.ingest import ingest

    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        settings = Settings(home=Path(tmp) / "home", csv=args.csv)
        ingest(settings)
        for seed in range(args.seeds):
            for rule in RULES:
                row = measure(settings, seed, rule, args.repeats)
                rows.append(row)
                print(f"seed {seed} {rule:6}: {row['trees']} trees, {row['leaves']:,} leaves; CV PR-AUC "
                      f"{row['cv_pr_auc']:.4f} (best {row['cv_best_pr_auc']:.4f}); test ROC-AUC "
                      f"{row['test_roc_auc']:.4f}, PR-AUC {row['test_pr_auc']:.4f}, Brier "
                      f"{row['test_brier']:.5f}; one row explained {row['explain_us']:.0f} us, in "
                      f"context {row['context_us']:.0f} us CPU", flush=True)
    load_after = os.getloadavg()
    summaries = {rule: summary([r for r in rows if r["rule"] == rule]) for rule in RULES}
    for rule, figures in summaries.items():
        print(f"{rule} ({'baseline' if rule == 'best' else 'default'}), mean [min, max] over "
              f"{args.seeds} seeds:")
        for key, s in figures.items():
            print(f"  {key:>13}: {s['mean']:10.4f} [{s['min']:.4f}, {s['max']:.4f}]")
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, "
          f"{os.cpu_count()} cores")
    save_results(RESULTS, "model_choice", load_before, load_after, seeds=args.seeds, repeats=args.repeats,
                 runs=rows, summary=summaries)
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
