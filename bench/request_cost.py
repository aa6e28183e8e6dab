"""Benchmark: the CPU one prediction costs inside the server process, without HTTP (issues 16 and 17).

Loads the champion of a home the way the server does (``ModelCache``: compiled encoder, compiled trees,
the version's survey reference) and times ``risk.score`` plus the JSON of the response for random valid
answers (a quarter Unknown), one person per call as the API makes them: the bare risk, the risk with
explanations (the baseline: the response before issue 17), and the whole default response with the risk
in context. CPU time (``time.process_time``) per call, averaged over ``--requests`` calls, two rounds
(the first warms the caches; both are printed). Saves bench/results/request_cost.json.

    .venv/bin/python bench/request_cost.py --home HOME [--requests 400]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.bench import save_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "request_cost.json"
#: (explanations, context): the bare risk, the explained response (baseline), the default response.
VARIANTS = ((False, False), (True, False), (True, True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="a home with a champion")
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    from heartrisk.config import Settings
    from heartrisk.web.risk_check.model_cache import ModelCache
    from heartrisk.web.risk_check.risk import score
    from heartrisk.web.risk_check.scorer import random_rows

    cache = ModelCache(Settings(home=args.home))
    cache.refresh()
    scorer = cache.get()
    people = random_rows(args.requests, seed=7)
    load_before = os.getloadavg()
    rounds = []
    for round_ in (1, 2):
        figures = {}
        for explain, context in VARIANTS:
            started = time.process_time()
            for person in people:
                score(scorer, [person], explain, context)[0].model_dump_json()
            per_call = (time.process_time() - started) / len(people)
            figures[f"explain={explain} context={context}"] = per_call * 1e3
        rounds.append(figures)
        print(f"round {round_}: " + "; ".join(f"{k}: {v:.3f} ms CPU" for k, v in figures.items()), flush=True)
    load_after = os.getloadavg()
    booster = scorer.model.pipeline.named_steps["classify"]
    print(f"model version {scorer.loaded.version} ({scorer.loaded.family}, {type(booster).__name__}); "
          f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    save_results(RESULTS, "request_cost", load_before, load_after, home=str(args.home),
                 version=scorer.loaded.version, requests=args.requests, rounds=rounds)
    print(f"saved {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
