"""Progress bars for long work, one look for every command (rich, on stderr)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)


def progress_bar(*, transient: bool = False) -> Progress:
    """A rich progress display; use ``with progress_bar() as bar: task = bar.add_task(...)``."""
    return Progress(
        # The description names files a user chose: shown as text, never read as markup.
        SpinnerColumn(), TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=transient,
    )
