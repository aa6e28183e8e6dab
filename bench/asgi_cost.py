"""Benchmark: the CPU of one ``POST /api/v1/predict`` through the whole app, in process (issue 16).

Builds the app of a home twice, with the predict fast path (``web/risk_check/fast_path.py``) and
without it (the baseline: every request through FastAPI's routing), and sends each the same random
valid answers (a quarter Unknown) as ASGI calls, with no sockets, so only the app's own layers are
measured: the guard, routing, FastAPI, the answer. Also times the answer alone (parse, validate,
score, JSON) for scale. CPU time (``time.process_time``) per request; the two apps alternate for
``--rounds`` rounds, the first of which warms the caches and is not counted. Saves
bench/results/asgi_cost.json.

    .venv/bin/python bench/asgi_cost.py --home HOME [--requests 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.bench import save_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "asgi_cost.json"
PATH = "/api/v1/predict"


def scope_of(body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "server": ("127.0.0.1", 7860), "client": ("127.0.0.1", 50000),
            "root_path": "", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:7860"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())], "state": {}}


async def per_request(app: Any, bodies: list[bytes]) -> float:
    """ms of CPU per request for ``bodies`` sent to ``app``, each answered 200."""
    started = time.process_time()
    for body in bodies:
        status: list[int] = []

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any], status: list[int] = status) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope_of(body), receive, send)
        if status != [200]:
            raise SystemExit(f"the app answered {status} to {body[:80]!r}")
    return (time.process_time() - started) / len(bodies) * 1e3


def answer_alone(app: Any, bodies: list[bytes]) -> float:
    """ms of CPU per request for the answer itself: the route's functions without the app."""
    from heartrisk.web.risk_check.risk import score
    from heartrisk.web.risk_check.schemas import Answers, answers_dict
    from heartrisk.web.risk_check.strict_json import unique_keys

    state = app.state
    started = time.process_time()
    for body in bodies:
        answers = Answers.model_validate(json.loads(body, object_pairs_hook=unique_keys))
        score(state.models.get(), [answers_dict(answers)], True, True, state.profile)[0].model_dump_json()
    return (time.process_time() - started) / len(bodies) * 1e3


async def measure(home: Path, requests: int, rounds: int) -> dict[str, list[float]]:
    from heartrisk.config import Settings
    from heartrisk.web.app import WebSettings, create_app
    from heartrisk.web.risk_check.scorer import random_rows

    settings = Settings(home=home)
    bodies = [json.dumps(row).encode() for row in random_rows(requests, seed=3)]
    apps = {name: create_app(settings, WebSettings(port=0, fast_predict=fast, profile_flush_seconds=0))
            for name, fast in (("route", False), ("fast path", True))}
    figures: dict[str, list[float]] = {"route": [], "fast path": [], "answer alone": []}
    async with apps["route"].router.lifespan_context(apps["route"]), \
            apps["fast path"].router.lifespan_context(apps["fast path"]):
        for round_ in range(rounds):
            seen = {name: await per_request(app, bodies) for name, app in apps.items()}
            seen["answer alone"] = answer_alone(apps["route"], bodies)
            print(f"round {round_ + 1}{' (warm-up)' if round_ == 0 else ''}: "
                  + "; ".join(f"{k} {v:.3f} ms" for k, v in seen.items()), flush=True)
            if round_:
                for name, value in seen.items():
                    figures[name].append(value)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="a home with a champion")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4, help="the first warms up and is not counted")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is a warm-up)")
    load_before = os.getloadavg()
    figures = asyncio.run(measure(args.home, args.requests, args.rounds))
    load_after = os.getloadavg()
    summary = {name: {"mean_ms": statistics.mean(v), "min_ms": min(v), "max_ms": max(v)}
               for name, v in figures.items()}
    for name, s in summary.items():
        print(f"{name:13s} {s['mean_ms']:.3f} ms CPU a request [{s['min_ms']:.3f}, {s['max_ms']:.3f}]")
    print(f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    save_results(RESULTS, "asgi_cost", load_before, load_after, home=str(args.home),
                 requests=args.requests, rounds=figures, summary=summary)
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
