"""Benchmark: the CTGAN synthesizer on the dev data: epoch time, sampling rate, quality, TSTR vs TRTR.

Set-up (not timed): a temporary home with the dev file ingested. Then:

1. seconds per epoch at 20,000 and 50,000 rows (median of a few epochs after the data transformer is
   fitted), with one torch thread (our setting) and, as the baseline, torch's default thread count;
2. sampling rate: valid, rate-matched rows per second (repair + conditional draws) next to CTGAN's
   raw ``sample`` (the baseline);
3. the default ``SynthSettings`` fit through the real pipeline (``train_synthesizer``: snapshot choice,
   quality on held-out real rows, registration), with its figures beside two baselines measured in
   the same run: TRTR (the same classifier trained on the real fit rows) for TSTR, and the raw CTGAN
   output (no repair, no rate matching) for the SDMetrics quality;
4. the privacy report of that fit (issue 14, :mod:`heartrisk.synth.privacy`) beside its real-vs-real
   baselines, repeated with three report seeds on the same fit (mean, min, max: the samples the
   report draws are the noise here), and the time the report adds as a share of the fit's time.

Targets: quality >= 0.85 and TSTR ROC-AUC within 0.03 of TRTR (issue 4); the privacy gate passed and
the report under 10 % of the fit's time (issue 14), for the default settings.
Saved to bench/results/synth.json. Timings are wall-clock on a shared machine: say when it was busy.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/synth.py [--csv PATH] [--quick] [--epochs N]
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/synth.py --home HOME   # reuse a default fit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/LightGBM load OpenMP (a script)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
RESULTS = ROOT / "bench" / "results" / "synth.json"


def epoch_seconds(settings, rows: int, threads: int, epochs: int) -> dict[str, float]:
    """Median seconds per epoch of a fit on ``rows`` real rows (scoring only at the end)."""
    from heartrisk.jobs.synth_train import real_rows
    from heartrisk.synth.fit import SynthSettings, fit_synthesizer

    knobs = SynthSettings(rows=rows, epochs=epochs, score_every=10_000, score_rows=500, eval_rows=500,
                          torch_threads=threads)
    data = real_rows(settings, knobs)
    fit = fit_synthesizer(data.fit, data.selection, knobs)
    return {"rows": len(data.fit), "threads": threads, "epochs": epochs,
            "seconds_per_epoch": round(fit.seconds_per_epoch, 3),
            "prepare_seconds": round(fit.prepare_seconds, 1)}


def sampling_rate(synth, rows: int) -> dict[str, float]:
    started = time.perf_counter()
    synth.sample_raw(rows)
    raw = time.perf_counter() - started
    started = time.perf_counter()
    sample = synth.sample(rows, seed=1)
    valid = time.perf_counter() - started
    return {"rows": rows, "raw_rows_per_s": round(rows / raw), "valid_rows_per_s": round(rows / valid),
            "draws_per_valid_row": round(sample.drawn / rows, 3)}


def raw_quality(synth, evaluation) -> dict[str, float]:
    """The baseline: CTGAN's own output, unrepaired and at its own positive rate."""
    from heartrisk.features import LABEL, NUMERIC_FEATURES
    from heartrisk.synth.quality import quality_report

    raw = synth.sample_raw(len(evaluation))
    for name in NUMERIC_FEATURES:
        raw[name] = raw[name].astype(float)
    raw[LABEL.name] = raw[LABEL.name].eq("Yes")
    return {k: round(v, 4) for k, v in quality_report(evaluation, raw).items()}


def conditional_tstr(synth, fit_rows, evaluation) -> float:
    """A baseline: TSTR when the rate is matched by CTGAN's own conditioning on the label."""
    import pandas as pd

    from heartrisk.features import LABEL
    from heartrisk.synth.quality import holdout_roc_auc
    from heartrisk.synth.repair import repair

    wanted = {True: round(len(fit_rows) * synth.info.positive_rate)}
    wanted[False] = len(fit_rows) - wanted[True]
    parts = []
    for label, count in wanted.items():
        rows = pd.DataFrame()
        while len(rows) < count:
            fixed = repair(synth.sample_raw(2 * count, label), synth.info.bounds, synth.info.precision)
            rows = pd.concat([rows, fixed.frame[fixed.frame[LABEL.name] == label]], ignore_index=True)
        parts.append(rows.iloc[:count])
    return holdout_roc_auc(pd.concat(parts, ignore_index=True), evaluation)


def measure_registered(settings):
    """Figures of the champion of a home where `heartrisk synth train` ran with the default settings:
    its quality measured again here on its own held-out rows, its fit time and trace from its run."""
    from heartrisk.jobs.synth_train import real_rows
    from heartrisk.synth.fit import SynthSettings
    from heartrisk.synth.quality import measure_quality
    from heartrisk.synth.registry import load_synthesizer
    from heartrisk.tracking import client as registry_client

    loaded = load_synthesizer(settings)
    synth = loaded.synthesizer
    knobs = SynthSettings(**synth.info.settings)
    rows = real_rows(settings, knobs)
    m = measure_quality(synth, rows.fit, rows.evaluation, seed=knobs.seed).metrics
    client = registry_client(settings)
    run = client.get_run(loaded.run_id)
    history = {k: {h.step: h.value for h in client.get_metric_history(loaded.run_id, k)}
               for k in ("selection_score", "selection_quality", "selection_tstr_roc_auc")}
    trace = [{"epoch": e, "score": v, "quality": history["selection_quality"].get(e),
              "tstr": history["selection_tstr_roc_auc"].get(e)}
             for e, v in sorted(history["selection_score"].items())]
    fit = {"source": f"`heartrisk synth train` in {settings.home}, version {loaded.version}",
           "wall_seconds": run.data.metrics.get("fit_seconds", float("nan")),
           "seconds_per_epoch_during_fit": run.data.metrics.get("seconds_per_epoch"), "trace": trace}
    return fit, synth, rows, m


#: The privacy figures the bench prints, each beside its real-vs-real baseline.
PRIVACY_PAIRS = (("membership attack AUC", "privacy_membership_auc", "privacy_membership_auc_real"),
                 ("DCR overfitting protection", "privacy_dcr_overfitting_protection",
                  "privacy_dcr_overfitting_protection_real"),
                 ("DCR baseline protection", "privacy_dcr_baseline_protection",
                  "privacy_dcr_baseline_protection_real"),
                 ("exact copies of a fit row", "privacy_exact_copy_share", "privacy_exact_copy_share_real"),
                 ("diagnosis disclosure protection (fit vs held-out rows)", "privacy_disclosure_protection",
                  "privacy_disclosure_protection_holdout"))


def privacy_over_seeds(synth, rows, quick: bool, seeds=(0, 1, 2)) -> dict[str, object]:
    """The fit's privacy report with three report seeds (each draws its own synthetic and attack
    samples): mean, min and max of every figure, and whether the gate passed each time."""
    from heartrisk.jobs.synth_train import privacy_report
    from heartrisk.synth.gate import privacy_verdict
    from heartrisk.synth.privacy import PrivacySettings

    reports, verdicts = [], []
    for seed in seeds:
        knobs = PrivacySettings.quick(seed=seed) if quick else PrivacySettings(seed=seed)
        report = privacy_report(synth, rows, knobs, seed=seed)
        reports.append(report.metrics)
        verdicts.append(privacy_verdict(report.metrics, knobs.limits).passed)
    spread = {key: {"mean": round(sum(r[key] for r in reports) / len(reports), 4),
                    "min": round(min(r[key] for r in reports), 4),
                    "max": round(max(r[key] for r in reports), 4)} for key in reports[0]}
    return {"seeds": list(seeds), "figures": spread, "gate_passed": verdicts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the figures")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the default fit (default 200)")
    parser.add_argument("--timing-epochs", type=int, default=4)
    parser.add_argument("--home", type=Path, default=None, help=(
        "a home whose champion synthesizer was fitted by `heartrisk synth train` (default settings): "
        "measure it instead of fitting again (the epoch timings still run)"))
    args = parser.parse_args()
    if not args.csv.is_file():
        print(f"dev data not found at {args.csv}; pass --csv or set HEARTRISK_CSV", file=sys.stderr)
        return 2

    import torch

    from heartrisk.config import Settings
    from heartrisk.jobs.ingest import ingest
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.synth.fit import SynthSettings

    default_threads = torch.get_num_threads()  # before a fit sets its own count
    results: dict[str, object] = {"csv": str(args.csv), "cpus": os.cpu_count(),
                                  "load_average_at_start": os.getloadavg()[0],
                                  "torch_default_threads": default_threads}
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        if args.home:
            settings = Settings(home=args.home)
        else:
            settings = Settings(home=Path(tmp) / "home")
            ingest(settings, args.csv)

        sizes = (2_000, 5_000) if args.quick else (20_000, 50_000)
        epochs = 2 if args.quick else args.timing_epochs
        timings = [epoch_seconds(settings, n, 1, epochs) for n in sizes]
        timings.append(epoch_seconds(settings, sizes[0], default_threads, epochs))
        results["epoch_timing"] = timings
        for t in timings:
            print(f"epoch time: {t['rows']:>6,} rows, {t['threads']} torch thread(s): "
                  f"{t['seconds_per_epoch']:.2f} s/epoch (data transformer {t['prepare_seconds']:.0f} s)")

        if args.home:
            fit, synth, rows, m = measure_registered(settings)
        else:
            knobs = SynthSettings.quick() if args.quick else SynthSettings(
                **({"epochs": args.epochs} if args.epochs else {}))
            started = time.perf_counter()
            fitted = train_synthesizer(settings, knobs, show_progress=sys.stderr.isatty())
            synth, rows, m = fitted.fit.synthesizer, fitted.rows, fitted.metrics
            fit = {"source": "fitted by this run", "wall_seconds": round(time.perf_counter() - started, 1),
                   "trace": [{"epoch": r.epoch, "score": r.score, "quality": r.quality, "tstr": r.tstr}
                             for r in fitted.fit.history if r.score is not None]}
        fit.update(settings=synth.info.settings, best_epoch=synth.info.best_epoch,
                   metrics={k: round(v, 4) for k, v in m.items()})
        results["default_fit"] = fit
        fit_rows, evaluation = rows.fit, rows.evaluation
        results["raw_ctgan_quality"] = raw_quality(synth, evaluation)
        results["tstr_with_ctgan_conditioning"] = round(conditional_tstr(synth, fit_rows, evaluation), 4)
        results["sampling"] = sampling_rate(synth, 2_000 if args.quick else 20_000)
        results["privacy"] = privacy_over_seeds(synth, rows, args.quick)

    base = results["raw_ctgan_quality"]
    s = results["sampling"]
    trace = fit["trace"]
    print(f"default fit ({fit['source']}): {synth.info.fit_rows:,} rows x {synth.info.epochs} epochs in "
          f"{fit['wall_seconds']:.0f} s; best snapshot: epoch {synth.info.best_epoch} (selection score "
          f"{synth.info.best_score:.3f}, scores by epoch: "
          + ", ".join(f"{t['epoch']}: {t['score']:.3f}" for t in trace) + ")")
    print(f"quality (SDMetrics, {int(m['eval_rows']):,} held-out real rows): {m['quality_overall']:.3f} "
          f"(shapes {m['quality_column_shapes']:.3f}, pairs {m['quality_column_pair_trends']:.3f}); "
          f"baseline raw CTGAN output {base['overall']:.3f}; target >= 0.85")
    print(f"ROC-AUC: TSTR {m['tstr_roc_auc']:.3f} vs TRTR {m['trtr_roc_auc']:.3f} (gap "
          f"{m['tstr_gap']:+.3f}; target <= 0.03); baseline TSTR with CTGAN's own label conditioning "
          f"{results['tstr_with_ctgan_conditioning']:.3f}")
    print(f"positive rate: real {m['positive_rate_real']:.3f}, raw CTGAN "
          f"{m['positive_rate_synthetic_raw']:.3f}, matched {m['positive_rate_synthetic']:.3f}; "
          f"raw rows repaired {m['repaired_share']:.1%} "
          f"(out of range {m['out_of_range_share']:.1%}), rejected {m['rejected_share']:.1%}")
    print(f"sampling: {s['valid_rows_per_s']:,} valid rate-matched rows/s vs raw CTGAN "
          f"{s['raw_rows_per_s']:,} rows/s ({s['draws_per_valid_row']} draws per valid row)")
    privacy = results["privacy"]["figures"]
    print(f"privacy (report seeds {results['privacy']['seeds']}: mean [min, max]; real vs real beside it):")
    for what, key, baseline in PRIVACY_PAIRS:
        f, b = privacy[key], privacy[baseline]
        print(f"  {what}: {f['mean']:.3f} [{f['min']:.3f}, {f['max']:.3f}] vs real "
              f"{b['mean']:.3f} [{b['min']:.3f}, {b['max']:.3f}]")
    report_seconds = privacy["privacy_seconds"]["mean"]
    fit_seconds = float(m.get("fit_seconds", fit["wall_seconds"]))  # the fit alone, not the whole job
    share = report_seconds / fit_seconds
    results["privacy"]["share_of_fit_time"] = round(share, 4)
    print(f"  gate passed: {results['privacy']['gate_passed']}; the report takes {report_seconds:.1f} s, "
          f"{share:.1%} of the fit's {fit_seconds:.0f} s (target < 10 %)")
    results["load_average_at_end"] = os.getloadavg()[0]
    results["targets_met"] = {"quality": m["quality_overall"] >= 0.85, "tstr": m["tstr_gap"] <= 0.03,
                              "privacy_gate": all(results["privacy"]["gate_passed"]),
                              "privacy_under_10_percent": share < 0.10}
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, default=float))
        print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
