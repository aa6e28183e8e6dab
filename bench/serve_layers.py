"""Benchmark: where the server's CPU goes for one `POST /api/v1/predict`, layer by layer.

Starts `heartrisk serve` on a home, drives 8 closed-loop clients (bench/serve.py's client, a quarter
of the answers Unknown) and, for each response kind, first measures the server's CPU per request
without a profiler, then samples the server with py-spy while the same load runs. Each sample is put
in the innermost layer its stack passes through (:data:`LAYERS`); the shares times the profiled CPU
per request give milliseconds. py-spy is not a dependency of heartrisk: install it anywhere
(`python -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy`) and pass its path.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/serve_layers.py --home HOME_OF_A_FULL_TRAIN \\
        --py-spy /tmp/spy/bin/py-spy [--seconds 10]

Saves bench/results/serve-layers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import load, request_bytes, wait_for_version
from support.bench import save_results
from support.process import free_port

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
RESULTS = Path(__file__).resolve().parent / "results" / "serve-layers.json"
CLIENTS = 8
#: (layer, a frame that marks it), innermost first: a sample counts in the first layer it matches.
LAYERS = (
    ("sending the response (h11, socket write)", "RequestResponseCycle.send"),
    ("the model: score, explain and the context (draws, its rows' margins, finish)", "Scorer.score"),
    ("the rest of predict (answers, response, JSON, serving profile)",
     "predict (heartrisk/web/risk_check/api.py"),
    ("middleware, routing, FastAPI dependencies and body", "run_asgi"),
    ("reading and parsing the request (h11)", "data_received"),
    ("the event loop", "asyncio_run"),
)
#: (explain, context) of each response measured.
KINDS = {"default (explained, with the context)": (True, True), "bare (neither)": (False, False)}


def layer_of(stack: str) -> str:
    return next((name for name, marker in LAYERS if marker in stack), "stacks py-spy caught only in part")


def layer_shares(raw: Path) -> dict[str, float]:
    """Share of py-spy's samples (``--format raw``: one ``stack count`` line each) in every layer."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[layer_of(stack)] += int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


def measure(port: int, pid: int, spy: str, seconds: float, explain: bool, context: bool,
            scratch: Path) -> dict[str, Any]:
    from heartrisk.web.risk_check.scorer import random_rows

    requests = request_bytes(port, random_rows(500, seed=3), explain, context)
    asyncio.run(load(port, requests, CLIENTS, 3, pid))  # warm-up
    plain = asyncio.run(load(port, requests, CLIENTS, seconds, pid))
    raw = scratch / f"spy-{explain}-{context}.txt"
    profiler = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                                 "--rate", "400", "--format", "raw", "--output", str(raw), "--nonblocking"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    profiled = asyncio.run(load(port, requests, CLIENTS, seconds, pid))
    if profiler.wait() != 0 or not raw.exists():
        said = profiler.stderr.read().decode()[-500:] if profiler.stderr else ""
        raise SystemExit(f"py-spy failed: {said}")
    shares = layer_shares(raw)
    ms = profiled["server_cpu_ms_per_request"]
    return {"without_profiler": plain, "with_profiler": profiled,
            "layers": {name: {"share": share, "ms": share * ms} for name, share in shares.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="a home with a champion")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"),
                        help="path of py-spy (not installed by us)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    args = parser.parse_args()
    from heartrisk.config import Settings
    from heartrisk.model.registry import champion_version

    if not args.py_spy or not Path(args.py_spy).exists():
        raise SystemExit("py-spy not found: install it (pip install py-spy) and pass --py-spy PATH")

    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="bench-layers-"))
    env = {**os.environ, "HEARTRISK_HOME": str(args.home), "OMP_WAIT_POLICY": "PASSIVE"}
    with (scratch / "serve.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "heartrisk", "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    try:
        wait_for_version(port, champion_version(Settings(home=args.home)) or sys.exit("no champion"), server)
        for kind, (explain, context) in KINDS.items():
            found = results[kind] = measure(port, server.pid, args.py_spy, args.seconds, explain, context,
                                            scratch)
            plain, profiled = found["without_profiler"], found["with_profiler"]
            print(f"\n{kind}: {plain['server_cpu_ms_per_request']:.2f} ms server CPU a request, "
                  f"{plain['throughput_rps']:.0f} req/s without the profiler; "
                  f"{profiled['server_cpu_ms_per_request']:.2f} ms with it")
            for name, figures in found["layers"].items():
                print(f"  {name:66} {100 * figures['share']:5.1f} %  {figures['ms']:.3f} ms")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    load_after = os.getloadavg()
    print(f"\nload average {load_before[0]:.2f} -> {load_after[0]:.2f} (the load generator runs on the "
          "same cores)")
    save_results(RESULTS, "serve_layers", load_before, load_after, clients=CLIENTS, seconds=args.seconds,
                 kinds=results)
    print(f"saved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
