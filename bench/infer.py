"""Benchmark: `heartrisk infer` over the whole dev table, beside a plain predict_proba on the same rows.

Set-up (not timed): a temporary home, the dev file ingested, one quick model trained and promoted.
Then, in one child process (model loaded, imports done):

- baseline: ``champion.predict_proba`` on every row of ``heart`` (already in memory);
- ``run_infer`` over a window holding every row: read, skip already scored, score, write
  ``heart_predictions``, draw the monitoring images (drift, SHAP, performance) and log the MLflow run;
- ``run_infer`` again (nothing new: the idempotent no-op).

And ``heartrisk infer`` as a user runs it (a fresh process: interpreter, imports, model load) on a
copy of the home made before the first run. Targets (issue 6): under 15 s, at most 2x the plain call.
Saved to bench/results/infer.json.

    .venv/bin/python bench/infer.py [--csv PATH] [--families lightgbm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
HEARTRISK = Path(sys.executable).with_name("heartrisk")
ENV = {**os.environ, "TERM": "dumb", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}

SETUP = """
import sys
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.train import TrainSettings, train
settings = Settings(home=Path(sys.argv[1]))
ingest(settings, Path(sys.argv[2]))
result = train(settings, TrainSettings.for_quick(families=tuple(sys.argv[3].split(","))))
print(result.version, result.family)
"""

TIMED = """
import json, resource, sys, time
from datetime import timedelta
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.features import FEATURE_NAMES
from heartrisk.store.groups import HEART, open_group
from heartrisk.jobs.infer import run_infer
from heartrisk.model.registry import champion_model
settings = Settings(home=Path(sys.argv[1]))
model = champion_model(settings)
rows = open_group(settings, HEART).read()
newest = rows["event_time"].max().to_pydatetime()
X = rows[list(FEATURE_NAMES)]
model.predict_proba(X.head(100))  # warm-up: first-call costs are not the model's speed
start, cpu = time.perf_counter(), time.process_time()
model.predict_proba(X)
plain, plain_cpu = time.perf_counter() - start, time.process_time() - cpu
start, cpu = time.perf_counter(), time.process_time()
first = run_infer(settings, hours=24, now=newest + timedelta(hours=1))
infer, infer_cpu = time.perf_counter() - start, time.process_time() - cpu
start = time.perf_counter()
second = run_infer(settings, hours=24, now=newest + timedelta(hours=1, minutes=1))
again = time.perf_counter() - start
print(json.dumps({"rows": len(rows), "family": model.family, "plain_seconds": plain,
                  "infer_seconds": infer, "plain_cpu_seconds": plain_cpu,
                  "infer_cpu_seconds": infer_cpu, "inserted": first.inserted, "again_seconds": again,
                  "again_inserted": second.inserted, "artifacts": len(first.artifacts),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV)
    if done.returncode:
        sys.exit(f"step failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--families", default="lightgbm",
                        help="model families the quick training may pick from (comma-separated)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, cli_home = Path(tmp) / "home", Path(tmp) / "cli-home"
        print(f"set-up: ingest {args.csv.name} and train a quick {args.families} model …", flush=True)
        version, family = child(SETUP, str(home), str(args.csv), args.families).split()
        shutil.copytree(home, cli_home)
        load_before = os.getloadavg()[0]
        timed = json.loads(child(TIMED, str(home)))
        newest_hours = 48  # the dev rows are backdated a day by ingest: a 48 h window holds them all
        start = time.perf_counter()
        done = subprocess.run([str(HEARTRISK), "infer", "--hours", str(newest_hours)], env={
            **ENV, "HEARTRISK_HOME": str(cli_home)}, capture_output=True, text=True)
        cli = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"heartrisk infer failed:\n{done.stderr[-3000:]}")
    plain, infer = timed["plain_seconds"], timed["infer_seconds"]
    ratio = infer / plain
    print(f"champion v{version} ({family}), {timed['rows']:,} rows of heart in the window\n")
    print(f"{'':<62} {'wall':>9} {'CPU':>9}")
    print(f"{'baseline: predict_proba (model loaded, rows in memory)':<62} {plain:>7.2f} s "
          f"{timed['plain_cpu_seconds']:>7.2f} s")
    print(f"{'run_infer: read, score, write, monitoring images, MLflow':<62} {infer:>7.2f} s "
          f"{timed['infer_cpu_seconds']:>7.2f} s  {timed['inserted']:,} predictions, "
          f"{timed['artifacts']} files")
    print(f"{'run_infer again (nothing new)':<62} {timed['again_seconds']:>7.2f} s  "
          f"{timed['again_inserted']} predictions")
    print(f"{'`heartrisk infer` CLI (new process: imports, model load)':<62} {cli:>7.2f} s")
    print(f"peak memory of the in-process run: {timed['peak_mib']:.0f} MiB; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (on {os.cpu_count()} cores)")
    cpu_ratio = timed["infer_cpu_seconds"] / timed["plain_cpu_seconds"]
    print(f"\nrun_infer = {ratio:.2f}x predict_proba (CPU time: {cpu_ratio:.2f}x); target < 15 s: "
          f"{'met' if infer < 15 else 'MISSED'}; at most 2x: {'met' if ratio <= 2 else 'MISSED'}; "
          f"CLI < 15 s: {'met' if cli < 15 else 'MISSED'}")
    out = ROOT / "bench" / "results" / "infer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"csv": str(args.csv), "cores": os.cpu_count(), "model_version": version,
                               "family": family, **timed, "cli_seconds": cli, "ratio": ratio,
                               "load_average": [load_before, os.getloadavg()[0]]}, indent=2))


if __name__ == "__main__":
    main()
