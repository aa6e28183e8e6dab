"""The `heartrisk` commands: a thin layer over the jobs (DESIGN.md, "Command line").

Each command reads the settings once, runs one job (under the home's job lock when it writes, so it
never runs beside a scheduled one: :func:`heartrisk.runtime.lock.run_job`) and prints its result
(:mod:`heartrisk.cli.render`). Errors that a user can fix (:class:`~heartrisk.errors.UserError`: a bad
file, a bad setting, a missing model) end in one red line and exit code 2, never a traceback; heavy
libraries are imported inside the commands so `--help` stays fast.
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

from heartrisk.cli import render
from heartrisk.config import ConfigError, Settings
from heartrisk.errors import UserError
from heartrisk.runtime.lock import run_job

app = typer.Typer(
    help="heartrisk: heart-disease risk from the 2020 CDC survey, learning every day.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
#: No console markup or emoji codes: messages quote file names and CSV cells, and a cell holding
#: `[link=https://…]click[/link]` became a clickable link in an error message (issue 12). The few
#: styled words are rich ``Text`` objects (:func:`heartrisk.cli.render.styled`).
out = Console(soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, markup=False, emoji=False)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn an error the user can fix (:class:`~heartrisk.errors.UserError`) into one clear message
    and exit code 2; any other exception is a bug and keeps its traceback."""
    try:
        yield
    except UserError as exc:
        err.print(render.styled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
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
    from heartrisk.jobs.ingest import ingest as run_ingest

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
    from heartrisk.runtime.status import collect_status

    report = collect_status(settings_from())
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    out.print(*render.status_report(report), sep="\n")


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
    from heartrisk.jobs.train import TrainSettings
    from heartrisk.jobs.train import train as run_train

    knobs = {"include_synthetic": synthetic, "target_recall": target_recall}
    ts = TrainSettings.for_quick(**knobs) if quick else TrainSettings(**knobs)
    settings = settings_from()
    result = run_job(settings, "train", lambda: run_train(settings, ts), on_wait=err.print)
    out.print(render.candidates_table(result.candidates))
    out.print(render.calibration_table(result))
    out.print(render.trained_line(result))
    if result.record_split_metrics:
        out.print(render.split_line(result), highlight=False)
    out.print(f"{result.decision}", highlight=False)


@app.command("predict")
@command
def predict_command(
    csv: Annotated[Path, typer.Option("--csv", help="Kaggle-format CSV to score (HeartDisease optional).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the scored rows (CSV).")],
) -> None:
    """Score a Kaggle-format CSV with the champion; bad rows are reported by line and skipped."""
    from heartrisk.jobs.predict import PredictSettings, predict_csv
    from heartrisk.sources.kaggle import FIRST_DATA_LINE

    result = predict_csv(settings_from(), csv, out_path, PredictSettings.from_env())
    out.print(f"{result.path}: scored {result.scored:,} of {result.rows_in_file:,} rows with model "
              f"version {result.model_version} (threshold {result.threshold:.3f}); "
              f"{result.predicted_positive:,} predicted at risk; wrote {result.out}")
    if result.bad_rows:
        err.print(render.styled(f"{result.bad_rows:,} bad row(s) skipped:", "yellow"))
        for problem in result.problems[:20]:
            err.print("  " + problem.describe(FIRST_DATA_LINE), highlight=False)
        if len(result.problems) > 20:
            err.print(f"  … and {len(result.problems) - 20} more problem(s)")


@model_app.command("list")
@command
def model_list() -> None:
    """Registered versions, newest first, with their test metrics and the gate's decision."""
    from heartrisk.model.registry import versions

    rows = versions(settings_from())
    if not rows:
        out.print("no registered model yet; run `heartrisk train`")
        return
    out.print(render.versions_table(rows))
    champion = next((r for r in rows if "champion" in r["aliases"]), None)
    out.print(f"champion: version {champion['version']} ({champion['tags'].get('promoted', '')})"
              if champion else "champion: none (`heartrisk model promote VERSION`)", highlight=False)


@model_app.command("promote")
@command
def model_promote(version: Annotated[str, typer.Argument(help="Version to make champion.")]) -> None:
    """Make VERSION the champion (no gate: the operator decides)."""
    from heartrisk.model.registry import promote

    promote(settings_from(), version)
    out.print(f"version {version} is now the champion")


@model_app.command("rollback")
@command
def model_rollback() -> None:
    """Make the previous champion the champion again."""
    from heartrisk.model.registry import rollback

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

    _before_torch()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one per model load
    from heartrisk.runtime.schedule import ScheduleSettings
    from heartrisk.runtime.up import UpOptions
    from heartrisk.runtime.up import up as run_up

    schedule = ScheduleSettings.from_env(daily=daily, infer=infer, retrain=retrain, retries=retries,
                                         backoff_s=backoff, timezone=timezone)
    if first_model not in ("quick", "full"):
        raise ConfigError(f"--first-model {first_model!r}: use 'quick' or 'full'")
    options = UpOptions(host=host, port=port, quick=quick, synthetic=synthetic, hours=hours,
                        stop_grace_s=stop_grace, schedule=schedule, first_model=first_model)
    from heartrisk.web.guard.security import SecuritySettings

    SecuritySettings.from_env().hosts_for(host)  # a bad web setting fails now, not after training
    run_up(settings_from(csv=csv), options)


# ---------------------------------------------------------------------------------- synthetic data (issue 4)
synth_app = typer.Typer(help="The CTGAN synthesizer: fit it, measure it, register it, promote it.",
                        no_args_is_help=True)
app.add_typer(synth_app, name="synth")


def _before_torch() -> None:
    """Settings that must be in place before torch or LightGBM load their OpenMP runtime
    (DESIGN.md, pitfalls: busy-waiting threads slow each other tenfold on 2 cores)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@synth_app.command("train")
@command
def synth_train(
    rows: Annotated[int | None, typer.Option(min=100, help="Real rows to fit on (default 60,000).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help=(
        "Most training epochs (default: 40 on 60,000 rows; on fewer rows more, up to 120, for "
        "the same steps)."))] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="2 epochs on 2,000 rows: under a minute, poor quality (tests, smoke runs).")
    ] = False,
    seed: Annotated[int | None, typer.Option(
        min=0, help="Seed of the fit rows, the fit and the measuring (default 0).")] = None,
) -> None:
    """Fit the CTGAN on real rows of `heart`, measure it, register it; champion only if not worse."""
    _before_torch()
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.synth.fit import SynthSettings

    knobs = {k: v for k, v in {"rows": rows, "epochs": epochs, "seed": seed}.items() if v is not None}
    settings = settings_from()
    synth = SynthSettings.quick(**knobs) if quick else SynthSettings(**knobs)
    result = run_job(settings, "synth", lambda: train_synthesizer(settings, synth), on_wait=err.print)
    out.print(render.synthesizer_table(result))
    out.print(render.privacy_table(result))
    out.print(result.decision, highlight=False)
    if not result.promoted:
        risk = "" if result.privacy_passed else " --accept-privacy-risk --reason '<why>'"
        out.print(f"to use it anyway: heartrisk synth promote {result.version}{risk}", highlight=False)


@synth_app.command("promote")
@command
def synth_promote(
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    accept_privacy_risk: Annotated[bool, typer.Option(
        "--accept-privacy-risk", help="Promote a version that failed the privacy gate (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(
        help="Why the privacy risk is accepted (recorded on the version with who accepted it).")] = None,
) -> None:
    """Make VERSION the champion synthesizer (no quality gate: the operator decides; a version that
    failed the privacy gate needs --accept-privacy-risk)."""
    import getpass

    _before_torch()
    from heartrisk.synth.registry import promote_synthesizer

    accepted = None
    if accept_privacy_risk:
        if not reason or not reason.strip():
            raise ConfigError("--accept-privacy-risk needs --reason '<why>' (it is recorded on the version)")
        accepted = f"accepted by {getpass.getuser()}: {reason.strip()}"
    version = promote_synthesizer(settings_from(), version, accept_privacy_risk=accepted)
    out.print(f"heart-synthesizer version {version} is now the champion", highlight=False)


@synth_app.command("scrub")
@command
def synth_scrub() -> None:
    """Rewrite synthesizer versions saved before training rows were stripped (samples do not change)."""
    _before_torch()
    from heartrisk.synth.registry import scrub_synthesizers

    settings = settings_from()
    result = run_job(settings, "synth-scrub", lambda: scrub_synthesizers(settings), on_wait=err.print)
    out.print(f"rewrote version(s) {', '.join(result.versions)}: their files hold no training row now"
              if result.versions else "every synthesizer version is already free of training rows")


@app.command()
@command
def daily(
    synthetic: Annotated[int, typer.Option(
        help="Synthetic rows to add (0 to 100,000; 0: merge submissions only).")] = 100,
    positive_rate: Annotated[float | None, typer.Option(
        help="Share of positive synthetic rows (default: the real rate the synthesizer saw).")] = None,
) -> None:
    """Feature pipeline: N synthetic rows + every new user submission into `heart`, exactly once."""
    _before_torch()
    from heartrisk.jobs.daily import run_daily

    settings = settings_from()
    result = run_job(settings, "daily", lambda: run_daily(settings, synthetic=synthetic,
                                                          positive_rate=positive_rate), on_wait=err.print)
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
        err.print(render.styled("heart_user maintenance failed:", "yellow",
                                str(result.maintenance["error"])))
    if result.quarantined:
        out.print(f"{result.quarantined:,} implausible submission(s) quarantined instead of merged "
                  "(heart_user_quarantine_v1; `heartrisk status` counts them by rule)")


@app.command()
@command
def infer(
    hours: Annotated[float, typer.Option(
        help="Score the rows of `heart` whose event time is in the last HOURS hours.")] = 24,
    engine: Annotated[str | None, typer.Option(help=(
        "local: this process reads the window; daft: Daft scores it partition by partition, here or "
        "on a Ray cluster (needs `pip install heartrisk[engine]`). Default: HEARTRISK_ENGINE, else "
        "daft when a Ray address is set, else local."))] = None,
    ray_address: Annotated[str | None, typer.Option(help=(
        "Ray cluster for the daft engine ('ray://head:10001', 'head:6379', 'auto'). Default: "
        "HEARTRISK_RAY_ADDRESS; unset: Daft's native runner on this machine."))] = None,
) -> None:
    """Batch inference: the champion scores new rows -> heart_predictions + monitoring images."""
    from heartrisk.jobs.infer import run_infer

    settings = settings_from(engine=engine, ray_address=ray_address)
    result = run_job(settings, "infer", lambda: run_infer(settings, hours=hours), on_wait=err.print)
    out.print(result.summary)
    if result.drift and not result.drift["window"]["enough"]:
        err.print(render.styled("drift:", "yellow", str(result.drift["window"]["note"])))
    if result.artifacts:
        out.print(f"monitoring images in {result.artifacts[0].parent} (MLflow run {result.run_id})")


@app.command()
@command
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
) -> None:
    """Judge the monitoring conditions (drift, performance, calibration, subgroups, volume, jobs,
    synthesizer); alert on failures; exit 1 when one failed. Limits: HEARTRISK_CHECK_* variables."""
    from heartrisk.monitoring.checks import CheckSettings
    from heartrisk.runtime.alerts import AlertSettings
    from heartrisk.runtime.check import run_check

    settings = settings_from()
    result = run_check(settings, CheckSettings.from_env(), alerts=AlertSettings.from_env())
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
    else:
        render.checks(out, result)
    if not result.passed:
        raise typer.Exit(1)


@app.command()
@command
def forget(
    submission_id: Annotated[str, typer.Argument(
        help="The reference the person was given when they shared their outcome (a UUID).")],
    retrain_now: Annotated[bool, typer.Option(
        "--retrain-now", help="Replace a champion that learned from it now (else: at the next retrain).")
    ] = False,
) -> None:
    """Remove one shared submission from every table and purge their history so time travel cannot read
    it; mark every model version that learned from it."""
    from heartrisk.jobs.forget import check_submission_id
    from heartrisk.jobs.forget import forget as run_forget

    submission_id = check_submission_id(submission_id)  # before the job lock records anything
    settings = settings_from()
    result = run_job(settings, "forget", lambda: run_forget(settings, submission_id), on_wait=err.print)
    out.print(result.message, highlight=False)
    if retrain_now:
        _before_torch()
        from heartrisk.jobs.erasure import retrain_champions

        done = retrain_champions(settings, lambda name, body: run_job(settings, name, body,
                                                                      on_wait=err.print))
        for line in done.summaries or ["no champion learned from erased rows: nothing to retrain"]:
            out.print(line, highlight=False)


@app.command()
@command
def doctor(
    repair: Annotated[bool, typer.Option(
        "--repair", help="Fix what is safe to fix: duplicate keys, orphan files, expired leases.")] = False,
) -> None:
    """Check every table, the leases and the champions; with --repair fix what is safe (exit 1 if
    problems are left)."""
    from heartrisk.jobs.doctor import doctor as run_doctor

    settings = settings_from()
    result = (run_job(settings, "doctor", lambda: run_doctor(settings, repair=True), on_wait=err.print)
              if repair else run_doctor(settings))
    for finding in result.findings:
        (out if finding.repaired else err).print(finding.line(), highlight=False, markup=False)
    out.print(result.summary, highlight=False)
    if result.unresolved:
        if not repair:
            out.print("run `heartrisk doctor --repair` to fix what can be fixed safely", highlight=False)
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry for `python -m heartrisk`
    app()
