"""Daft's runner, taken from the settings: its native runner in this process, or a Ray cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from heartrisk.config import ConfigError, Settings

#: Data files Daft's native runner reads at once (its default: 8). Each task holds its file's decoded
#: batches until the plan downstream (scoring) takes them, so with 8 the scoring plan's peak grew with
#: the number of files read: 955 MiB at 4x against 646 at 1x; with one, 731 and 644 (bench/scale.py
#: data, buckets of 250k ids; the rest is the run's tally). Reading is cheap beside scoring, which
#: keeps its own parallelism. The Ray runner ignores this setting (each Ray task reads one file).
SCANS_AT_ONCE = 1


def use_runner(settings: Settings) -> str:
    """Point Daft at the Ray cluster of ``settings.ray_address``, or its native runner; returns which.

    Daft keeps one runner per process: asking for another one later is refused with a clear error.
    """
    import daft

    wanted = "ray" if settings.ray_address else "native"
    current = _current_runner()
    if current is None:
        if wanted == "ray":
            daft.set_runner_ray(address=settings.ray_address, noop_if_initialized=True)
        else:
            daft.set_runner_native()
        return wanted
    if current != wanted:
        raise ConfigError(f"HEARTRISK_RAY_ADDRESS: this process already runs Daft on its {current} runner; "
                          f"start a new process to use the {wanted} one")
    return current


def _current_runner() -> str | None:
    """The runner Daft has set up in this process (None before the first query)."""
    from daft.runners import _get_runner

    runner = _get_runner()
    return None if runner is None else str(runner.name)


def require_daft() -> None:
    """A clear message when the daft engine is asked for and Daft is not installed."""
    try:
        import daft  # noqa: F401
    except ImportError:
        raise ConfigError("HEARTRISK_ENGINE=daft (or a Ray address) needs Daft: "
                          "pip install 'heartrisk[engine]'") from None


def bounded_scans(batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` of a Daft query, run with at most :data:`SCANS_AT_ONCE` files read at once.

    Daft reads its execution settings when the query starts (at the first batch), so they are set
    around the iteration, not around building the plan."""
    import daft

    with daft.execution_config_ctx(scantask_max_parallel=SCANS_AT_ONCE):
        yield from batches
