"""Benchmark: a CTGAN epoch with ctgan's own dropout and Gumbel draws against `heartrisk.synth.fast_noise`.

Fits ctgan's CTGAN with the fit's settings (pac 2, batch 500, discriminator learning rate 4e-4, one
torch thread, batch rows drawn as the fit draws them; no weight average, no scoring) on the real fit
rows `heartrisk synth train` would use, for a few epochs, alternating the two ways in one process,
and times every epoch's CPU through the fit's own epoch hook. The first epoch of each fit is left out
(warm-up). Prints the median CPU seconds per epoch of each way and their ratio; saves
bench/results/ctgan-noise.json.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/ctgan_noise.py --home HOME_WITH_HEART [--rows 60000]
        [--epochs 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test/bench helpers
from support.bench import save_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
RESULTS = Path(__file__).resolve().parent / "results" / "ctgan-noise.json"


def epoch_seconds(rows: Any, settings: Any, fast: bool) -> list[float]:
    """Seconds of each epoch after the first, of one fit with ctgan's draws or ours."""
    from heartrisk.features import CATEGORICAL_FEATURES, LABEL
    from heartrisk.synth.batch_rows import indexed_row_draws
    from heartrisk.synth.fast_noise import uniform_noise
    from heartrisk.synth.fit import _epoch_hook, new_ctgan, training_frame

    ticks: list[float] = []
    stack = contextlib.ExitStack()

    def tick(done: int) -> bool:
        if done == 0:  # the data is prepared: draw batch rows the way the fit does
            stack.enter_context(indexed_row_draws(model._data_sampler))
        ticks.append(time.process_time())
        return False

    model = new_ctgan(settings)
    with stack, _epoch_hook(tick), uniform_noise(model) if fast else contextlib.nullcontext():
        model.fit(training_frame(rows), discrete_columns=[*CATEGORICAL_FEATURES, LABEL.name])
    return [b - a for a, b in itertools.pairwise(ticks[1:])]  # ticks[0]: before epoch 1, not counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="a home whose `heart` group is ingested")
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per fit (the first is not counted)")
    parser.add_argument("--rounds", type=int, default=2, help="fits of each way, alternating")
    args = parser.parse_args()

    import torch

    from heartrisk.config import Settings
    from heartrisk.jobs.synth_train import real_rows
    from heartrisk.synth.fit import SynthSettings

    torch.set_num_threads(1)
    settings = SynthSettings(rows=args.rows, epochs=args.epochs)
    rows = real_rows(Settings(home=args.home), settings).fit
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"ctgan": [], "uniform": []}
    for round_ in range(args.rounds):
        for way in ("ctgan", "uniform"):
            seconds = epoch_seconds(rows, settings, fast=way == "uniform")
            times[way].extend(seconds)
            print(f"round {round_ + 1} {way:8} CPU s per epoch: {', '.join(f'{s:.2f}' for s in seconds)}",
                  flush=True)
    load_after = os.getloadavg()
    median = {way: statistics.median(values) for way, values in times.items()}
    ratio = median["uniform"] / median["ctgan"]
    print(f"median CPU s per epoch on {len(rows):,} rows: ctgan's draws {median['ctgan']:.2f}, uniform "
          f"{median['uniform']:.2f} ({100 * (1 - ratio):.0f} % less); load {load_before[0]:.2f} -> "
          f"{load_after[0]:.2f}")
    save_results(RESULTS, "ctgan-noise", load_before, load_after, rows=len(rows), epochs=args.epochs,
                 rounds=args.rounds, cpu_seconds_per_epoch=times, median=median, ratio=ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
