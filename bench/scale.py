"""Benchmark: batch inference as the table grows, the local engine beside the daft engine.

Set-up (not timed): a temporary home with the dev file ingested and one quick LightGBM model; then for
each factor (1x, 4x, 16x: 16x is about 4.6 M rows) a copy whose ``heart`` holds the dev rows that many
times, each copy with fresh record ids and the same answers and event times (written with a plain Delta
append: the ids are new, so the keyed insert would only add time to the set-up).

Timed: ``run_infer`` over a window holding every row, without the monitoring images (the same for both
engines and measured in ``bench/infer.py``), each in a fresh child process on a fresh copy of that
factor's home, so the peak memory (``ru_maxrss`` of the process) is the run's own:

- local: the window read into the process, scored at once, one insert;
- daft, native runner, 1 and 2 threads: partition by partition in the same process (the Ray runner
  is checked for correctness in tests/scaleout/test_ray_engine.py, not timed here).

Printed side by side with rows/s; saved to bench/results/scale.json. Run it niced on a shared machine:

    nice -n 10 .venv/bin/python bench/scale.py [--factors 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
ENV = {**os.environ, "TERM": "dumb", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}

#: Every child script ends here: delta-rs/pyarrow scan threads can abort the interpreter's teardown
#: (delta-io/delta-rs#2184), which lost the child's printed result 1 time in 2 on this machine.
EXIT = """
import os, sys
sys.stdout.flush()
os._exit(0)
"""

SETUP = """
import sys
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.jobs.ingest import ingest
from heartrisk.jobs.train import TrainSettings, train
settings = Settings(home=Path(sys.argv[1]))
ingest(settings, Path(sys.argv[2]))
result = train(settings, TrainSettings.for_quick(families=("lightgbm",)))
print(result.version, result.family)
"""


REPLICATE = """
import sys
from pathlib import Path
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake
from heartrisk.config import Settings
from heartrisk.store.groups import HEART, open_group
settings, factor = Settings(home=Path(sys.argv[1])), int(sys.argv[2])
heart = open_group(settings, HEART)
base = heart.read_arrow()
for copy in range(1, factor):  # copy 0 is the table as ingested
    ids = pc.binary_join_element_wise(base.column("record_id"), pa.scalar(f"x{copy}"), ":")
    write_deltalake(heart.uri, base.set_column(0, "record_id", ids), mode="append")
print(heart.count())
"""


TIMED = """
import json, resource, sys, time
from datetime import timedelta
import pyarrow.compute as pc
from pathlib import Path
from heartrisk.config import Settings
from heartrisk.jobs.infer import run_infer
from heartrisk.store.groups import HEART, open_group
home, engine, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
settings = Settings(home=home, engine=engine)
if engine == "daft":
    import daft
    daft.set_runner_native(num_threads=threads)
times = open_group(settings, HEART).read_arrow(columns=["event_time"]).column("event_time")
newest = pc.max(times).as_py()
start, cpu = time.perf_counter(), time.process_time()
result = run_infer(settings, hours=24 * 400, now=newest + timedelta(hours=1), artifacts=False)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"rows": result.inserted, "in_window": result.rows_in_window, "seconds": wall,
                  "cpu_seconds": cpu, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""



def child(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code + EXIT, *args], capture_output=True, text=True,
                          env=env or ENV)
    if done.returncode:
        sys.exit(f"step failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def replicated_homes(csv: Path, factors: list[int], scratch: Path) -> Iterator[tuple[int, Path, int]]:
    """The set-up (not timed): ``csv`` ingested and a quick LightGBM trained once, then for each factor
    a home whose ``heart`` holds the rows that many times (removed once the caller is done with it)."""
    base = scratch / "base"
    print(f"set-up: ingest {csv.name}, train a quick LightGBM …", flush=True)
    child(SETUP, str(base), str(csv))
    for factor in factors:
        home = scratch / f"x{factor}"
        shutil.copytree(base, home)
        rows = int(child(REPLICATE, str(home), str(factor)))
        print(f"\n{factor}x: {rows:,} rows in heart", flush=True)
        yield factor, home, rows
        shutil.rmtree(home)


def timed_run(home: Path, scratch: Path, engine: str, threads: int) -> dict[str, float]:
    copy = scratch / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(home, copy)
    load = os.getloadavg()[0]
    out = json.loads(child(TIMED, str(copy), engine, str(threads)))
    out["load_before"] = load
    shutil.rmtree(copy, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--factors", default="1,4,16")
    args = parser.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for factor, home, rows in replicated_homes(args.csv, factors, scratch):
            runs = [("local", "local", 1), ("daft native, 1 thread", "daft", 1),
                    ("daft native, 2 threads", "daft", 2)]
            for label, engine, threads in runs:
                out = timed_run(home, scratch, engine, threads)
                results.append({"factor": factor, "table_rows": rows, "engine": label, **out})
                print(f"  {label:<24} {out['seconds']:>7.1f} s {out['rows'] / out['seconds']:>10,.0f} rows/s "
                      f"peak {out['peak_mib']:>7,.0f} MiB  (load {out['load_before']:.1f})", flush=True)
                save(args.csv, results)  # after each run: a run stopped midway keeps what it measured
    print(f"\n{'factor':>6} {'rows':>10}  {'engine':<24} {'wall s':>8} {'rows/s':>10} {'peak MiB':>9}")
    for r in results:
        print(f"{r['factor']:>5}x {r['table_rows']:>10,}  {r['engine']:<24} {r['seconds']:>8.1f} "
              f"{r['rows'] / r['seconds']:>10,.0f} {r['peak_mib']:>9,.0f}")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    save(args.csv, results)


def save(csv: Path, results: list[dict[str, object]], name: str = "scale") -> None:
    """The runs so far, with the machine's cores and load, to bench/results/<name>.json."""
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"csv": str(csv), "cores": os.cpu_count(), "runs": results,
                               "load_average_now": os.getloadavg()[0]}, indent=2, default=str))


if __name__ == "__main__":
    main()
