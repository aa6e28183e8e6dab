"""The `heartrisk` command: a thin layer over the pipelines (DESIGN.md, "Command line").

Each command reads the settings once, calls one pipeline function and prints its result. Errors that a
user can fix (bad file, bad setting, missing model) end in one red line and a non-zero exit, never a
traceback; heavy libraries are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from heartrisk.config import ConfigError, Settings

app = typer.Typer(
    help="heartrisk: heart-disease risk from the 2020 CDC survey, learning every day.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True)

#: Exceptions that are the user's to fix: shown as one line, exit code 2.
USER_ERRORS: list[type[BaseException]] = [ConfigError]


def user_errors() -> tuple[type[BaseException], ...]:
    from heartrisk.dataset import DatasetError
    from heartrisk.store import StoreError
    from heartrisk.validation import ValidationError

    return (*USER_ERRORS, DatasetError, StoreError, ValidationError)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn known, fixable errors into one clear message and exit code 2."""
    try:
        yield
    except user_errors() as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from None


def settings_from(**overrides: Any) -> Settings:
    with friendly_errors():
        return Settings.from_env(**overrides)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body under :func:`friendly_errors`."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with friendly_errors():
            return func(*args, **kwargs)
    return wrapper


@app.command()
@command
def ingest(
    csv: Annotated[Path | None, typer.Option(
        help="Kaggle CSV (.csv, .csv.gz or .zip). Default: HEARTRISK_CSV, else download.")] = None,
) -> None:
    """Load the Kaggle CSV into the `heart` feature group (re-running adds nothing)."""
    from heartrisk.pipelines.ingest import ingest as run_ingest

    result = run_ingest(settings_from(), csv)
    out.print(
        f"{result.path}: {result.rows_in_file:,} rows, {result.inserted:,} new, "
        f"{result.skipped:,} already stored; heart_v1 is at version {result.table_version} "
        f"(positive rate {result.positive_rate:.2%})"
    )


@app.command()
@command
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """What the store, the registry and the schedule hold."""
    from heartrisk.status import collect_status

    report = collect_status(settings_from())
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    out.print(f"[bold]home[/] {report.pop('home')}")
    groups = report.pop("feature_groups", {})
    table = Table("feature group", "rows", "by source", "version", "last write", title="feature store")
    for name, info in groups.items():
        if not info.get("exists"):
            table.add_row(name, "—", "not created", "", "")
            continue
        sources = ", ".join(f"{k} {v:,}" for k, v in info.get("rows_by_source", {}).items())
        table.add_row(name, f"{info['rows']:,}", sources, str(info["version"]),
                      info["last_write"][:19])
    out.print(table)
    for name, section in report.items():
        out.print(f"[bold]{name}[/]")
        out.print(Pretty(section))


def main() -> None:  # pragma: no cover - console entry for `python -m heartrisk`
    app()
