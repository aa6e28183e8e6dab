"""Benchmark: peak memory of `heartrisk predict --csv` on a large valid file, beside pandas.read_csv.

Issue 12 found that a valid 1 GB file took 5.1 GB of memory and was still being read after 19 s:
predict read the whole file, then checked it, then scored it. It now reads, checks, scores and writes
one chunk at a time. This builds a large valid file (the dev file repeated ``--copies`` times,
uncompressed), a home with a quick champion trained on a 6,000-row sample, and measures each step in
a fresh child process: time and peak memory (VmHWM from /proc: ``ru_maxrss`` would carry the parent's
peak across exec). Saves bench/results/predict_memory.json with the load average.

    .venv/bin/python bench/predict_memory.py [--copies 4] [--csv PATH]

To measure the code before a change, put that code's ``src`` first on ``PYTHONPATH``: the children
call only ``predict_csv(settings, csv, out)``, which both have (in ``heartrisk.pipelines.predict``
before the tree moved, issue 13; the child tries both).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")

STEPS = {
    "baseline: pandas.read_csv of the file": """
import pandas as pd
start = time.perf_counter()
rows = len(pd.read_csv(CSV))
""",
    "heartrisk predict --csv (read, check, score, write)": """
from heartrisk.config import Settings
try:
    from heartrisk.jobs.predict import predict_csv
except ImportError:  # code from before the tree moved (issue 13)
    from heartrisk.pipelines.predict import predict_csv
start = time.perf_counter()
rows = predict_csv(Settings(home=HOME), CSV, OUT).scored
""",
}

CHILD = """
import re, sys, time
from pathlib import Path
CSV, HOME, OUT = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
{body}
seconds = time.perf_counter() - start
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(seconds, rows, peak / 1024)
"""

PREPARE = """
import sys
from pathlib import Path
import pandas as pd
from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.train import train
from heartrisk.model.training import TrainSettings
frame = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
sample = frame.groupby("HeartDisease", group_keys=False).sample(frac=6000 / len(frame), random_state=7)
path = Path(sys.argv[2]) / "sample.csv"
sample.to_csv(path, index=False)
settings = Settings(home=Path(sys.argv[2]) / "home")
ingest(settings, path)
train(settings, TrainSettings.for_quick())
"""


def run_step(body: str, csv: Path, home: Path, out: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD.format(body=body), str(csv), str(home), str(out)],
                          capture_output=True, text=True, check=True, env={**os.environ, "TERM": "dumb"})
    seconds, rows, peak_mib = done.stdout.split()[-3:]
    return {"seconds": round(float(seconds), 2), "rows": int(rows), "peak_mib": round(float(peak_mib))}


def large_file(csv: Path, copies: int, path: Path) -> int:
    """The dev file's rows ``copies`` times, uncompressed; returns the size in bytes."""
    opener = gzip.open if csv.suffix == ".gz" else open
    with opener(csv, "rt") as source:
        header, body = source.readline(), source.read()
    with path.open("w") as out:
        out.write(header)
        for _ in range(copies):
            out.write(body)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--copies", type=int, default=4, help="times the dev file is repeated")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-c", PREPARE, str(args.csv), str(folder)], check=True,
                       capture_output=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        big = folder / "large.csv"
        size = large_file(args.csv, args.copies, big)
        print(f"file: {size / 1e6:,.0f} MB, the dev file {args.copies} times")
        for name, body in STEPS.items():
            results[name] = run_step(body, big, folder / "home", folder / "scored.csv")
            r = results[name]
            print(f"{name:<52} {r['seconds']:>7.1f} s {r['rows']:>10,} rows  peak {r['peak_mib']:>6,} MiB")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    out = ROOT / "bench" / "results" / "predict_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"csv": str(args.csv), "copies": args.copies, "file_mb": round(size / 1e6),
                               "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": load,
                               "cores": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
