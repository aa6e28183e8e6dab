"""Benchmark: the serving profile's cost per request, and the CBPE check on real labelled records.

Set-up (not timed): a temporary home, a seeded 6,000-row sample of the dev file ingested, one quick
model trained and promoted (what the tests use).

1. Cost per request: ``ServingProfile.record`` for one person's answers, beside the baseline of
   scoring that person without explanations (``Scorer.score``, the cheapest prediction the API
   makes). Median of 20,000 calls each; then 4 threads recording at once (the lock contended).
2. CBPE on real records: 5 seeds, each 30,000 other records of the dev file cut into 60 days of 500;
   per metric, the share of days whose actual value fell inside the 95 % interval (mean, min, max over
   seeds). Baseline in the same run: the same records with labels drawn from the model's own risks
   (calibrated by construction), i.e. the coverage the estimator gives when its assumption holds.

Saved to bench/results/served_monitoring.json.

    .venv/bin/python bench/served_monitoring.py [--csv PATH] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")


def per_call_us(call, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    from heartrisk.config import Settings
    from heartrisk.features import BY_COLUMN, FEATURE_NAMES, LABEL, NUMERIC_FEATURES
    from heartrisk.jobs.ingest import ingest
    from heartrisk.jobs.train import TrainSettings, train
    from heartrisk.model.registry import champion_model
    from heartrisk.monitoring.estimated import validate
    from heartrisk.monitoring.served_profile import ServingProfile
    from heartrisk.web.risk_check.scorer import Scorer, random_rows

    dev = pd.read_csv(args.csv, dtype=str, keep_default_na=False)
    sample = dev.groupby("HeartDisease", group_keys=False).sample(frac=6000 / len(dev), random_state=7)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        csv = Path(tmp) / "sample.csv"
        sample.to_csv(csv, index=False)
        ingest(settings, csv)
        train(settings, TrainSettings.for_quick())
        model = champion_model(settings)
        scorer = Scorer(model)
        rows = random_rows(1000, seed=3)
        profile = ServingProfile(settings, replica="bench", flush_seconds=0, today=lambda: date(2026, 1, 1))
        i = iter(range(10**9))
        baseline_us = per_call_us(lambda: scorer.score([rows[next(i) % 1000]], False), 20_000)
        record_us = per_call_us(lambda: profile.record(rows[next(i) % 1000], 0.12, False, "1"), 20_000)

        def hammer(n: int) -> None:
            for k in range(n):
                profile.record(rows[k % 1000], 0.12, False, "1")

        threads = [threading.Thread(target=hammer, args=(50_000,)) for _ in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        contended_per_s = 200_000 / (time.perf_counter() - started)
        started = time.perf_counter()
        written = profile.flush()
        flush_s = time.perf_counter() - started

        results: dict[str, list[dict[str, float]]] = {"real": [], "calibrated_by_construction": []}
        for seed in range(args.seeds):
            records = dev.drop(index=sample.index).sample(n=30_000, random_state=100 + seed)
            frame = pd.DataFrame({BY_COLUMN[c].name: records[c].to_numpy() for c in records.columns})
            for name in NUMERIC_FEATURES:
                frame[name] = frame[name].astype(float)
            p = model.predict_proba(frame[list(FEATURE_NAMES)])
            y = (frame[LABEL.name] == "Yes").to_numpy()
            drawn = np.random.default_rng(seed).random(len(p)) < p
            results["real"].append(validate(y, p, model.threshold, 500, seed=seed, draws=500).coverage)
            results["calibrated_by_construction"].append(
                validate(drawn, p, model.threshold, 500, seed=seed, draws=500).coverage)

    def spread(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {m: {"mean": round(float(np.mean([r[m] for r in runs])), 3),
                    "min": round(float(np.min([r[m] for r in runs])), 3),
                    "max": round(float(np.max([r[m] for r in runs])), 3)} for m in runs[0]}

    report = {
        "load_average": os.getloadavg(),
        "cost_per_request_us": {"baseline_score_one_person_no_explanations": round(baseline_us, 1),
                                "profile_record": round(record_us, 2),
                                "record_share_of_baseline": round(record_us / baseline_us, 3)},
        "record_4_threads_per_s": round(contended_per_s),
        "flush": {"rows_written": written, "seconds": round(flush_s, 3)},
        "cbpe_coverage_60_days_of_500": {"real_records": spread(results["real"]),
                                         "baseline_labels_drawn_from_risks":
                                             spread(results["calibrated_by_construction"])},
        "seeds": args.seeds,
    }
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results" / "served_monitoring.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
