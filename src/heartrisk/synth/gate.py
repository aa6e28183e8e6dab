"""The synthesizer's champion gate: does a new fit replace the champion that feeds `heart` daily?

Every `heartrisk daily` samples from the champion, so one bad fit (a run cut short, a GAN that
collapsed, a GAN that memorised people) would otherwise put its rows into the feature store, and on
the dashboard, every day until someone noticed. The rule, in order:

1. **privacy first** (:func:`privacy_verdict`, thresholds :class:`PrivacyLimits`): a fit whose privacy
   report (:mod:`heartrisk.synth.privacy`) crosses any threshold, or has no report, is kept out
   whatever its quality; only the operator can promote it (`synth promote --accept-privacy-risk`);
2. no champion, a champion that learned from erased rows (`heartrisk forget`), or a champion
   without both quality figures to compare with: promote (something must feed the daily job, and a
   champion that cannot defend its title does not keep it);
3. otherwise promote only if the new fit is at most ``tolerance`` below the champion on **both**
   the SDMetrics overall quality (marginals and pairs) and the TSTR ROC-AUC (whether the label still
   follows the answers): either one falling alone is enough to keep it out.

Pure: no MLflow here, so the rule is tested on figures alone; the registry reads and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

#: The figures the gate compares, with the names the decision uses for them.
GATED_METRICS: dict[str, str] = {"quality_overall": "quality", "tstr_roc_auc": "TSTR"}
#: Slack for float arithmetic, so a fit exactly ``tolerance`` below the champion is promoted.
_ROUNDING = 1e-9


class PrivacyLimits(BaseModel):
    """The privacy gate's thresholds. Defaults calibrated on the dev data (bench/synth.py re-measures
    them): real fits, quick to default, pass each with margin; a synthesizer that copies its fit rows
    fails each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_membership_auc: float = Field(0.55, ge=0.5, le=1, description=(
        "most the distance attack may tell fit rows from held-out rows (0.5 = not at all)"))
    min_overfitting_protection: float = Field(0.9, ge=0, le=1, description=(
        "SDMetrics DCROverfittingProtection at least this (1 = synthetic rows are no closer to the "
        "fit rows than to held-out rows)"))
    max_copy_excess: float = Field(0.02, ge=0, le=1, description=(
        "most the share of synthetic rows equal to a fit row may exceed the share of held-out real rows "
        "equal to one"))
    max_disclosure_gap: float | None = Field(None, ge=0, le=1, description=(
        "most fit rows' diagnosis may be less protected than held-out rows' (SDMetrics "
        "DisclosureProtection from age, sex, race and BMI); None: reported, not gated. Off by default: "
        "the gap swung from -0.19 to +0.06 between honest fits (a copying synthesizer: +0.14), so a "
        "threshold that stops the copier would also stop honest fits; the membership attack and the "
        "copy count stop the copier on their own"))


#: Each privacy check: the metric, its name in words, whether the limit is a maximum, the limit's field.
PRIVACY_CHECKS: tuple[tuple[str, str, bool, str], ...] = (
    ("privacy_membership_auc", "membership AUC", True, "max_membership_auc"),
    ("privacy_dcr_overfitting_protection", "DCR overfitting protection", False, "min_overfitting_protection"),
    ("privacy_exact_copy_excess", "exact copies above the real-vs-real share", True, "max_copy_excess"),
    ("privacy_disclosure_gap", "disclosure gap (held-out minus fit rows)", True, "max_disclosure_gap"),
)


@dataclass(frozen=True)
class PrivacyVerdict:
    """Whether a fit passes every privacy threshold, the failures, and the figures in words."""

    passed: bool
    text: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChampionFigures:
    """The champion's version and the figures recorded on it (missing or unreadable ones left out),
    and whether it learned from rows erased since (then it cannot defend its title)."""

    version: str
    figures: dict[str, float] = field(default_factory=dict)
    erased: bool = False


@dataclass(frozen=True)
class GateDecision:
    """Whether the new fit becomes champion, and why in words with the figures (kept as a tag), with
    the privacy verdict behind it when there was one."""

    promoted: bool
    text: str
    privacy: PrivacyVerdict | None = None

    def __str__(self) -> str:
        return self.text


def _number(value: object) -> float | None:
    """A finite float, or None for a figure that is missing or was not measured (NaN)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _figures(metrics: Mapping[str, object]) -> str:
    return ", ".join(f"{label} {_shown(_number(metrics.get(key)))}" for key, label in GATED_METRICS.items())


def _shown(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"


def privacy_verdict(metrics: Mapping[str, object], limits: PrivacyLimits) -> PrivacyVerdict:
    """Every privacy threshold checked on the fit's figures; a figure not measured fails."""
    shown, failures = [], []
    for key, label, is_max, limit_name in PRIVACY_CHECKS:
        if getattr(limits, limit_name) is None:
            continue  # reported, not gated
        limit = float(getattr(limits, limit_name))
        value = _number(metrics.get(key))
        sign = "<=" if is_max else ">="
        shown.append(f"{label} {_shown(value)} ({sign} {limit:g})")
        if value is None:
            failures.append(f"{label} was not measured")
        elif (value > limit + _ROUNDING) if is_max else (value < limit - _ROUNDING):
            failures.append(f"{label} {value:.3f} {'above' if is_max else 'below'} {limit:g}")
    if failures:
        return PrivacyVerdict(False, "failed: " + "; ".join(failures), tuple(failures))
    return PrivacyVerdict(True, "passed: " + ", ".join(shown))


def gate(new: Mapping[str, object], champion: ChampionFigures | None, tolerance: float,
         limits: PrivacyLimits | None = None) -> GateDecision:
    """Promote the new fit or keep it out (see the module docstring for the rule). Without ``limits``
    privacy is not judged (only for figures of fits made before the privacy report existed)."""
    privacy = privacy_verdict(new, limits) if limits is not None else None
    if privacy is not None and not privacy.passed:
        return GateDecision(False, f"kept out: privacy {privacy.text} ({_figures(new)})", privacy)
    decision = _quality_gate(new, champion, tolerance)
    text = decision.text if privacy is None else f"{decision.text}; privacy {privacy.text.split(':')[0]}"
    return GateDecision(decision.promoted, text, privacy)


def _quality_gate(new: Mapping[str, object], champion: ChampionFigures | None,
                  tolerance: float) -> GateDecision:
    if champion is None:
        return GateDecision(True, f"promoted: there was no champion ({_figures(new)})")
    if champion.erased:
        return GateDecision(True, f"promoted: champion v{champion.version} learned from erased rows "
                                  f"and cannot stay ({_figures(new)})")
    held: dict[str, float] = {}
    for key in GATED_METRICS:
        value = _number(champion.figures.get(key))
        if value is not None:
            held[key] = value
    missing = [key for key in GATED_METRICS if key not in held]
    if missing:
        return GateDecision(True, (f"promoted: champion v{champion.version} has no recorded "
                                   f"{' or '.join(missing)} to compare with ({_figures(new)})"))
    compared, short = [], []
    for key, label in GATED_METRICS.items():
        mine, theirs = _number(new.get(key)), held[key]
        first = f" vs champion v{champion.version}" if not compared else " vs"
        compared.append(f"{label} {_shown(mine)}{first} {theirs:.3f}")
        if mine is None:
            short.append(f"{label} was not measured")
        elif mine < theirs - tolerance - _ROUNDING:
            short.append(f"{label} is {theirs - mine:.4f} below the champion's, more than the "
                         f"{tolerance:g} tolerance")
    words = ", ".join(compared)
    if short:
        return GateDecision(False, f"kept out: {words}: {'; '.join(short)}")
    return GateDecision(True, f"promoted: {words} (within the {tolerance:g} tolerance or better)")
