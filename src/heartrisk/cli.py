"""The `heartrisk` command: a thin layer over the pipelines (DESIGN.md, "Command line").

Each command reads the settings once, calls one pipeline function and prints its result. Errors that a
user can fix (bad file, bad setting, missing model) end in one red line and a non-zero exit, never a
traceback; heavy libraries are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from heartrisk.config import ConfigError, Settings

app = typer.Typer(
    help="heartrisk: heart-disease risk from the 2020 CDC survey, learning every day.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
#: No console markup or emoji codes: messages quote file names and CSV cells, and a cell holding
#: `[link=https://…]click[/link]` became a clickable link in an error message (issue 12). The few
#: styled words are rich ``Text`` objects (:func:`styled`).
out = Console(soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, markup=False, emoji=False)


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style``, then ``rest`` as plain text (never read as markup)."""
    return Text.assemble((label, style), (f" {rest}" if rest else ""))

#: Exceptions that are the user's to fix: shown as one line, exit code 2.
USER_ERRORS: list[type[BaseException]] = [ConfigError]


#: Errors a user can fix, by the module that defines them (module -> class names).
_USER_ERROR_CLASSES: dict[str, tuple[str, ...]] = {
    "heartrisk.dataset": ("DatasetError",),
    "heartrisk.store": ("StoreError",),
    "heartrisk.validation": ("ValidationError",),
    "heartrisk.registry": ("NoModelError", "RegistryError"),
    "heartrisk.pipelines.train": ("TrainError",),
    "heartrisk.pipelines.predict": ("PredictError",),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """The error classes to turn into a one-line message.

    Only modules already imported are asked: an error whose module was never imported cannot have
    been raised, and importing e.g. the training pipeline just to name its error costs seconds
    (scikit-learn) on the way to printing a message about a misspelt path.
    """
    found: list[type[BaseException]] = list(USER_ERRORS)
    for module, names in _USER_ERROR_CLASSES.items():
        if module in sys.modules:
            found.extend(getattr(sys.modules[module], name) for name in names)
    return tuple(found)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn known, fixable errors into one clear message and exit code 2."""
    try:
        yield
    except user_errors() as exc:
        err.print(styled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
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
    out.print(styled("home", "bold", str(report.pop("home"))))
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
    if "jobs" in report.get("schedule", {}):
        from heartrisk.scheduler import schedule_table

        out.print(*schedule_table(report.pop("schedule")), sep="\n")
    for name, section in report.items():
        out.print(section_table(name, section))


def section_table(title: str, section: object) -> Table | Pretty:
    """A status section as a two-column table; nested figures get dotted names (champion_test.f1)."""
    if not isinstance(section, dict):
        return Pretty(section)
    table = Table("", "", title=title, show_header=False, title_justify="left", title_style="bold")

    def add(prefix: str, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and value:
                add(f"{prefix}{key}.", value)
            else:
                table.add_row(f"{prefix}{key}", f"{value:,}" if isinstance(value, int) and
                              not isinstance(value, bool) else str(value))

    add("", section)
    return table


# ---------------------------------------------------------------------------------- model (issue 3)
model_app = typer.Typer(help="The classifier registry: list versions, promote one, roll back.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@app.command("train")
@command
def train_command(
    quick: Annotated[bool, typer.Option(
        "--quick", help="Small sample and a tiny search: under a minute (tests, smoke runs).")] = False,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic/--no-synthetic", help="Train on synthetic rows too, when there are any.")] = True,
    target_recall: Annotated[float | None, typer.Option(
        min=0.01, max=0.99, help="Set the threshold for this recall (screening) instead of best F1.")
    ] = None,
) -> None:
    """Fit, evaluate and register the classifier; promote it only if it beats the champion."""
    from heartrisk.pipelines.train import TrainSettings
    from heartrisk.pipelines.train import train as run_train

    knobs = {"include_synthetic": synthetic, "target_recall": target_recall}
    ts = TrainSettings.for_quick(**knobs) if quick else TrainSettings(**knobs)
    from heartrisk.scheduler import job_lock

    settings = settings_from()
    with job_lock(settings, "train", on_wait=err.print) as run:  # never beside a scheduled job
        result = run_train(settings, ts)
        run.summary = f"version {result.version} ({result.family}): {result.decision}"
    table = Table("family", "treatment", "CV PR-AUC", "test ROC-AUC", "test PR-AUC", "test Brier",
                  "test F1", "search s", "fit s", title="candidates (CV on the training side, "
                  "test on real test records)")
    for row in result.candidates.to_dict("records"):
        test = [f"{row[k]:.3f}" if row.get(k) == row.get(k) else "" for k in
                ("test_roc_auc", "test_pr_auc", "test_brier", "test_f1")]
        fit = f"{row['fit_s']:.1f}" if row["fit_s"] == row["fit_s"] else ""
        table.add_row(("* " if row["chosen"] else "") + row["family"], row["treatment"],
                      f"{row['cv_pr_auc']:.3f} ± {row['cv_pr_auc_std']:.3f}", *test,
                      f"{row['search_s']:.1f}", fit)
    out.print(table)
    m = result.metrics
    out.print(f"version {result.version} ({result.family}, {result.treatment}): ROC-AUC "
              f"{m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f}, Brier {m['brier']:.4f}, F1 {m['f1']:.3f} "
              f"(precision {m['precision']:.3f}, recall {m['recall']:.3f}) at threshold "
              f"{result.threshold:.3f}; {result.split['test_rows']:,} real test records; "
              f"{result.seconds:.0f} s")
    out.print(f"{result.decision}", highlight=False)


@app.command("predict")
@command
def predict_command(
    csv: Annotated[Path, typer.Option("--csv", help="Kaggle-format CSV to score (HeartDisease optional).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the scored rows (CSV).")],
) -> None:
    """Score a Kaggle-format CSV with the champion; bad rows are reported by line and skipped."""
    from heartrisk.dataset import FIRST_DATA_LINE
    from heartrisk.pipelines.predict import PredictSettings, predict_csv

    result = predict_csv(settings_from(), csv, out_path, PredictSettings.from_env())
    out.print(f"{result.path}: scored {result.scored:,} of {result.rows_in_file:,} rows with model "
              f"version {result.model_version} (threshold {result.threshold:.3f}); "
              f"{result.predicted_positive:,} predicted at risk; wrote {result.out}")
    if result.bad_rows:
        err.print(styled(f"{result.bad_rows:,} bad row(s) skipped:", "yellow"))
        for problem in result.problems[:20]:
            err.print("  " + problem.describe(FIRST_DATA_LINE), highlight=False)
        if len(result.problems) > 20:
            err.print(f"  … and {len(result.problems) - 20} more problem(s)")


@model_app.command("list")
@command
def model_list() -> None:
    """Registered versions, newest first, with their test metrics and the gate's decision."""
    from heartrisk.registry import versions

    rows = versions(settings_from())
    if not rows:
        out.print("no registered model yet; run `heartrisk train`")
        return
    table = Table("version", "created (UTC)", "alias", "model", "ROC-AUC", "PR-AUC", "Brier",
                  "threshold", "gate", title="heart-risk-classifier (test metrics on real records)")
    for row in rows:
        tags = row["tags"]
        table.add_row(row["version"], row["created"].strftime("%Y-%m-%d %H:%M"),
                      ", ".join(row["aliases"]), f"{tags.get('family', '')}/{tags.get('treatment', '')}",
                      tags.get("test_roc_auc", ""), tags.get("test_pr_auc", ""),
                      tags.get("test_brier", ""), tags.get("threshold", "")[:5],
                      tags.get("decision", "").split(":")[0])
    out.print(table)
    champion = next((r for r in rows if "champion" in r["aliases"]), None)
    out.print(f"champion: version {champion['version']} ({champion['tags'].get('promoted', '')})"
              if champion else "champion: none (`heartrisk model promote VERSION`)", highlight=False)


@model_app.command("promote")
@command
def model_promote(version: Annotated[str, typer.Argument(help="Version to make champion.")]) -> None:
    """Make VERSION the champion (no gate: the operator decides)."""
    from heartrisk.registry import promote

    promote(settings_from(), version)
    out.print(f"version {version} is now the champion")


@model_app.command("rollback")
@command
def model_rollback() -> None:
    """Make the previous champion the champion again."""
    from heartrisk.registry import rollback

    version = rollback(settings_from())
    out.print(f"rolled back: version {version} is the champion again")


@app.command()
@command
def serve(
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the form, the dashboard and the API.")] = 7860,
) -> None:
    """Serve the risk-check form at /, the JSON API at /api/v1 and its docs at /docs (Ctrl-C stops)."""
    from heartrisk.web.app import WebSettings
    from heartrisk.web.server import serve as run_server

    web = WebSettings(host=host, port=port)  # web settings from the environment: checked first
    web.security.hosts_for(host)
    out.print(f"serving on http://{host}:{port} (form /, API /api/v1, docs /docs)")
    run_server(settings_from(), web)


@app.command()
@command
def up(
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the form, the dashboard and the API.")] = 7860,
    csv: Annotated[Path | None, typer.Option(
        help="Kaggle CSV to ingest into an empty home. Default: HEARTRISK_CSV, else download.")] = None,
    quick: Annotated[bool, typer.Option(
        help="Quick training and a tiny synthesizer fit (tests and demos).")] = False,
    first_model: Annotated[str, typer.Option(help=(
        "An empty home's first classifier: 'quick' serves in minutes, a full training follows in "
        "the background; 'full' serves after the full training."))] = "quick",
    synthetic: Annotated[int, typer.Option(help="Synthetic rows each daily run adds.")] = 100,
    hours: Annotated[float, typer.Option(help="Batch inference scores rows this many hours old.")] = 24,
    daily: Annotated[str | None, typer.Option(help=(
        "When the feature pipeline runs: a crontab line ('0 2 * * *'), 'every 30s|5m|2h' or 'off'. "
        "Default: HEARTRISK_DAILY_SCHEDULE, else 02:00 every day."))] = None,
    infer: Annotated[str | None, typer.Option(help=(
        "When batch inference runs. Default: HEARTRISK_INFER_SCHEDULE, else 02:30 every day."))] = None,
    retrain: Annotated[str | None, typer.Option(help=(
        "When the classifier is retrained (then promoted only if it beats the champion). "
        "Default: HEARTRISK_RETRAIN_SCHEDULE, else Sunday 04:00."))] = None,
    retries: Annotated[int | None, typer.Option(help="Retries of a failed run (default 3).")] = None,
    backoff: Annotated[float | None, typer.Option(
        help="Seconds before the first retry, doubling each time (default 60).")] = None,
    timezone: Annotated[str | None, typer.Option(
        help="Time zone of the crontab lines (default: HEARTRISK_TIMEZONE, else local).")] = None,
    stop_grace: Annotated[float, typer.Option(
        help="On Ctrl-C, seconds a running job may take to finish.")] = 30,
) -> None:
    """Create whatever is missing, then serve and run the daily jobs on schedule (Ctrl-C stops)."""
    import os

    # Before torch or LightGBM load their OpenMP runtime (DESIGN.md, pitfalls).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one per model load
    from heartrisk.pipelines.up import UpError, UpOptions
    from heartrisk.pipelines.up import up as run_up
    from heartrisk.scheduler import JobBusyError, ScheduleSettings

    USER_ERRORS.extend(e for e in (UpError, JobBusyError) if e not in USER_ERRORS)
    schedule = ScheduleSettings.from_env(daily=daily, infer=infer, retrain=retrain, retries=retries,
                                         backoff_s=backoff, timezone=timezone)
    if first_model not in ("quick", "full"):
        raise ConfigError(f"--first-model {first_model!r}: use 'quick' or 'full'")
    options = UpOptions(host=host, port=port, quick=quick, synthetic=synthetic, hours=hours,
                        stop_grace_s=stop_grace, schedule=schedule, first_model=first_model)
    from heartrisk.web.security import SecuritySettings

    SecuritySettings.from_env().hosts_for(host)  # a bad web setting fails now, not after training
    run_up(settings_from(csv=csv), options)


# ---------------------------------------------------------------------------------- synthetic data (issue 4)
synth_app = typer.Typer(help="The CTGAN synthesizer: fit it, measure it, register it, promote it.",
                        no_args_is_help=True)
app.add_typer(synth_app, name="synth")


def _synthetic_data_errors() -> None:
    """Count the synthesizer's and the daily job's errors as the user's to fix (one red line)."""
    import os

    # Before torch or LightGBM load their OpenMP runtime (DESIGN.md, pitfalls).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from heartrisk.pipelines.daily import DailyError
    from heartrisk.synth import SynthError

    USER_ERRORS.extend(e for e in (SynthError, DailyError) if e not in USER_ERRORS)


@synth_app.command("train")
@command
def synth_train(
    rows: Annotated[int | None, typer.Option(min=100, help="Real rows to fit on (default 20,000).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default 200).")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="2 epochs on 2,000 rows: under a minute, poor quality (tests, smoke runs).")
    ] = False,
) -> None:
    """Fit the CTGAN on real rows of `heart`, measure it, register it; champion only if not worse."""
    _synthetic_data_errors()
    from heartrisk.pipelines.synth_train import train_synthesizer
    from heartrisk.scheduler import job_lock
    from heartrisk.synth import SynthSettings

    knobs = {k: v for k, v in {"rows": rows, "epochs": epochs}.items() if v is not None}
    settings = settings_from()
    with job_lock(settings, "synth", on_wait=err.print) as run:  # never beside a scheduled job
        synth = SynthSettings.quick(**knobs) if quick else SynthSettings(**knobs)
        result = train_synthesizer(settings, synth)
        run.summary = f"synthesizer version {result.version}: {result.decision}"
    m, info = result.metrics, result.fit.synthesizer.info
    table = Table("measure", "value", "target", title=(
        f"heart-synthesizer version {result.version}: {info.fit_rows:,} rows, best epoch "
        f"{info.best_epoch} of {info.epochs}; measured on {int(m['eval_rows']):,} held-out real rows"))
    table.add_row("SDMetrics quality (overall)", f"{m['quality_overall']:.3f}", ">= 0.85")
    table.add_row("  column shapes / pair trends",
                  f"{m['quality_column_shapes']:.3f} / {m['quality_column_pair_trends']:.3f}", "")
    table.add_row("positive rate real / raw CTGAN / matched", f"{m['positive_rate_real']:.3f} / "
                  f"{m['positive_rate_synthetic_raw']:.3f} / {m['positive_rate_synthetic']:.3f}", "")
    table.add_row("raw rows repaired / out of range / rejected", f"{m['repaired_share']:.1%} / "
                  f"{m['out_of_range_share']:.1%} / {m['rejected_share']:.1%}", "")
    table.add_row("ROC-AUC TSTR / TRTR", f"{m['tstr_roc_auc']:.3f} / {m['trtr_roc_auc']:.3f}",
                  "gap <= 0.03")
    table.add_row("seconds per epoch / whole fit",
                  f"{m['seconds_per_epoch']:.2f} / {m['fit_seconds']:.0f}", "")
    out.print(table)
    out.print(result.decision, highlight=False)
    if not result.promoted:
        out.print(f"to use it anyway: heartrisk synth promote {result.version}", highlight=False)


@synth_app.command("promote")
@command
def synth_promote(version: Annotated[str, typer.Argument(help="Version to make champion.")]) -> None:
    """Make VERSION the champion synthesizer (no gate: the operator decides)."""
    _synthetic_data_errors()
    from heartrisk.synth_registry import promote_synthesizer

    version = promote_synthesizer(settings_from(), version)
    out.print(f"heart-synthesizer version {version} is now the champion", highlight=False)


@app.command()
@command
def daily(
    synthetic: Annotated[int, typer.Option(
        help="Synthetic rows to add (0 to 100,000; 0: merge submissions only).")] = 100,
    positive_rate: Annotated[float | None, typer.Option(
        help="Share of positive synthetic rows (default: the real rate the synthesizer saw).")] = None,
) -> None:
    """Feature pipeline: N synthetic rows + every new user submission into `heart`, exactly once."""
    _synthetic_data_errors()
    from heartrisk.pipelines.daily import run_daily
    from heartrisk.scheduler import job_lock

    settings = settings_from()
    with job_lock(settings, "daily", on_wait=err.print) as run:  # never beside a scheduled job
        result = run_daily(settings, synthetic=synthetic, positive_rate=positive_rate)
        run.summary = f"{result.synthetic_rows} synthetic and {result.user_rows} user rows"
    what = "finished the interrupted run" if result.resumed else "added"
    version = result.synthesizer_version
    out.print(f"{what} {result.run_id}: {result.synthetic_rows:,} synthetic rows"
              f"{f' (synthesizer version {version})' if version else ''} and {result.user_rows:,} user "
              f"submissions ({result.pending_submissions:,} were pending); "
              f"heart_v1 is at version {result.table_version}")
    if result.abandoned_runs:
        out.print(f"{len(result.abandoned_runs)} earlier run(s) had been killed before writing anything "
                  "and were marked FAILED")
    if "error" in result.maintenance:
        err.print(styled("heart_user maintenance failed:", "yellow", str(result.maintenance["error"])))
    if result.quarantined:
        out.print(f"{result.quarantined:,} implausible submission(s) quarantined instead of merged "
                  "(heart_user_quarantine_v1; `heartrisk status` counts them by rule)")


@app.command()
@command
def infer(
    hours: Annotated[float, typer.Option(
        help="Score the rows of `heart` whose event time is in the last HOURS hours.")] = 24,
) -> None:
    """Batch inference: the champion scores new rows -> heart_predictions + monitoring images."""
    from heartrisk.pipelines.infer import InferError, run_infer

    USER_ERRORS.extend(e for e in (InferError,) if e not in USER_ERRORS)
    from heartrisk.scheduler import job_lock

    settings = settings_from()
    with friendly_errors(), job_lock(settings, "infer", on_wait=err.print) as run:
        result = run_infer(settings, hours=hours)
        run.summary = result.message
    out.print(result.message)
    if result.drift and not result.drift["window"]["enough"]:
        err.print(styled("drift:", "yellow", str(result.drift["window"]["note"])))
    if result.artifacts:
        out.print(f"monitoring images in {result.artifacts[0].parent} (MLflow run {result.run_id})")


@app.command()
@command
def forget(
    submission_id: Annotated[str, typer.Argument(
        help="The reference the person was given when they shared their outcome (a UUID).")],
) -> None:
    """Remove one shared submission from every table; purge their history so time travel cannot read it."""
    from heartrisk.pipelines.forget import ForgetError, check_submission_id
    from heartrisk.pipelines.forget import forget as run_forget
    from heartrisk.scheduler import job_lock

    USER_ERRORS.extend(e for e in (ForgetError,) if e not in USER_ERRORS)
    submission_id = check_submission_id(submission_id)  # before the job lock records anything
    settings = settings_from()
    with job_lock(settings, "forget", on_wait=err.print) as run:  # never beside the daily merge
        result = run_forget(settings, submission_id)
        run.summary = f"removed {result.total} row(s)"  # no id in jobs.json
    out.print(result.message, highlight=False)


def main() -> None:  # pragma: no cover - console entry for `python -m heartrisk`
    app()
