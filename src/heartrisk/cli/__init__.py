"""The `heartrisk` command (``heartrisk.cli:app``, the console entry point)."""

from heartrisk.cli.app import app, main

__all__ = ["app", "main"]
