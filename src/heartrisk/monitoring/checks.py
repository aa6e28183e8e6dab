"""Checks: declared conditions on the monitoring report that pass or fail (Evidently's test suites).

:func:`evaluate` reads one :class:`~heartrisk.monitoring.snapshot.Snapshot` (the report the dashboard
draws, so a check and the page never disagree) and the job record, and judges each condition of
:class:`CheckSettings`. A condition that cannot be judged yet (too few rows, nothing served) is
``skipped``, never failed: a quiet service is not a broken one, and the data-volume condition is the
one that notices silence. Results are kept as history (``<home>/monitoring/checks.jsonl``, one line
per run) for the dashboard; ``heartrisk check`` exits 1 when any condition failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from heartrisk.config import settings_from_env
from heartrisk.monitoring.drift import PROBABILITY, DriftReport
from heartrisk.monitoring.subgroups import worst_gap

Status = Literal["pass", "fail", "skipped"]


class CheckSettings(BaseModel):
    """The conditions' limits. Defaults follow Evidently's presets where there is one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A drift report fails at this share of drifted features (Evidently's dataset drift: 0.5; lower
    #: here because 18 columns are few) or when the predicted risk itself drifted.
    drift_share: float = Field(0.3, gt=0, le=1)
    fail_on_risk_drift: bool = True
    #: Fewest requests served (pooled back day by day) before the served population's drift is judged.
    served_min_rows: int = Field(500, ge=1)
    #: Estimated (CBPE) and actual F1 may fall this far below the model's test F1.
    f1_drop: float = Field(0.10, ge=0, le=1)
    #: Actual ROC-AUC of labelled predictions in the window may fall this far below the test ROC-AUC.
    roc_auc_drop: float = Field(0.05, ge=0, le=1)
    #: |observed rate - mean predicted risk| in the window (calibration in the large).
    calibration_gap: float = Field(0.03, ge=0, le=1)
    #: Largest ROC-AUC gap between subgroups of one attribute (groups with enough rows only).
    subgroup_gap: float = Field(0.15, ge=0, le=1)
    #: Fewest labelled rows in the window before performance and calibration are judged.
    min_labelled: int = Field(200, ge=1)
    #: Fewest new ``heart`` rows in the last day (the daily job adds synthetic rows every day).
    min_new_rows: int = Field(1, ge=0)
    #: Lowest SDMetrics overall quality of the synthesizer in use.
    min_synth_quality: float = Field(0.75, ge=0, le=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CheckSettings:
        """Defaults, changed by ``HEARTRISK_CHECK_<NAME>`` variables (``HEARTRISK_CHECK_F1_DROP=0.2``)."""
        names = {name: f"HEARTRISK_CHECK_{name.upper()}" for name in cls.model_fields}
        return settings_from_env(cls, names, "check settings", env)


@dataclass(frozen=True)
class CheckResult:
    """One condition's verdict, the figure behind it and the limit, in words."""

    name: str
    status: Status
    detail: str
    value: float | None = None
    limit: float | None = None


@dataclass
class CheckRun:
    """Every condition of one run."""

    at: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "passed": self.passed, "results": [asdict(r) for r in self.results]}


def _drift(name: str, report: DriftReport | None, config: CheckSettings, what: str) -> CheckResult:
    if report is None:
        return CheckResult(name, "skipped", f"no {what} to compare yet")
    if not report.window.enough:
        return CheckResult(name, "skipped", f"{what}: {report.window.note}")
    share = len(report.drifted) / len(report.rows)
    risk = PROBABILITY in report.drifted
    failed = share >= config.drift_share or (config.fail_on_risk_drift and risk)
    words = f"{what}: {len(report.drifted)} of {len(report.rows)} columns drifted " \
            f"({', '.join(report.drifted) or 'none'})"
    return CheckResult(name, "fail" if failed else "pass", words, round(share, 4), config.drift_share)


def _estimated(snap: Any, config: CheckSettings) -> CheckResult:
    rows = [r for r in snap.served.get("estimated", []) if r.get("f1") is not None]
    test_f1 = (snap.model or {}).get("test_metrics", {}).get("f1")
    if not rows or test_f1 is None:
        return CheckResult("estimated_performance", "skipped", "no day with 10 or more requests served yet")
    last = rows[-1]
    limit = test_f1 - config.f1_drop
    failed = last["f1_high"] < limit  # the whole interval below the line
    return CheckResult("estimated_performance", "fail" if failed else "pass",
                       f"estimated F1 of served requests on {last['day']}: {last['f1']:.3f} "
                       f"[{last['f1_low']:.3f}, {last['f1_high']:.3f}] against test F1 {test_f1:.3f}",
                       round(last["f1"], 4), round(limit, 4))


def _actual(snap: Any, config: CheckSettings) -> CheckResult:
    metrics = snap.metrics_window
    test = (snap.model or {}).get("test_metrics", {})
    if metrics.get("rows", 0) < config.min_labelled or not _finite(metrics.get("roc_auc")) \
            or "roc_auc" not in test:
        return CheckResult("actual_performance", "skipped",
                           f"{metrics.get('rows', 0)} labelled predictions in the window "
                           f"(needs {config.min_labelled})")
    limit = test["roc_auc"] - config.roc_auc_drop
    value = metrics["roc_auc"]
    return CheckResult("actual_performance", "pass" if value >= limit else "fail",
                       f"ROC-AUC {value:.3f} on {metrics['rows']:,} labelled predictions "
                       f"(test {test['roc_auc']:.3f})", round(value, 4), round(limit, 4))


def _calibration(snap: Any, config: CheckSettings) -> CheckResult:
    metrics = snap.metrics_window
    if metrics.get("rows", 0) < config.min_labelled:
        return CheckResult("calibration", "skipped", f"{metrics.get('rows', 0)} labelled predictions "
                                                     f"in the window (needs {config.min_labelled})")
    gap = abs(metrics["positive_rate"] - metrics["mean_probability"])
    return CheckResult("calibration", "pass" if gap <= config.calibration_gap else "fail",
                       f"observed rate {metrics['positive_rate']:.3f} vs mean predicted "
                       f"{metrics['mean_probability']:.3f}", round(gap, 4), config.calibration_gap)


def _subgroups(snap: Any, config: CheckSettings) -> CheckResult:
    table = snap.subgroups
    if table.empty or table["roc_auc"].notna().sum() < 2:
        return CheckResult("subgroup_gap", "skipped", "fewer than two subgroups with enough labelled rows")
    worst = worst_gap(table)
    gap = float(worst["gap"])  # type: ignore[arg-type]
    return CheckResult("subgroup_gap", "pass" if gap <= config.subgroup_gap else "fail",
                       f"largest ROC-AUC gap {gap:.3f} ({worst['attribute']}: {worst['group']} lowest)",
                       round(gap, 4), config.subgroup_gap)


def _volume(snap: Any, config: CheckSettings) -> CheckResult:
    volume = snap.volume
    if volume.empty:
        return CheckResult("data_volume", "fail", "the feature store holds no rows")
    since = pd.Timestamp(snap.generated_at) - pd.Timedelta(days=1)
    recent = int(volume[volume.index >= since.floor("D")].to_numpy().sum())
    return CheckResult("data_volume", "pass" if recent >= config.min_new_rows else "fail",
                       f"{recent:,} rows of heart since {since:%Y-%m-%d}", recent, config.min_new_rows)


def _jobs(jobs: Mapping[str, Mapping[str, Any]]) -> CheckResult:
    failed = sorted(name for name, job in jobs.items() if job.get("last_outcome") == "failed")
    if not jobs:
        return CheckResult("job_failures", "skipped", "no scheduled job has run in this home")
    if failed:
        errors = "; ".join(f"{n}: {jobs[n].get('last_error') or 'failed'}" for n in failed)
        return CheckResult("job_failures", "fail", f"last run failed: {errors}", len(failed), 0)
    return CheckResult("job_failures", "pass", f"the last run of each of {len(jobs)} jobs succeeded", 0, 0)


def _synthesizer(snap: Any, config: CheckSettings) -> CheckResult:
    quality = (snap.synthesizer or {}).get("quality", {}).get("quality_overall")
    if quality is None:
        return CheckResult("synthesizer_quality", "skipped", "no synthesizer registered")
    return CheckResult("synthesizer_quality", "pass" if quality >= config.min_synth_quality else "fail",
                       f"SDMetrics overall quality {quality:.3f}", quality, config.min_synth_quality)


def evaluate(snap: Any, jobs: Mapping[str, Mapping[str, Any]], config: CheckSettings,
             now: datetime) -> CheckRun:
    """Judge every condition on one report and the job record."""
    run = CheckRun(at=now.isoformat(timespec="seconds"))
    if snap.model is None:
        run.results.append(CheckResult("model", "fail", "; ".join(snap.notes) or "no champion model"))
    run.results += [
        _drift("data_drift", snap.drift, config, "new rows of heart"),
        _drift("served_drift", snap.served_drift, config, "people served"),
        _estimated(snap, config), _actual(snap, config), _calibration(snap, config),
        _subgroups(snap, config), _volume(snap, config), _jobs(jobs), _synthesizer(snap, config),
    ]
    return run


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
