"""Every error a user can fix is a UserError, and the CLI prints any of them as one line, exit 2."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import typer
from typer.testing import CliRunner

import heartrisk
from heartrisk.cli.app import command
from heartrisk.errors import UserError

#: Errors that never reach a person at the command line: the web server answers them itself (a JSON
#: body with a key given twice is a 422, web/risk_check/strict_json.py).
#: Internal signals, caught where they are raised: a lost conditional write is retried or reported as a
#: StoreError/JobBusyError naming the holder (store/objects.py, store/lease.py).
SERVER_ONLY = {"ModelUnavailableError", "WriterStoppedError", "ConditionFailedError", "DuplicateKeyError"}


def heartrisk_errors() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(heartrisk.__path__, "heartrisk."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, Exception) and value.__module__.startswith("heartrisk."):
                found[name] = value
    return found


def test_every_error_of_ours_is_a_user_error_or_answered_by_the_server() -> None:
    errors = heartrisk_errors()
    assert {"ConfigError", "DatasetError", "StoreError", "ValidationError", "NoModelError", "TrainError",
            "SynthError", "DailyError", "InferError", "ForgetError", "PredictError", "UpError",
            "JobBusyError"} <= set(errors)
    for name, error in errors.items():
        if name not in SERVER_ONLY and error is not UserError:
            assert issubclass(error, UserError), name
            assert issubclass(error, (ValueError, RuntimeError)), name  # what callers caught before


def test_any_user_error_is_one_line_and_exit_2() -> None:
    class NewKindOfMistakeError(UserError):
        """A user error nobody registered anywhere."""

    app = typer.Typer()

    @app.command()
    @command
    def fail() -> None:
        raise NewKindOfMistakeError("the thing is wrong; do this instead")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert result.output.strip() == "error: the thing is wrong; do this instead"
