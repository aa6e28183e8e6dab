"""What the system holds, for `heartrisk status`: one section per part, each a plain dict.

Sections are small functions so a new part (the registry, the schedule) adds one without touching the
others; :data:`SECTIONS` lists them in the order they are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from heartrisk.config import Settings
from heartrisk.jobs.infer import infer_status
from heartrisk.model.registry import registry_status
from heartrisk.runtime.scheduler import schedule_status
from heartrisk.sources.quarantine import quarantine_status
from heartrisk.store.groups import store_status
from heartrisk.synth.registry import synthesizer_status

SECTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "feature_groups": store_status,
    "registry": registry_status,
    "schedule": schedule_status,
    "synthesizer": synthesizer_status,
    "batch_inference": infer_status,
    "quarantine": quarantine_status,
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
