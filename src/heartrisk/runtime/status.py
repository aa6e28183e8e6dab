"""What the system holds, for `heartrisk status`: one section per part, each a plain dict.

Sections are small functions so a new part (the registry, the schedule) adds one without touching the
others; :data:`SECTIONS` lists them in the order they are shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from heartrisk.config import Settings
from heartrisk.jobs.infer import infer_status
from heartrisk.model.registry import registry_status
from heartrisk.monitoring.reads import erased_models
from heartrisk.runtime.state import JobState, pid_alive
from heartrisk.sources.quarantine import quarantine_status
from heartrisk.store.groups import store_status
from heartrisk.store.lease import read_leases
from heartrisk.store.objects import open_objects
from heartrisk.synth.registry import synthesizer_status


def schedule_status(settings: Settings) -> dict[str, Any]:
    """The `schedule` section of `heartrisk status`: the `up` process, each job's last and next run."""
    data = JobState(settings).read()
    up = dict(data.get("up", {}))
    alive = bool(up) and up.get("stopped_at") is None and pid_alive(up.get("pid"))
    report: dict[str, Any] = {"up": {"running": alive, **{k: v for k, v in up.items() if v is not None}}}
    if not up:
        report["up"] = {"running": False, "note": "`heartrisk up` has not run on this home"}
    jobs: dict[str, Any] = {}
    for name, job in sorted(data["jobs"].items()):
        outcome = job.get("last_outcome")
        if outcome == "running" and not pid_alive(job.get("pid")):
            outcome = "interrupted"
        entry = {
            "schedule": job.get("schedule"),
            "next_run": job.get("next_run") if alive else None,
            "last_outcome": outcome or "never run",
            "last_start": job.get("last_start"),
            "last_end": job.get("last_end"),
            "duration_s": job.get("duration_s"),
            "last_trigger": job.get("last_trigger"),
            "last_summary": job.get("last_summary"),
            "last_error": job.get("last_error"),
            "last_success": job.get("last_success"),
            "failures_in_a_row": job.get("failures", 0),
            "next_retry": job.get("next_retry") if alive else None,
            "runs": job.get("runs", 0),
        }
        jobs[name] = {k: v for k, v in entry.items() if v is not None}
    report["jobs"] = jobs
    return report


def lease_status(settings: Settings) -> dict[str, Any]:
    """The `leases` section: who holds which job or maintenance lease in the shared store, until when."""
    now = time.time()
    leases: dict[str, Any] = {}
    for record, _ in read_leases(open_objects(settings.store_root)):
        state = "free" if record.released else ("expired" if now >= record.expires_at else "held")
        leases[record.name] = {"state": state, "holder": record.holder,
                               "expires": datetime.fromtimestamp(record.expires_at, UTC).isoformat()}
    return leases


SECTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "feature_groups": store_status,
    "registry": registry_status,
    "schedule": schedule_status,
    "synthesizer": synthesizer_status,
    "models_that_learned_from_erased_rows": erased_models,
    "batch_inference": infer_status,
    "quarantine": quarantine_status,
    "leases": lease_status,
}


def collect_status(settings: Settings) -> dict[str, Any]:
    """Every section; a section that fails reports its error instead of hiding the others."""
    report: dict[str, Any] = {"home": str(settings.home.absolute())}
    for name, section in SECTIONS.items():
        try:
            report[name] = section(settings)
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return report
