"""The synthesizer's champion gate: does a new fit replace the champion that feeds `heart` daily?

Every `heartrisk daily` samples from the champion, so one bad fit (a run cut short, a GAN that
collapsed) would otherwise put poor rows into the feature store every day until someone noticed.
The rule compares the new fit's held-out figures with those recorded on the champion's model
version (the tags of :data:`heartrisk.synth.registry.QUALITY_TAGS`):

* no champion, or a champion without both figures to compare with: promote (something must feed
  the daily job, and a champion that cannot defend its title does not keep it);
* otherwise promote only if the new fit is at most ``tolerance`` below the champion on **both**
  the SDMetrics overall quality (marginals and pairs) and the TSTR ROC-AUC (whether the label still
  follows the answers): either one falling alone is enough to keep it out.

Pure: no MLflow here, so the rule is tested on figures alone; the registry reads and writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The figures the gate compares, with the names the decision uses for them.
GATED_METRICS: dict[str, str] = {"quality_overall": "quality", "tstr_roc_auc": "TSTR"}
#: Slack for float arithmetic, so a fit exactly ``tolerance`` below the champion is promoted.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class ChampionFigures:
    """The champion's version and the figures recorded on it (missing or unreadable ones left out)."""

    version: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision:
    """Whether the new fit becomes champion, and why in words with the figures (kept as a tag)."""

    promoted: bool
    text: str

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


def gate(new: Mapping[str, object], champion: ChampionFigures | None, tolerance: float) -> GateDecision:
    """Promote the new fit or keep it out (see the module docstring for the rule)."""
    if champion is None:
        return GateDecision(True, f"promoted: there was no champion ({_figures(new)})")
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
