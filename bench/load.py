"""Benchmark: 500 predictions and 200 submissions at once against the real server, from another process.

`heartrisk serve` runs as its own process on 127.0.0.1 with a trained champion; this process sends the
mixed load (asyncio + httpx, ``--concurrency`` requests in flight, each submission's answers unique
so it can be found again) and reports latency percentiles per endpoint, successful answers per second
(``ok/s``: from the first request of that kind sent to the last answered), the status codes, whether
every acknowledged submission is stored exactly once and in how many Delta commits of ``heart_user``
(the server's writer gathers submissions that arrive together). The baseline, in the same run, is the same mix
sent one request at a time (no load). A last pass sends the same 200 submissions with the server's
default rate limit, to show the limit biting (the load passes raise it: one process here stands in
for many clients).

    .venv/bin/python bench/load.py [--csv PATH] [--rows 6000] [--home DIR] [--concurrency 32]
    .venv/bin/python bench/load.py client --url http://127.0.0.1:PORT [--predictions 500] ...

The ``client`` form only sends the load and prints its JSON (the reliability test uses it).
Prints a table and saves bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.process import ServeProcess

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = Path(os.environ.get("HEARTRISK_CSV") or ROOT.parent / "shared/data/heart_2020_dev.csv.gz")
RESULTS = ROOT / "bench" / "results" / "load.json"
PASSWORD = "load-benchmark-operator"


# ------------------------------------------------------------------------------------ the load
def bodies(predictions: int, submissions: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The mixed requests, shuffled: random valid answers; each submission has a unique BMI."""
    from heartrisk.web.risk_check.scorer import random_rows

    rows = random_rows(predictions + submissions, seed=seed)
    requests: list[tuple[str, dict[str, Any]]] = [("predict", r) for r in rows[:predictions]]
    for i, row in enumerate(rows[predictions:]):
        body = {**row, "bmi": round(15 + i * 0.25, 2), "heart_disease": i % 3 == 0, "consent": True}
        requests.append(("submission", body))
    order = np.random.default_rng(seed).permutation(len(requests))
    return [requests[i] for i in order]


async def send_all(url: str, requests: list[tuple[str, dict[str, Any]]], concurrency: int,
                   timeout: float = 120) -> list[dict[str, Any]]:
    """Send every request with at most ``concurrency`` in flight; one record per request."""
    import httpx

    paths = {"predict": "/api/v1/predict", "submission": "/api/v1/submissions"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        async def one(kind: str, body: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(paths[kind], json=body)
                except httpx.HTTPError as exc:
                    return {"kind": kind, "status": None, "error": type(exc).__name__,
                            "ms": (time.perf_counter() - started) * 1000, "bmi": body.get("bmi")}
                ended = time.perf_counter()
                record = {"kind": kind, "status": response.status_code, "ms": (ended - started) * 1000,
                          "bmi": body.get("bmi"), "started": started, "ended": ended}
                if kind == "submission" and response.status_code == 201:
                    record["submission_id"] = response.json()["submission_id"]
                return record

        return list(await asyncio.gather(*(one(kind, body) for kind, body in requests)))


def summary(records: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Status counts and latency percentiles per kind of request."""
    out: dict[str, Any] = {"requests": len(records), "seconds": round(seconds, 2),
                           "throughput_rps": round(len(records) / seconds, 1) if seconds else None}
    for kind in ("predict", "submission"):
        mine = [r for r in records if r["kind"] == kind]
        if not mine:
            continue
        ms = np.array([r["ms"] for r in mine])
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        out[kind] = {"n": len(mine), "statuses": statuses,
                     **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)},
                     "max_ms": round(float(ms.max()), 1), "ok_per_s": ok_rate(mine)}
    out["server_errors"] = sum(1 for r in records if r["status"] is None or r["status"] >= 500)
    return out


def ok_rate(records: list[dict[str, Any]]) -> float | None:
    """Successful answers (2xx) per second, from the first request sent to the last one answered."""
    ok = [r for r in records if r["status"] is not None and 200 <= r["status"] < 300]
    if not ok:
        return None
    span = max(r["ended"] for r in ok) - min(r["started"] for r in records if "started" in r)
    return round(len(ok) / span, 1) if span > 0 else None


def run_client(url: str, predictions: int, submissions: int, concurrency: int, seed: int) -> dict[str, Any]:
    requests = bodies(predictions, submissions, seed)
    started = time.perf_counter()
    records = asyncio.run(send_all(url, requests, concurrency))
    result = summary(records, time.perf_counter() - started)
    result["concurrency"] = concurrency
    result["records"] = records
    return result


# ------------------------------------------------------------------------------------ the server
def server(home: Path, env: dict[str, str] | None = None) -> ServeProcess:
    """`heartrisk serve` in its own process on 127.0.0.1, with extra environment; log in the home."""
    full = {**os.environ, "HEARTRISK_HOME": str(home), "HEARTRISK_ADMIN_PASSWORD": PASSWORD,
            "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    for name in ("MLFLOW_TRACKING_URI", "HEARTRISK_STORE_URI"):
        full.pop(name, None)
    return ServeProcess(full, home / "serve.log")


def stored_ids(home: Path) -> list[str]:
    from heartrisk.config import Settings
    from heartrisk.store.groups import HEART_USER, open_group

    group = open_group(Settings(home=home), HEART_USER)
    return group.read(columns=["submission_id"])["submission_id"].tolist() if group.exists() else []


def write_commits(home: Path) -> int:
    """Delta commits that added rows to heart_user (one per submission without group commit)."""
    from heartrisk.config import Settings
    from heartrisk.store.groups import HEART_USER, open_group

    group = open_group(Settings(home=home), HEART_USER)
    return sum(h["operation"] == "WRITE" for h in group.history()) if group.exists() else 0


def prepare_home(home: Path, csv: Path, rows: int) -> None:
    """Ingest a stratified sample and train a quick champion."""
    import pandas as pd

    from heartrisk.config import Settings
    from heartrisk.jobs.ingest import ingest
    from heartrisk.jobs.train import TrainSettings, train

    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    sample = frame.groupby("HeartDisease", group_keys=False).sample(frac=min(1.0, rows / len(frame)),
                                                                   random_state=7)
    path = home.parent / "sample.csv"
    sample.to_csv(path, index=False)
    settings = Settings(home=home)
    ingest(settings, path)
    train(settings, TrainSettings.for_quick())


def line(label: str, cell: dict[str, Any]) -> str:
    return (f"{label:<28} p50 {cell['p50_ms']:7.1f}  p90 {cell['p90_ms']:7.1f}  p99 {cell['p99_ms']:7.1f}  "
            f"max {cell['max_ms']:7.1f} ms   {cell['ok_per_s']} ok/s   {cell['statuses']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "client"])
    parser.add_argument("--url")
    parser.add_argument("--predictions", type=int, default=500)
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--home", type=Path, help="a home with a champion (copied, not changed)")
    args = parser.parse_args()

    if args.mode == "client":
        if not args.url or not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            parser.error("--url must be a loopback address (http://127.0.0.1:PORT)")
        print(json.dumps(run_client(args.url, args.predictions, args.submissions, args.concurrency,
                                    args.seed)))
        return 0

    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.home:
            shutil.copytree(args.home, home)
        else:
            print(f"preparing a home: {args.rows:,} rows of {args.csv.name}, quick training ...", flush=True)
            prepare_home(home, args.csv, args.rows)
        results: dict[str, Any] = {}
        raised = {"HEARTRISK_SUBMISSION_LIMIT": "100000"}
        for label, concurrency in (("baseline (one at a time)", 1), ("under load", args.concurrency)):
            copy = Path(tmp) / f"home-{concurrency}"
            shutil.copytree(home, copy)
            with server(copy, raised) as running:
                result = run_client(running.url, args.predictions, args.submissions, concurrency, args.seed)
            records = result.pop("records")
            acknowledged = [r["submission_id"] for r in records if r.get("submission_id")]
            stored = stored_ids(copy)
            result["submissions_stored"] = len(stored)
            result["submission_commits"] = write_commits(copy)
            result["stored_exactly_once"] = sorted(stored) == sorted(acknowledged) == sorted(set(stored))
            results[label] = result
        copy = Path(tmp) / "home-default-limit"
        shutil.copytree(home, copy)
        with server(copy) as running:
            result = run_client(running.url, 0, args.submissions, args.concurrency, args.seed)
        result.pop("records")
        result["submissions_stored"] = len(stored_ids(copy))
        results["default rate limit"] = result

    print(f"\n{args.predictions} predictions + {args.submissions} submissions, heartrisk serve on 127.0.0.1, "
          f"client in another process, {os.cpu_count()} cores")
    for label in ("baseline (one at a time)", "under load"):
        r = results[label]
        print(f"{label} (concurrency {r['concurrency']}): {r['seconds']} s, {r['throughput_rps']} req/s, "
              f"5xx {r['server_errors']}, stored {r['submissions_stored']} once: {r['stored_exactly_once']} "
              f"in {r['submission_commits']} commits")
        for kind in ("predict", "submission"):
            print("  " + line(kind, r[kind]))
    d = results["default rate limit"]
    print(f"default rate limit, {args.submissions} submissions from one client: "
          f"{d['submission']['statuses']}, stored {d['submissions_stored']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                                   "predictions": args.predictions, "submissions": args.submissions,
                                   "results": results}, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")
    ok = all(results[k]["server_errors"] == 0 and results[k]["stored_exactly_once"]
             for k in ("baseline (one at a time)", "under load"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
