"""What the `heartrisk` command prints: the results of the jobs and the status, as rich tables and lines.

Kept apart from the commands (:mod:`heartrisk.cli.app`) so each command stays a few lines: read the
settings, run one job, print what it returns through one of these functions.

Nothing here is console markup: job summaries, errors and file names quote data (a CSV cell holding
``[link=…]`` became a clickable link in an error message, issue 12), so styled words are rich ``Text``
and the consoles print with ``markup=False``.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text

from heartrisk.runtime.state import parse_time

#: How a job's last outcome is coloured in the status table.
OUTCOME_COLOURS = {"ok": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def styled(label: str, style: str, rest: str = "") -> Text:
    """``label`` in ``style``, then ``rest`` as plain text (never read as markup)."""
    return Text.assemble((label, style), (f" {rest}" if rest else ""))


# ---------------------------------------------------------------------------------------- status
def status_report(report: dict[str, Any]) -> list[RenderableType]:
    """`heartrisk status` for people: the home, the feature store, the jobs, then every other section."""
    report = dict(report)
    shown: list[RenderableType] = [styled("home", "bold", str(report.pop("home"))),
                                   store_table(report.pop("feature_groups", {}))]
    if "jobs" in report.get("schedule", {}):
        shown += schedule_table(report.pop("schedule"))
    synthesizer = report.get("synthesizer")
    privacy = synthesizer.get("privacy") if isinstance(synthesizer, dict) else None
    if privacy is not None:
        report["synthesizer"] = {k: v for k, v in synthesizer.items() if k != "privacy"}
    for name, section in report.items():
        shown.append(section_table(name, section))
        if name == "synthesizer" and privacy is not None:
            shown.append(privacy_rows_table(privacy, f"synthesizer v{synthesizer.get('version')} privacy "
                                                     "(held-out real rows the fit never saw)"))
    return shown


def store_table(groups: dict[str, Any]) -> Table:
    """One row per feature group; a group (or the whole section) that could not be read is a row
    saying why, in red (it crashed `status` with ``AttributeError`` on the section's error text)."""
    table = Table("feature group", "rows", "by source", "version", "last write", title="feature store")
    for name, info in groups.items():
        if not isinstance(info, dict) or info.get("error"):  # the section's {"error": text}, or a group's
            why, shown = (info["error"], name) if isinstance(info, dict) else (info, "every group")
            table.add_row(shown, "—", Text(f"cannot be read: {why}", style="red"), "", "")
            continue
        if not info.get("exists"):
            table.add_row(name, "—", "not created", "", "")
            continue
        sources = ", ".join(f"{k} {v:,}" for k, v in info.get("rows_by_source", {}).items())
        table.add_row(name, f"{info['rows']:,}", sources, str(info["version"]), info["last_write"][:19])
    return table


def schedule_table(section: dict[str, Any]) -> list[RenderableType]:
    """The `schedule` section for people: a line about `up`, then one row per job."""
    up = section.get("up", {})
    if up.get("running"):
        rest = f"pid {up.get('pid')}: {up.get('phase', '')}"
        if up.get("urls"):
            rest += f" · {up['urls'].get('form')}"
    else:
        stopped = f" (stopped {local_time(up['stopped_at'])})" if up.get("stopped_at") else ""
        rest = "is not running" + stopped
    head = styled("heartrisk up", "bold", rest)  # Text: job messages are never markup
    table = Table("job", "schedule", "next run", "last run", "outcome", "took", "summary or error",
                  title="jobs")
    for name, job in section.get("jobs", {}).items():
        outcome = job.get("last_outcome", "")
        shown = Text(outcome, style=OUTCOME_COLOURS.get(outcome, ""))
        if job.get("failures_in_a_row"):
            shown.append(f" ({job['failures_in_a_row']} in a row)")
        next_run = f"retry {local_time(job['next_retry'])}" if job.get("next_retry") else local_time(
            job.get("next_run"))
        table.add_row(name, job.get("schedule", ""), next_run, local_time(job.get("last_start")), shown,
                      f"{job['duration_s']:.1f} s" if job.get("duration_s") is not None else "",
                      Text(job.get("last_error") or job.get("last_summary") or ""))
    return [head, table]


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


def local_time(text: str | None) -> str:
    """An ISO time from the job record as local wall-clock time, for people."""
    moment = parse_time(text)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


# ---------------------------------------------------------------------------------------- classifier
def candidates_table(candidates: Any) -> Table:
    """Every (family, treatment) searched, the chosen one starred."""
    table = Table("family", "treatment", "CV PR-AUC", "test ROC-AUC", "test PR-AUC", "test Brier",
                  "test F1", "search s", "fit s", title="candidates (CV on the training side, "
                  "test on real test records)")
    for row in candidates.to_dict("records"):
        test = [f"{row[k]:.3f}" if row.get(k) == row.get(k) else "" for k in
                ("test_roc_auc", "test_pr_auc", "test_brier", "test_f1")]
        fit = f"{row['fit_s']:.1f}" if row["fit_s"] == row["fit_s"] else ""
        table.add_row(("* " if row["chosen"] else "") + row["family"], row["treatment"],
                      f"{row['cv_pr_auc']:.3f} ± {row['cv_pr_auc_std']:.3f}", *test,
                      f"{row['search_s']:.1f}", fit)
    return table


def trained_line(result: Any) -> str:
    """The new version's test figures in one line."""
    m = result.metrics
    return (f"version {result.version} ({result.family}, {result.treatment}): ROC-AUC "
            f"{m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f}, Brier {m['brier']:.4f}, F1 {m['f1']:.3f} "
            f"(precision {m['precision']:.3f}, recall {m['recall']:.3f}) at threshold "
            f"{result.threshold:.3f}; {result.split['test_rows']:,} real test records; "
            f"{result.seconds:.0f} s")


def calibration_table(result: Any) -> Table:
    """The calibrations compared on the held-out slice (out of fold), the kept one starred."""
    table = Table("calibration", "Brier", "ECE", title="calibration (out of fold on the held-out slice; "
                  "lowest Brier kept)")
    for row in result.calibrations or []:
        table.add_row(("* " if row["chosen"] else "") + row["method"], f"{row['brier']:.5f}",
                      f"{row['ece']:.4f}")
    return table


def split_line(result: Any) -> str:
    """The same recipe's test scores on the record-id split, beside the answer-profile split's."""
    m, r = result.metrics, result.record_split_metrics
    if not r:
        return ""
    return (f"test split by answer profile (gated on): ROC-AUC {m['roc_auc']:.3f}, PR-AUC {m['pr_auc']:.3f}, "
            f"Brier {m['brier']:.4f}; by record id (same recipe refitted): ROC-AUC {r['roc_auc']:.3f}, "
            f"PR-AUC {r['pr_auc']:.3f}, Brier {r['brier']:.4f}")


def versions_table(rows: list[dict[str, Any]]) -> Table:
    """The registry's classifier versions, newest first."""
    table = Table("version", "created (UTC)", "alias", "model", "ROC-AUC", "PR-AUC", "Brier",
                  "threshold", "gate", title="heart-risk-classifier (test metrics on real records)")
    for row in rows:
        tags = row["tags"]
        table.add_row(row["version"], row["created"].strftime("%Y-%m-%d %H:%M"),
                      ", ".join(row["aliases"]), f"{tags.get('family', '')}/{tags.get('treatment', '')}",
                      tags.get("test_roc_auc", ""), tags.get("test_pr_auc", ""),
                      tags.get("test_brier", ""), tags.get("threshold", "")[:5],
                      tags.get("decision", "").split(":")[0])
    return table


# ---------------------------------------------------------------------------------------- synthesizer
def synthesizer_table(result: Any) -> Table:
    """A new synthesizer's quality on held-out real rows, beside the targets."""
    m, info = result.metrics, result.fit.synthesizer.info
    table = Table("measure", "value", "target", title=(
        f"heart-synthesizer version {result.version}: {info.fit_rows:,} rows, best epoch "
        f"{info.best_epoch} of {info.epochs}; measured on {int(m['eval_rows']):,} held-out real rows"))
    table.add_row("SDMetrics quality (overall)", f"{m['quality_overall']:.3f}", ">= 0.92")
    table.add_row("  column shapes / pair trends",
                  f"{m['quality_column_shapes']:.3f} / {m['quality_column_pair_trends']:.3f}", "")
    table.add_row("positive rate real / raw CTGAN / matched", f"{m['positive_rate_real']:.3f} / "
                  f"{m['positive_rate_synthetic_raw']:.3f} / {m['positive_rate_synthetic']:.3f}", "")
    table.add_row("raw rows repaired / out of range / rejected", f"{m['repaired_share']:.1%} / "
                  f"{m['out_of_range_share']:.1%} / {m['rejected_share']:.1%}", "")
    table.add_row("ROC-AUC TSTR / TRTR", f"{m['tstr_roc_auc']:.3f} / {m['trtr_roc_auc']:.3f}",
                  "gap <= 0.02")
    table.add_row("seconds per epoch / whole fit (CPU seconds)",
                  f"{m['seconds_per_epoch']:.2f} / {m['fit_seconds']:.0f} "
                  f"({m.get('fit_cpu_seconds', 0):.0f})",
                  "")
    return table


def privacy_table(result: Any) -> Table:
    """A new synthesizer's privacy report beside the real-vs-real baselines and the gate's limits."""
    from heartrisk.synth.privacy import privacy_rows

    limits = result.limits.model_dump() if result.limits is not None else {}
    sizes = result.privacy.sizes if result.privacy is not None else {}
    title = (f"privacy of version {result.version}: {sizes.get('synthetic_rows', 0):,} synthetic rows; "
             f"{sizes.get('attacked_members', 0):,} fit and {sizes.get('attacked_non_members', 0):,} "
             "held-out rows attacked")
    return privacy_rows_table(privacy_rows(result.metrics, limits), title)


def privacy_rows_table(rows: dict[str, dict[str, Any]], title: str) -> Table:
    """Privacy rows (:func:`heartrisk.synth.privacy.privacy_rows`) as a table."""
    table = Table("measure", "synthetic", "real vs real", "gate", "", title=title)
    for label, row in rows.items():
        passed = row.get("passed")
        mark = Text("") if passed is None else (Text("pass", "green") if passed else Text("FAIL", "bold red"))
        baseline = row.get("real_vs_real")
        digits = 1 if label.startswith("seconds") else 3
        table.add_row(label, f"{row['value']:.{digits}f}", "" if baseline is None else f"{baseline:.3f}",
                      row.get("limit", ""), mark)
    if not rows:
        table.add_row("not measured (fitted before the privacy report)", "", "", "", "")
    return table


# ---------------------------------------------------------------------------------------- checks
CHECK_COLOURS = {"pass": "green", "fail": "red", "skipped": "yellow"}


def checks(console: Any, run: Any) -> None:
    """`heartrisk check`: one line per condition, coloured by its verdict, then the overall verdict."""
    table = Table("condition", "verdict", "value", "limit", "detail", title=f"checks at {run.at}")
    for r in run.results:
        colour = CHECK_COLOURS.get(r.status, "white")
        table.add_row(r.name, Text(r.status, colour), "" if r.value is None else f"{r.value:g}",
                      "" if r.limit is None else f"{r.limit:g}", r.detail)
    console.print(table)
    failed = [r.name for r in run.failed]
    verdict = f"failed: {', '.join(failed)}" if failed else "all conditions passed"
    console.print(Text(verdict, "red" if failed else "green"))
