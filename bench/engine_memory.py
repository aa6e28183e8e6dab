"""Benchmark: where batch inference's memory goes, phase by phase, as the table grows.

``bench/scale.py`` gives one peak per run; this one says which step holds it. Set-up as in
``bench/scale.py`` (the dev file ingested, one quick LightGBM, ``heart`` replicated with fresh record
ids). Each run is a fresh child process on a fresh copy of the home that samples its own resident
memory every 20 ms and keeps the highest value per phase:

- local engine (the baseline): imports, model, read (the window and the scored ids), score, insert;
- daft engine, native runner, 1 thread: imports, model, selection (the hash buckets of record ids),
  score+insert (the scoring plan streamed into the MERGE), tally (the run's metrics).

Printed side by side; saved to bench/results/engine_memory.json. Times are not the point (see
``bench/scale.py``). Run it niced on a shared machine:

    nice -n 19 .venv/bin/python bench/engine_memory.py [--factors 1,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import DEFAULT_CSV, child, replicated_homes, save

PHASES = """
import json, os, resource, sys, threading, time
from datetime import timedelta
from pathlib import Path

phase = ["imports"]
peaks = {}

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def sample():
    while True:
        peaks[phase[0]] = max(peaks.get(phase[0], 0.0), rss())
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
import pyarrow.compute as pc
from heartrisk.config import Settings
from heartrisk.jobs.infer import score, unscored
from heartrisk.model.registry import champion_model
from heartrisk.store.groups import HEART, HEART_PREDICTIONS, open_group
home, engine = Path(sys.argv[1]), sys.argv[2]
settings = Settings(home=home, engine=engine)
if engine == "daft":
    import daft
    from heartrisk.engine.scoring import BatchTally, scoring_plan
    daft.set_runner_native(num_threads=1)
heart = open_group(settings, HEART)
now = pc.max(heart.read_arrow(columns=["event_time"]).column("event_time")).as_py() + timedelta(hours=1)
start, end = now - timedelta(days=400), now + timedelta(microseconds=1)
phase[0] = "model"
model = champion_model(settings)
if engine == "daft":
    phase[0] = "selection"
    plan = scoring_plan(settings, model, start, end, now)
    plan.selection()
    phase[0] = "score+insert"
    tally = BatchTally()
    written = open_group(settings, HEART_PREDICTIONS).insert_stream(lambda: tally.watch(plan.batches()))
    phase[0] = "tally"
    tally.frame()
    extra = {"buckets": plan.buckets, "largest_bucket_ids": max(plan.selection().bucket_ids)}
else:
    phase[0] = "read"
    pending = unscored(settings, heart, model.version, start, end)
    phase[0] = "score"
    batch = score(model, pending.new, now)
    phase[0] = "insert"
    written = open_group(settings, HEART_PREDICTIONS).insert(batch)
    extra = {}
time.sleep(0.1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": written.inserted, "peak_mib": peak,
                  "phases_mib": {k: round(v) for k, v in peaks.items()}, **extra}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--factors", default="1,4,8")
    args = parser.parse_args()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        factors = [int(f) for f in args.factors.split(",")]
        for factor, home, rows in replicated_homes(args.csv, factors, scratch):
            for engine in ("local", "daft"):
                run = scratch / "run"
                shutil.rmtree(run, ignore_errors=True)
                shutil.copytree(home, run)
                load = os.getloadavg()[0]
                out = json.loads(child(PHASES, str(run), engine))
                results.append({"factor": factor, "table_rows": rows, "engine": engine, "load_before": load,
                                **out})
                phases = ", ".join(f"{k} {v:,}" for k, v in out["phases_mib"].items())
                print(f"  {engine:<6} peak {out['peak_mib']:>7,.0f} MiB  ({phases}; load {load:.1f})",
                      flush=True)
                save(args.csv, results, "engine_memory")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
