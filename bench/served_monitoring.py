"""Benchmark: the serving profile's cost per request, and the CBPE check on real labelled records.

Set-up (not timed): a temporary home, a seeded 6,000-row sample of the dev file ingested, one quick
model trained and promoted (what the tests use).

1. Cost per request: ``ServingProfile.record`` for one person's answers, beside the baseline of
   scoring that person without explanations (``Scorer.score``, the cheapest prediction the API
   makes). Median of 20,000 calls each; then 4 threads recording at once (the lock contended).
2. CBPE on real records the model never saw: 5 seeds, each shuffles the dev file's other records;
   the first 50,000 are the labelled reference (the reliability table the estimate is recalibrated
   on: the size of a full model's test records), the next 30,000 are cut into 60 days of 500 and
   judged. Per metric, the share of days whose actual value fell inside the 95 % interval, the mean
   error (estimated - actual: a bias) and the interval's mean width (mean, min, max over seeds).
   Baselines in the same run, on the same days: the estimate as served before recalibration (the
   model's own risks), recalibrated on a smaller reference (5,000 of the 50,000) and on the quick
   model's own test records (the table its card carries: about 1,200 records), and labels drawn from
   the model's own risks (its assumption true).

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
from typing import Any

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
    from heartrisk.model.reliability import Reliability
    from heartrisk.monitoring.estimated import METRICS, validate
    from heartrisk.monitoring.served import card_reliability
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

        runs: dict[str, list[Any]] = {k: [] for k in ("recalibrated_on_50000_reference",
                                                       "recalibrated_on_5000_reference", "as_served",
                                                       "recalibrated_on_card_test_records",
                                                       "labels_drawn_from_risks")}
        card = card_reliability(model.card)
        rest = dev.drop(index=sample.index)
        frame = pd.DataFrame({BY_COLUMN[c].name: rest[c].to_numpy() for c in rest.columns})
        for name in NUMERIC_FEATURES:
            frame[name] = frame[name].astype(float)
        p_all = model.predict_proba(frame[list(FEATURE_NAMES)])
        y_all = (frame[LABEL.name] == "Yes").to_numpy()
        for seed in range(args.seeds):
            order = np.random.default_rng(100 + seed).permutation(len(p_all))
            ref, days = order[:50_000], order[50_000:80_000]
            p, y = p_all[days], y_all[days]
            reference = Reliability.build(y_all[ref], p_all[ref], model.threshold)
            drawn = np.random.default_rng(seed).random(len(p)) < p

            def check(labels: np.ndarray, table: Reliability | None, seed: int = seed,
                      p: np.ndarray = p) -> Any:
                return validate(labels, p, model.threshold, 500, seed=seed, draws=500, reliability=table)

            runs["recalibrated_on_50000_reference"].append(check(y, reference))
            runs["recalibrated_on_5000_reference"].append(
                check(y, Reliability.build(y_all[ref[:5000]], p_all[ref[:5000]], model.threshold)))
            runs["as_served"].append(check(y, None))
            runs["recalibrated_on_card_test_records"].append(check(y, card))
            runs["labels_drawn_from_risks"].append(check(drawn, None))

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": round(float(np.mean(values)), 3), "min": round(float(np.min(values)), 3),
                "max": round(float(np.max(values)), 3)}

    def summary(checks: list[Any]) -> dict[str, dict[str, dict[str, float]]]:
        return {m: {"coverage": spread([c.coverage[m] for c in checks]),
                    "mean_error": spread([c.mean_error[m] for c in checks]),
                    "mean_width": spread([c.mean_width[m] for c in checks])} for m in METRICS}

    report = {
        "load_average": os.getloadavg(),
        "cost_per_request_us": {"baseline_score_one_person_no_explanations": round(baseline_us, 1),
                                "profile_record": round(record_us, 2),
                                "record_share_of_baseline": round(record_us / baseline_us, 3)},
        "record_4_threads_per_s": round(contended_per_s),
        "flush": {"rows_written": written, "seconds": round(flush_s, 3)},
        "threshold": model.threshold,
        "card_reference_records": sum(card.count) if card else 0,
        "cbpe_60_days_of_500": {name: summary(checks) for name, checks in runs.items()},
        "seeds": args.seeds,
    }
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results" / "served_monitoring.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
