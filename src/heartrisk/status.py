"""What the system holds, for `heartrisk status`: one section per part, each a plain dict.

Sections are small functions so a new part (the registry, the schedule) adds one without touching the
others; :data:`SECTIONS` lists them in the order they are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc

from heartrisk.config import Settings
from heartrisk.groups import GROUPS, open_group
from heartrisk.pipelines.infer import infer_status
from heartrisk.quarantine import quarantine_status
from heartrisk.registry import registry_status
from heartrisk.scheduler import schedule_status
from heartrisk.store import FeatureGroup
from heartrisk.synth_registry import synthesizer_status


def group_status(group: FeatureGroup) -> dict[str, Any]:
    """Rows, rows by source, current version and the time of the last write of one group."""
    if not group.exists():
        return {"exists": False, "uri": group.uri}
    table = group.table()
    columns = ["source"] if "source" in group.spec.columns else [group.spec.key[0]]
    data = group.read_arrow(version=table.version(), columns=columns)
    by_source: dict[str, int] = {}
    if "source" in columns:
        counts = pc.value_counts(data.column("source")).to_pylist()
        by_source = {c["values"]: c["counts"] for c in counts}
    last = table.history(1)[0]
    return {
        "exists": True, "uri": group.uri, "rows": data.num_rows, "rows_by_source": by_source,
        "version": table.version(),
        "last_write": datetime.fromtimestamp(last["timestamp"] / 1000, UTC).isoformat(),
        "last_operation": last.get("operation"),
    }


def store_status(settings: Settings) -> dict[str, Any]:
    return {spec.table_name: group_status(open_group(settings, spec)) for spec in GROUPS}


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
