"""Benchmark: `heartrisk ingest` of the dev file and a full read back, beside pandas.read_csv.

Prints time (imports excluded) and peak memory (RSS high-water mark of a fresh child process per
step) and saves them to
bench/results/ingest.json. Targets (issue 2): ingest under 15 s, full read under 1 s on 2 cores.

    .venv/bin/python bench/ingest.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")

STEPS = {
    "baseline: pandas.read_csv": """
import pandas as pd
start = time.perf_counter()
frame = pd.read_csv(CSV)
rows = len(frame)
""",
    "heartrisk ingest (parse, validate, write Delta)": """
from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
start = time.perf_counter()
rows = ingest(Settings(home=HOME), CSV).inserted
""",
    "heartrisk ingest again (no-op)": """
from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
start = time.perf_counter()
rows = ingest(Settings(home=HOME), CSV).skipped
""",
    "read heart_v1 -> pandas": """
from heartrisk.config import Settings
from heartrisk.store.groups import HEART, open_group
start = time.perf_counter()
rows = len(open_group(Settings(home=HOME), HEART).read())
""",
    "read heart_v1 -> polars": """
import polars as pl
start = time.perf_counter()
rows = pl.read_delta(str(HOME / "store" / "heart_v1")).height
""",
}

CHILD = """
import resource, sys, time
from pathlib import Path
CSV, HOME = Path(sys.argv[1]), Path(sys.argv[2])
{body}
seconds = time.perf_counter() - start
print(seconds, rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run_step(body: str, csv: Path, home: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD.format(body=body), str(csv), str(home)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "TERM": "dumb"})
    seconds, rows, peak_mib = done.stdout.split()[-3:]
    return {"seconds": round(float(seconds), 3), "rows": int(rows), "peak_mib": round(float(peak_mib))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in STEPS.items():
            results[name] = run_step(body, args.csv, Path(tmp) / "home")
            r = results[name]
            print(f"{name:<50} {r['seconds']:>7.2f} s {r['rows']:>9,} rows  peak {r['peak_mib']:>5} MiB")
    baseline = results["baseline: pandas.read_csv"]["seconds"]
    ingest = results["heartrisk ingest (parse, validate, write Delta)"]["seconds"]
    read = results["read heart_v1 -> pandas"]["seconds"]
    print(f"\ningest = {ingest / baseline:.1f}x pandas.read_csv; target ingest < 15 s: "
          f"{'met' if ingest < 15 else 'MISSED'}; full read < 1 s: {'met' if read < 1 else 'MISSED'}")
    out = ROOT / "bench" / "results" / "ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"csv": str(args.csv), "cores": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
