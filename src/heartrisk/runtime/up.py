"""`heartrisk up`: make whatever the home lacks, serve, and run the daily jobs on schedule.

From an empty home: ingest the CSV, train the first classifier, start serving as soon as a champion
exists, then fit the synthesizer in the background and run the feature pipeline, batch inference and
the weekly retrain on schedule (:mod:`heartrisk.runtime.scheduler`). From a full home it only checks and
serves, in seconds. Every step is an ordinary job (the same functions the CLI commands call), run under
the home's job lock and recorded in ``jobs.json``, so ``heartrisk status`` shows how far it got.

Stopping (Ctrl-C, SIGTERM) stops the server, drops queued runs and lets a running job finish for a
grace period; a second Ctrl-C, or the end of the grace period, leaves at once. Either way nothing is
half-written: every table write is one Delta commit, the locks are released by the OS with the process,
and a run cut short is recorded as interrupted and runs again at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.text import Text

from heartrisk.clock import utc_now
from heartrisk.config import Settings
from heartrisk.errors import UserError
from heartrisk.runtime.lock import job_lock
from heartrisk.runtime.schedule import ScheduleSettings
from heartrisk.runtime.scheduler import Job, JobScheduler
from heartrisk.runtime.state import JobState, pid_alive

log = logging.getLogger(__name__)
UP_LOCK = "up.lock"


class UpError(UserError, RuntimeError):
    """`heartrisk up` cannot start (home already served, port taken); the message says what to do."""


class UpOptions(BaseModel):
    """How `heartrisk up` runs: where it serves, how big its jobs are, when they run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=0, le=65535)
    quick: bool = Field(default=False, description="small training and synthesizer fits (tests, demos)")
    first_model: Literal["quick", "full"] = Field(
        default="quick", description=(
            "settings of the classifier trained when the home has none: 'quick' serves within minutes "
            "and a full training follows in the background, promoted if it beats it at the gate; "
            "'full' serves only once the full training is done"))
    synthetic: int = Field(default=100, ge=0, description="synthetic rows each daily run adds")
    hours: float = Field(default=24.0, gt=0, description="batch inference scores rows this recent")
    stop_grace_s: float = Field(default=30.0, ge=0,
                                description="on Ctrl-C, seconds a running job may take to finish")
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)


# ------------------------------------------------------------------------------------------ the jobs
def ingest_job(settings: Settings) -> str:
    from heartrisk.jobs.ingest import ingest

    return ingest(settings, settings.csv).summary


def train_job(settings: Settings, quick: bool) -> str:
    from heartrisk.jobs.train import TrainSettings, train

    return train(settings, TrainSettings.for_quick() if quick else TrainSettings()).summary


def synth_job(settings: Settings, options: UpOptions) -> str:
    from heartrisk.jobs.synth_train import train_synthesizer
    from heartrisk.synth.fit import SynthSettings

    synth = SynthSettings.quick() if options.quick else SynthSettings()
    return train_synthesizer(settings, synth, show_progress=False).summary


def daily_job(settings: Settings, options: UpOptions) -> str:
    from heartrisk.jobs.daily import run_daily

    return run_daily(settings, synthetic=options.synthetic, require_synthesizer=False).summary


def daily_finished_since(settings: Settings, moment: datetime) -> bool:
    from heartrisk.jobs.daily import finished_since

    return finished_since(settings, moment)


def infer_job(settings: Settings, options: UpOptions) -> str:
    """Batch inference, then the checks (their failures alert; the job itself still succeeded)."""
    from heartrisk.jobs.infer import run_infer
    from heartrisk.runtime.check import run_check

    summary = run_infer(settings, hours=options.hours).summary
    try:
        checks = run_check(settings)
    except Exception as exc:  # the predictions are stored: a broken check must not re-run them
        log.exception("the checks could not run")
        return f"{summary}; checks could not run: {exc}"
    failed = ", ".join(r.name for r in checks.failed)
    return f"{summary}; checks: {'failed ' + failed if failed else 'all passed'}"


def has_heart_rows(settings: Settings) -> bool:
    """Whether ``heart`` holds rows, from the Delta log alone (no data read: a full home starts fast).
    Ingest is the first writer of ``heart`` and writes in one commit, so rows mean it ran."""
    from heartrisk.store.groups import HEART, open_group

    heart = open_group(settings, HEART)
    if not heart.exists():
        return False
    return heart.table().get_add_actions(flatten=True).num_rows > 0  # inserts never add empty files


def has_champion(settings: Settings) -> bool:
    from heartrisk.model.registry import has_champion as registry_has_champion

    return registry_has_champion(settings)


def has_full_training(settings: Settings) -> bool:
    """Whether a training run with the full settings has finished in this home (any way it ran)."""
    from heartrisk.jobs.train import EXPERIMENT
    from heartrisk.tracking import find_runs

    return bool(find_runs(settings, EXPERIMENT, "tags.quick = 'False' and attributes.status = 'FINISHED'"))


def has_synthesizer(settings: Settings) -> bool:
    from heartrisk.synth.registry import synthesizer_status

    status = synthesizer_status(settings)  # a champion retired by `heartrisk forget` is refitted at start
    return bool(status.get("registered")) and "learned_from_erased_rows" not in status


def never_ran(settings: Settings, name: str) -> Callable[[], bool]:
    """For a job that has never run in this home: run it once at start, so the first start fills
    the dashboard instead of waiting for tomorrow's schedule."""
    return lambda: "last_start" not in JobState(settings).job(name)


def build_scheduler(settings: Settings, options: UpOptions) -> JobScheduler:
    """The scheduled jobs, in the order they run when several are due at start."""
    schedule = options.schedule
    from heartrisk.runtime.check import alert_job_gave_up

    scheduler = JobScheduler(settings, schedule,
                             on_gave_up=lambda name, retries, error: alert_job_gave_up(
                                 settings, name, retries, error))
    scheduler.add(Job("synth", lambda: synth_job(settings, options), None,
                      run_at_start=lambda: not has_synthesizer(settings),
                      description="fit the CTGAN synthesizer (when none is registered)"))
    scheduler.add(Job("daily", lambda: daily_job(settings, options), schedule.schedule("daily"),
                      run_at_start=never_ran(settings, "daily"),
                      finished_since=lambda moment: daily_finished_since(settings, moment),
                      description="feature pipeline: synthetic rows + user submissions into heart"))
    scheduler.add(Job("infer", lambda: infer_job(settings, options), schedule.schedule("infer"),
                      run_at_start=never_ran(settings, "infer"),
                      description="batch inference on new rows into heart_predictions"))
    scheduler.add(Job("train", lambda: train_job(settings, options.quick), schedule.schedule("retrain"),
                      run_at_start=lambda: not options.quick and not has_full_training(settings),
                      description="retrain; promoted only if it beats the champion"))
    return scheduler


# ------------------------------------------------------------------------------------------ stopping
class Stop:
    """SIGINT and SIGTERM both stop `up`. The first raises KeyboardInterrupt in the main thread,
    interrupting start-up work or the wait for a signal; once stopping, another one leaves at once."""

    def __init__(self) -> None:
        self.on_force: Callable[[], None] | None = None

    def handler(self, signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def force(self, _signum: int, _frame: object) -> None:
        if self.on_force is not None:
            self.on_force()

    def forcing(self, on_force: Callable[[], None]) -> None:
        """From now on a signal calls ``on_force`` (which leaves the process)."""
        self.on_force = on_force
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.force)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stop]:
        previous = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def check_port(host: str, port: int) -> None:
    """Fail before minutes of start-up work, not after, when the port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UpError(f"cannot serve on {host}:{port}: {exc.strerror}; stop what uses it or "
                          "pass --port") from None


@contextlib.contextmanager
def instance_lock(settings: Settings) -> Iterator[None]:
    """One `up` per home: two would run every job twice and fight over the port."""
    lock = FileLock(str(settings.locks_dir / UP_LOCK))
    try:
        lock.acquire(timeout=2)
    except Timeout:
        up = JobState(settings).read().get("up", {})
        holder = f" (pid {up['pid']})" if pid_alive(up.get("pid")) else ""
        raise UpError(f"`heartrisk up`{holder} is already running on {settings.home.absolute()}; "
                      "stop it first, or use another HEARTRISK_HOME") from None
    try:
        yield
    finally:
        lock.release()


# ------------------------------------------------------------------------------------------ up
class Up:
    """One run of `heartrisk up`; :meth:`run` returns when stopped."""

    def __init__(self, settings: Settings, options: UpOptions, console: Console | None = None) -> None:
        self.settings = settings
        self.options = options
        # URLs stay whole; no markup: job summaries and errors quote data (see cli.py).
        self.console = console or Console(stderr=True, soft_wrap=True, markup=False, emoji=False)
        self.state = JobState(settings)
        self.server: Any = None
        self.scheduler: JobScheduler | None = None
        self.preloading: threading.Thread | None = None
        self.started = time.monotonic()

    def say(self, text: str, style: str = "") -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(Text.assemble((f"{datetime.now():%H:%M:%S} +{elapsed:5.1f}s", "dim"), " ",
                                         (text, style)), highlight=False)

    def phase(self, text: str, **values: Any) -> None:
        self.state.update_up(phase=text, **values)
        self.say(text, style="bold")

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise UpError("`heartrisk up` must run in the main thread (it handles Ctrl-C and SIGTERM)")
        settings, options = self.settings, self.options
        settings.ensure_home()
        stop = Stop()
        with instance_lock(settings):
            check_port(options.host, options.port)
            with stop.installed():
                self.state.update_up(pid=os.getpid(), started_at=utc_now().isoformat(),
                                     stopped_at=None, serving_at=None, urls=None, quick=options.quick)
                interrupted = self.state.mark_interrupted()
                if interrupted:
                    self.say(f"cut short last time, will run again: {', '.join(interrupted)}")
                try:
                    self.preload_web()
                    self.bootstrap()
                    self.serve()
                    self.schedule()
                    self.phase("serving; jobs run on schedule (Ctrl-C stops)")
                    while True:  # the signal handler raises KeyboardInterrupt here
                        time.sleep(3600)
                except KeyboardInterrupt:
                    self.console.print()
                finally:
                    self.shutdown(stop)

    def preload_web(self) -> None:
        """Import the web stack (Gradio, FastAPI: seconds) while the home is checked, so a full home
        serves sooner. A failure here resurfaces, with its message, when the server starts."""
        def load() -> None:
            with contextlib.suppress(Exception):
                import heartrisk.web.server  # noqa: F401

        self.preloading = threading.Thread(target=load, name="preload-web", daemon=True)
        self.preloading.start()

    def preload_done(self) -> None:
        """Wait for :meth:`preload_web` before a job imports the training stack: scikit-learn's
        modules import each other in a cycle, and two threads importing it from different entry
        points at once can fail with "partially initialized module" (seen once in `heartrisk up`)."""
        if self.preloading is not None:
            self.preloading.join()

    def bootstrap(self) -> None:
        """Ingest and train in the foreground, each only if missing: nothing to serve without them."""
        settings = self.settings
        self.phase("checking the home")
        if not has_heart_rows(settings):
            self.preload_done()
            self.phase("ingesting the Kaggle CSV into heart")
            with job_lock(settings, "ingest", trigger="start", on_wait=self.say) as run:
                run.summary = ingest_job(settings)
            self.say(f"ingest: {run.summary}")
        if not has_champion(settings):
            quick = self.options.quick or self.options.first_model == "quick"
            detail = "quick settings" if quick else "full settings"
            if quick and not self.options.quick:
                detail += "; a full training follows in the background"
            self.preload_done()
            self.phase(f"training the first classifier ({detail})")
            with job_lock(settings, "train", trigger="start", on_wait=self.say) as run:
                run.summary = train_job(settings, quick)
            self.say(f"train: {run.summary}")
            if not has_champion(settings):
                raise UpError("training registered no champion; see `heartrisk status`")

    def serve(self) -> None:
        from heartrisk.web.app import WebSettings
        from heartrisk.web.server import BackgroundServer

        self.phase("starting the web server")
        web = WebSettings(host=self.options.host, port=self.options.port)
        server = BackgroundServer(self.settings, web)
        try:
            server.start(timeout=120)
        except RuntimeError as exc:
            raise UpError(f"the web server did not start on {web.host}:{web.port}: {exc}") from None
        self.server = server
        base = f"http://{'127.0.0.1' if web.host in ('0.0.0.0', '::') else web.host}:{server.port}"
        urls = {"form": f"{base}/", "dashboard": f"{base}/monitor", "api_docs": f"{base}/docs",
                "health": f"{base}/api/v1/health"}
        self.state.update_up(urls=urls, serving_at=utc_now().isoformat(),
                             seconds_to_serve=round(time.monotonic() - self.started, 1))
        self.print_where(urls)

    def print_where(self, urls: dict[str, str]) -> None:
        c, home = self.console, self.settings.home
        c.rule(Text("heartrisk is up", style="bold green"))
        c.print(f"  risk check form   {urls['form']}")
        c.print(f"  monitoring        {urls['dashboard']}  {operator_hint(self.settings)}")
        c.print(f"  API docs          {urls['api_docs']}")
        c.print(f"  MLflow UI         {tool('mlflow')} ui --backend-store-uri {self.settings.tracking_uri} "
                "--port 5000")
        c.print(f"  jobs and data     HEARTRISK_HOME={home} {tool('heartrisk')} status")
        c.rule()

    def schedule(self) -> None:
        self.phase("starting the scheduler")
        self.scheduler = build_scheduler(self.settings, self.options)
        queued = self.scheduler.start()
        if queued:
            self.say(f"running now, in the background: {', '.join(queued)}")
        for name, when in self.scheduler.next_runs(scheduled_only=True).items():
            if when is not None:
                self.say(f"{name}: next scheduled run {when:%Y-%m-%d %H:%M:%S %Z}")

    def shutdown(self, stop: Stop) -> None:
        """Stop serving, stop the clock, give the running job its grace period, then leave."""
        stop.forcing(self.leave_now)
        self.state.update_up(phase="stopping")
        if self.server is not None:
            self.say("stopping the web server")
            self.server.stop()
        if self.scheduler is not None:
            current = self.scheduler.current()
            if current is not None:
                self.say(f"waiting up to {self.options.stop_grace_s:g} s for {current[0]} to finish "
                         "(Ctrl-C again to stop now; it will run again at the next start)")
            if self.scheduler.shutdown(wait_s=self.options.stop_grace_s) is not None:
                self.leave_now()
        self.state.update_up(phase="stopped", stopped_at=utc_now().isoformat(), urls=None)
        self.say("stopped")

    def leave_now(self) -> None:
        """Exit at once, a job still running. Its thread cannot be interrupted, but its writes are
        single Delta commits and the OS drops its locks: at most this run is lost, and the next
        start runs it again (it is recorded as interrupted)."""
        current = self.scheduler.current() if self.scheduler is not None else None
        with contextlib.suppress(Exception):
            if current is not None:
                self.state.update_job(current[0], last_outcome="interrupted",
                                      last_error="stopped with `heartrisk up` before the end of the run")
            self.state.update_up(phase="stopped", stopped_at=utc_now().isoformat(), urls=None)
        self.say(f"stopped; {current[0]} was cut short and runs again at the next start"
                 if current else "stopped")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)


def tool(name: str) -> str:
    """How to call a command of this environment (the venv's bin may not be on PATH)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def operator_hint(settings: Settings) -> str:
    """Where the dashboard's password is (the server prints it once, when it makes it)."""
    from heartrisk.web.guard.auth import PASSWORD_ENV, USERNAME, password_path

    where = f"${PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else str(password_path(settings))
    return f"(user {USERNAME}, password in {where})"


def configure_logging() -> None:
    """Job progress on the terminal: our loggers at INFO, libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("heartrisk.runtime")  # the scheduler, the job record, `up` itself
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(handler)
    logger.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def up(settings: Settings, options: UpOptions | None = None) -> None:
    """Bring the system up on ``settings.home`` and run until stopped."""
    configure_logging()
    Up(settings, options or UpOptions()).run()
