"""Benchmark: `heartrisk up` from an empty home and from a full one, to the form answering.

1. empty home: `heartrisk up` with the default settings ingests the CSV, trains the first classifier
   (``--first-model quick``, the default: quick settings, then a full training in the background;
   ``--first-model full``: the full training first), serves; the time to the first HTTP 200 on ``/``
   is the figure (target: under 10 minutes on 2 cores). It then waits for the background jobs of the
   first start (synthesizer fit, feature pipeline, inference, the full training) and notes when each
   ended, then stops with SIGINT, as Ctrl-C would.
2. full home: `heartrisk up` again on the same home (target: under 15 s).
3. baseline: `heartrisk serve` on the same home, the floor `up` adds its checks and scheduler to.
   Steps 2 and 3 alternate ``--repeat`` times; the medians are the figures.

Each is a fresh process timed from its start; the load average is printed beside the figures because
other work on the machine changes them. Saves bench/results/up.json.

    .venv/bin/python bench/up.py [--csv PATH] [--first-model quick|full] [--only-empty] [--quick]
    .venv/bin/python bench/up.py --home PATH [--repeat 3]     # steps 2 and 3 on an existing full home
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from heartrisk.config import Settings
from heartrisk.runtime.state import JobState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.process import free_port, responds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
TARGETS = {"empty home": 600.0, "full home": 15.0}


def champion_line(home: Path) -> str:
    """Which version is champion and what the gate said, from `heartrisk status --json`."""
    report = subprocess.run([sys.executable, "-m", "heartrisk", "status", "--json"], capture_output=True,
                            text=True, env={**os.environ, "HEARTRISK_HOME": str(home)})
    try:
        registry = json.loads(report.stdout).get("registry", {})
    except json.JSONDecodeError:
        return "unknown"
    return (f"version {registry.get('champion')} of {registry.get('versions')} "
            f"({registry.get('champion_model')}, test {registry.get('champion_test')})")


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "heartrisk", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def time_to_form(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> float:
    began = time.perf_counter()
    while not responds(url):
        if proc.poll() is not None:
            sys.exit(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.perf_counter() - began > timeout:
            proc.kill()
            sys.exit(f"no answer within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return time.perf_counter() - began


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=120)


def empty_home(args: argparse.Namespace, up_args: list[str], env: dict[str, str], home: Path, log: Path,
               url: str, results: dict[str, Any]) -> None:
    """Step 1: an empty home to the form answering, then the background jobs of the first start."""
    background = ["synth", "daily", "infer"]
    if args.first_model == "quick" and not args.quick:
        background.append("train")  # the full training that follows the quick first model
    proc = start(up_args, env, log)
    launched = time.perf_counter()
    results["empty home"] = time_to_form(proc, url, log, timeout=3600)
    state = JobState(Settings(home=home)).jobs()
    results["empty home: ingest s"] = state.get("ingest", {}).get("duration_s")
    results["empty home: train s"] = state.get("train", {}).get("duration_s")
    print(f"empty home -> form answering: {results['empty home']:.1f} s "
          f"(ingest {results['empty home: ingest s']} s, train {results['empty home: train s']} s)",
          flush=True)
    runs_before = {n: state.get(n, {}).get("runs", 0) for n in background}
    pending = set() if args.only_empty else set(background)
    while pending:
        state = JobState(Settings(home=home)).jobs()
        for name in sorted(pending):
            if state.get(name, {}).get("runs", 0) > runs_before[name]:
                pending.discard(name)
                results[f"background {name}"] = state[name].get("last_outcome")
                results[f"background {name} s"] = state[name].get("duration_s")
                results[f"empty home -> {name} done"] = time.perf_counter() - launched
                print(f"  {name} {state[name].get('last_outcome')} in {state[name].get('duration_s')} s, "
                      f"{results[f'empty home -> {name} done']:.0f} s after the start", flush=True)
        if proc.poll() is not None or time.perf_counter() - launched > 4 * 3600:
            sys.exit(f"background jobs did not finish:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    results["champion after the background jobs"] = champion_line(home)
    print(f"  champion: {results['champion after the background jobs']}", flush=True)
    results["exit code after SIGINT"] = stop(proc)
    results["load after empty home"] = os.getloadavg()


def full_home(args: argparse.Namespace, port: int, env: dict[str, str], log: Path, url: str,
              results: dict[str, Any]) -> None:
    """Steps 2 and 3, alternated ``--repeat`` times so that changing load hits both alike."""
    runs: dict[str, list[float]] = {"full home": [], "baseline: serve on the full home": []}
    commands = {"full home": ["up", "--port", str(port), "--stop-grace", "0"],
                "baseline: serve on the full home": ["serve", "--port", str(port)]}
    for _ in range(args.repeat):
        for name, command in commands.items():
            proc = start(command, env, log)
            runs[name].append(time_to_form(proc, url, log, timeout=600))
            print(f"{name} -> form answering: {runs[name][-1]:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            stop(proc)
            time.sleep(2)
    for name, seconds in runs.items():
        results[name] = statistics.median(seconds)
        results[f"{name}: runs"] = seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--quick", action="store_true", help="quick settings (a smoke run of this script)")
    parser.add_argument("--first-model", choices=("quick", "full"), default="quick")
    parser.add_argument("--only-empty", action="store_true",
                        help="stop once the form answers from the empty home (skip steps 2 and 3)")
    parser.add_argument("--home", type=Path,
                        help="a full home to time steps 2 and 3 on (skips step 1; the home is used, "
                             "not copied: its jobs may run)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of steps 2 and 3 (median shown)")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    quick = ["--quick"] if args.quick else []
    results: dict[str, Any] = {"cpus": os.cpu_count(), "csv": str(args.csv), "quick": args.quick,
                               "first_model": args.first_model, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="heartrisk-bench-up-") as tmp:
        home, log = args.home or Path(tmp) / "home", Path(tmp) / "up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTRISK_", "MLFLOW_"))}
        env.update(HEARTRISK_HOME=str(home), HEARTRISK_CSV=str(args.csv), OMP_WAIT_POLICY="PASSIVE")
        if args.home is None:
            up_args = ["up", "--port", str(port), "--first-model", args.first_model, *quick]
            empty_home(args, up_args, env, home, log, url, results)
        if not args.only_empty:
            full_home(args, port, env, log, url, results)
    save(results, args)


def save(results: dict[str, Any], args: argparse.Namespace) -> None:
    results["load_after"] = os.getloadavg()
    print(f"\n{'step':<36}{'seconds':>10}{'target':>10}")
    for name in ("empty home", "full home", "baseline: serve on the full home"):
        if name not in results:
            continue
        target = TARGETS.get(name)
        print(f"{name:<36}{results[name]:>10.1f}{(f'< {target:g}' if target else ''):>10}")
    print(f"load average before {results['load_before']}, after {results['load_after']} "
          f"({results['cpus']} cores)")
    name = ("up-full-home" if args.home else "up-quick" if args.quick
            else f"up-first-{args.first_model}" + ("-empty-only" if args.only_empty else ""))
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
