"""The dashboard's HTML: plain server-rendered sections with the plotly charts embedded.

Plain HTML rather than a second Gradio app: it is one request, loads no framework, works behind the
same password as the JSON API and degrades to readable tables when a chart has nothing to draw.
Every value is escaped; nothing here reads data, it only lays out a
:class:`~heartrisk.monitoring.snapshot.Snapshot`.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import plotly.graph_objects as go

from heartrisk.monitoring.drift import psi_level
from heartrisk.monitoring.snapshot import Snapshot
from heartrisk.web.dashboard import charts

PLOTLY_JS = "/monitor/assets/plotly.min.js"
WINDOWS = ((24, "24 h"), (24 * 7, "7 days"), (24 * 30, "30 days"))

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:12px 24px;display:flex;align-items:center;gap:24px}
header h1{font-size:18px;margin:0;font-weight:600}
header a{color:#cbd5e1;text-decoration:none;margin-right:12px}header a.on{color:#fff;font-weight:600}
header form{margin-left:auto}header button{background:none;border:1px solid #94a3b8;color:#fff;
padding:4px 10px;border-radius:4px;cursor:pointer}
main{max-width:1280px;margin:0 auto;padding:16px 24px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:14px 18px;margin:14px 0}
section h2{font-size:16px;margin:0 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
.grid>div{min-width:0;overflow:hidden}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.tile{background:#f8fafc;border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px}
.tile b{display:block;font-size:20px}.tile>span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left}th{background:#f8fafc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b91c1c;font-weight:600}.ok{color:#15803d}.note{color:#92400e;background:#fffbeb;
border:1px solid #fde68a;padding:6px 10px;border-radius:6px;margin:6px 0}.muted{color:#666;font-size:12px}
"""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return escape(str(value))


def chart(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def page(title: str, body: str, head: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="robots" content="noindex"><style>{STYLE}</style>{head}</head>'
            f"<body>{body}</body></html>")


def login_page(error: str = "") -> str:
    message = f'<p class="note" role="alert">{escape(error)}</p>' if error else ""
    return page("heartrisk · operator login", f"""
<header><h1>heartrisk · monitoring</h1></header>
<main><section style="max-width:420px;margin:60px auto">
<h2>Operator login</h2>{message}
<form method="post" action="/monitor/login">
<p><label for="password">Operator password</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus
 style="width:100%;padding:6px"></p>
<p><button type="submit" style="padding:6px 16px">Log in</button></p>
</form>
<p class="muted">The password is <code>HEARTRISK_ADMIN_PASSWORD</code>, or the one printed when the
server first started (kept in <code>&lt;home&gt;/admin_password</code>).</p>
</section></main>""")


def dashboard_page(snap: Snapshot) -> str:
    """The whole dashboard for one snapshot."""
    nav = "".join(f'<a href="/monitor?hours={h}" class="{"on" if h == snap.hours else ""}">{label}</a>'
                  for h, label in WINDOWS)
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in snap.notes)
    sections = [erasure_section(snap), model_section(snap)]
    if snap.model is not None:
        sections += [tiles_section(snap), confusion_section(snap), performance_section(snap),
                     recent_section(snap), shap_section(snap), drift_section(snap)]
    sections += [volume_section(snap), synthesizer_section(snap)]
    body = f"""
<header><h1>heartrisk · monitoring</h1><nav>window: {nav}</nav>
<form method="post" action="/monitor/logout"><button type="submit">Log out</button></form></header>
<main>{notes}{"".join(sections)}
<p class="muted">Drawn live from heart_predictions and heart at
{snap.generated_at:%Y-%m-%d %H:%M:%S} UTC in {snap.seconds:.2f} s. Aggregates only: rows shared by
users are counted, scored and compared, never listed.
JSON: <a href="/api/v1/monitor/summary">/api/v1/monitor/summary</a>.</p>
</main>"""
    return page("heartrisk · monitoring", body, head=f'<script src="{PLOTLY_JS}"></script>')


def model_section(snap: Snapshot) -> str:
    card = snap.model
    if card is None:
        return '<section id="model-card"><h2>Model</h2><p>No champion model yet.</p></section>'
    rows = [["version", f"v{fmt(card['version'])} ({fmt(card['family'])})"],
            ["trained", fmt(card["trained_at"])],
            ["trained on", f"{fmt(card['feature_group'])} version {fmt(card['feature_group_version'])}"],
            ["decision threshold", fmt(card["threshold"], 4)],
            ["training base rate", fmt(card["base_rate"], 4)]]
    metrics = card["test_metrics"]
    tests = table(list(metrics), [[fmt(v, 4) for v in metrics.values()]], set(range(len(metrics))))
    return f"""<section id="model-card"><h2>Model card: champion v{fmt(card['version'])}</h2>
<div class="grid"><div>{table(["", ""], rows)}</div><div><p class="muted">test metrics (real records
held out at training)</p>{tests}</div></div></section>"""


def tiles_section(snap: Snapshot) -> str:
    all_, win = snap.metrics_all, snap.metrics_window
    flagged = len(snap.drift.drifted) if snap.drift else 0
    tiles = [(fmt(snap.predictions.get("champion_rows", 0)), "predictions by the champion"),
             (fmt(snap.predictions.get("window_rows", 0)), f"in the last {snap.hours:g} h"),
             (fmt(all_.get("roc_auc")), "ROC-AUC, all"), (fmt(win.get("roc_auc")), "ROC-AUC, window"),
             (fmt(all_.get("f1")), "F1, all"), (fmt(win.get("f1")), "F1, window"),
             (f'<span class="{"flag" if flagged else "ok"}">{flagged}</span>', "drifted features")]
    inner = "".join(f'<div class="tile"><b>{v}</b><span>{escape(label)}</span></div>' for v, label in tiles)
    return f'<section id="summary"><div class="tiles">{inner}</div></section>'


def confusion_section(snap: Snapshot) -> str:
    return f"""<section id="confusion"><h2>Confusion matrix</h2>
<p class="muted">Labelled predictions of champion v{fmt(snap.model['version'])}: rows are the truth,
columns what the model said at its threshold.</p>{chart(charts.confusion_figure(snap), "chart-confusion")}
</section>"""


def performance_section(snap: Snapshot) -> str:
    return f"""<section id="performance"><h2>Performance over time</h2>
{chart(charts.performance_figure(snap), "chart-performance")}</section>"""


def recent_section(snap: Snapshot) -> str:
    rows = [[f"{r.event_time:%Y-%m-%d %H:%M}", fmt(r.record_id), fmt(r.source), f"v{fmt(r.model_version)}",
             fmt(float(r.probability)), "Yes" if r.prediction else "No",
             "—" if r.heart_disease is None or r.heart_disease != r.heart_disease
             else ("Yes" if r.heart_disease else "No")]
            for r in snap.recent.itertuples()]
    by_source = ", ".join(f"{escape(k)} {v:,}" for k, v in snap.predictions.get("by_source", {}).items())
    listing = (table(["event time (UTC)", "record", "source", "model", "risk", "predicted", "true"],
                     rows, {4}) if rows else "<p>No Kaggle or synthetic predictions yet.</p>")
    return f"""<section id="recent"><h2>Recent predictions</h2>
<p class="muted">Champion predictions by source: {by_source or "none"}. The latest Kaggle and synthetic
rows are listed; rows shared by users are counted above and never listed.</p>{listing}</section>"""


def shap_section(snap: Snapshot) -> str:
    if snap.shap is None:
        return ('<section id="shap"><h2>SHAP summary</h2>'
                "<p>No recent Kaggle or synthetic rows to explain.</p></section>")
    return f"""<section id="shap"><h2>SHAP summary of recent rows</h2>
<p class="muted">What moved the champion's risk on {len(snap.shap.answers):,} recent Kaggle and synthetic
rows, per question (log-odds; right raises the risk).</p>
{chart(charts.shap_figure(snap), "chart-shap")}</section>"""


def drift_section(snap: Snapshot) -> str:
    report = snap.drift
    if report is None:
        return ""
    window = report.window
    note_class = "muted" if window.enough else "note"
    rows = []
    for r in report.rows:
        flag = '<span class="flag">drift</span>' if r.drifted else '<span class="ok">ok</span>'
        psi = "—" if r.psi is None else f"{fmt(r.psi, 4)} ({psi_level(r.psi)})"
        rows.append([escape(r.feature), escape(r.method.replace("_", " ")), fmt(r.value, 4),
                     fmt(r.threshold), flag, psi,
                     fmt(r.reference_unknown * 100, 1) + " %", fmt(r.current_unknown * 100, 1) + " %"])
    sources = ", ".join(f"{escape(k)} {v:,}" for k, v in report.sources.items())
    return f"""<section id="drift"><h2>Drift: training data vs recent window</h2>
<p class="{note_class}">Window: {escape(window.note)}. Sources: {sources or "none"}.</p>
{table(["feature", "method", "value", "threshold", "flag", "PSI", "unknown (train)", "unknown (window)"],
       rows, {2, 3, 5, 6, 7})}
<p class="muted">Jensen-Shannon distance (base 2) for answers, Wasserstein distance in standard deviations
of the training data for numbers; flagged at 0.1 (Evidently's defaults).
PSI: 0.1 moderate, 0.25 significant.</p>
<div class="grid"><div>{chart(charts.drift_figure(snap), "chart-drift")}</div>
<div>{chart(charts.probability_figure(snap), "chart-probability")}</div></div></section>"""


def volume_section(snap: Snapshot) -> str:
    if snap.volume.empty:
        return ""
    return f"""<section id="volume"><h2>Data volume by source</h2>
{chart(charts.volume_figure(snap), "chart-volume")}</section>"""


def synthesizer_section(snap: Snapshot) -> str:
    info = snap.synthesizer
    if not info.get("registered"):
        hint = info.get("hint") or info.get("error") or "no synthesizer registered yet"
        return f'<section id="synthesizer"><h2>Synthesizer</h2><p>{escape(str(hint))}</p></section>'
    quality = info.get("quality", {})
    rows = [[escape(k.replace("_", " ")), fmt(v, 4)] for k, v in quality.items()]
    facts = [["version", f"v{fmt(info.get('version'))} ({fmt(info.get('name'))}@{fmt(info.get('alias'))})"],
             ["trained", fmt(info.get("trained_at"))], ["fit rows", fmt(info.get("fit_rows"))],
             ["epochs (best)", f"{fmt(info.get('epochs'))} ({fmt(info.get('best_epoch'))})"],
             ["fitted on", fmt(info.get("fit_sources"))]]
    return f"""<section id="synthesizer"><h2>Synthesizer quality</h2><div class="grid">
<div>{table(["", ""], facts)}</div><div>{table(["metric", "value"], rows, {1})}</div></div></section>
{privacy_section(info)}"""


def privacy_section(info: dict[str, Any]) -> str:
    """The champion synthesizer's privacy report beside the real-vs-real baselines and the gate."""
    rows = []
    for label, row in (info.get("privacy") or {}).items():
        passed = row.get("passed")
        verdict = "" if passed is None else ('<span class="ok">pass</span>' if passed
                                             else '<span class="flag">fail</span>')
        rows.append([escape(label), fmt(row.get("value"), 3), fmt(row.get("real_vs_real"), 3),
                     escape(str(row.get("limit", ""))), verdict])
    if not rows:
        rows = [["not measured (fitted before the privacy report)", "", "", "", ""]]
    accepted = info.get("privacy_risk_accepted")
    note = f'<p class="note">Privacy risk accepted: {escape(str(accepted))}</p>' if accepted else ""
    return f"""<section id="privacy"><h2>Synthesizer privacy</h2>{note}
<p class="muted">Gate: {escape(str(info.get("privacy_gate", "")))}</p>
{table(["measure (held-out real rows the fit never saw)", "synthetic", "real vs real", "gate", ""], rows,
       {1, 2})}
<p class="muted">Real vs real: the same measure with a second sample of real people in place of the
synthetic rows, what no leak looks like on this coarse survey data (docs/synthetic.md).</p></section>"""


def erasure_section(snap: Snapshot) -> str:
    """A warning while a champion learned from rows `heartrisk forget` erased."""
    info = snap.erasure
    if not info.get("serving"):
        return ""
    return f"""<section id="erasure"><h2>Models that learned from erased rows</h2>
<p class="note">{escape(str(info.get("note", "")))}</p>
{table(["", ""], [["classifier versions", fmt(info.get("classifier_versions"))],
                  ["synthesizer versions", fmt(info.get("synthesizer_versions"))]])}</section>"""
