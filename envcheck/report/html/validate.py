"""The validate report (schema "envcheck.validate") as HTML.

Per-check status; every figure as a bar against the spec and floor of its device (a CPU run has
no spec: the value and "no spec"); the all-reduce bus bandwidth over message size with its floor;
the exact figures in a table. The watcher's traces (temperature, power, clocks per GPU) get a
section through :func:`watch_section` once the validate-under-watch report carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck.report.html.base import (
    badge,
    get,
    header,
    is_num,
    num,
    reasons_list,
    section,
    t,
    table,
)
from envcheck.report.html.charts import bar_chart, curve_chart

_LEGEND = (
    '<div class="legend">'
    '<span><svg width="26" height="12"><rect width="26" height="12" class="bar-ok"/></svg> at or above its floor</span>'
    '<span><svg width="26" height="12"><rect width="26" height="12" class="bar-below"/></svg> below its floor'
    " (BELOW FLOOR)</span>"
    '<span><svg width="26" height="12"><rect width="26" height="12" class="bar-unjudged"/></svg> not judged</span>'
    '<span><svg width="14" height="16"><line x1="7" y1="0" x2="7" y2="16" class="spec"/></svg> spec</span>'
    '<span><svg width="14" height="16"><line x1="7" y1="0" x2="7" y2="16" class="floor"/></svg> floor</span>'
    "</div>"
)


def _seconds(v: Any) -> str:
    if not is_num(v):
        return "\u2013"
    return f"{v:.1f} s" if v < 600 else f"{v / 60:.1f} min"


def checks_table(checks: Any, timed: bool = True) -> str:
    rows = []
    for ch in checks if isinstance(checks, list) else []:
        if not isinstance(ch, Mapping):
            continue
        status = str(ch.get("status"))
        secs = _seconds(ch.get("seconds")) if status != "skip" else "\u2013"
        rows.append([badge(status), f"<strong>{t(ch.get('name'))}</strong>"] + ([secs] if timed else [])
                    + [t(ch.get("message") or "")])
    head = ["Status", "Check"] + (["Time"] if timed else []) + ["Result"]
    return table(head, rows, numeric=(2,) if timed else (), cls="wide") if rows else ""


def figure_charts(figures: Any, device_label=None) -> str:
    """One bar chart per (check, metric): a bar per device."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for f in figures if isinstance(figures, list) else []:
        if isinstance(f, Mapping) and is_num(f.get("value")):
            groups.setdefault((str(f.get("check")), str(f.get("metric"))), []).append(f)
    blocks = []
    for (check, metric), figs in groups.items():
        unit = str(figs[0].get("unit") or "")
        rows = [{"label": device_label(f) if device_label else f.get("device"), "value": f.get("value"),
                 "spec": f.get("spec"), "floor": f.get("floor"), "status": f.get("status")} for f in figs]
        chart = bar_chart(f"{check} {metric}", unit, rows)
        note = figs[0].get("note")
        blocks.append(f'<div class="chart-block"><h3>{t(check)} \u00b7 <span class="mono">{t(metric)}</span>'
                      f' <span class="muted">({t(unit)})</span></h3>'
                      + (f'<p class="note">{t(note)}</p>' if note and len(figs) == 1 else "") + chart + "</div>")
    return _LEGEND + "".join(blocks) if blocks else ""


def _rows(rows: Any) -> list[tuple[Any, Any]]:
    return [(r.get("bytes"), r.get("busbw_GBps")) for r in rows if isinstance(r, Mapping)] \
        if isinstance(rows, list) else []


def busbw_section(report: Mapping) -> str:
    """all-reduce busbw per size (world sweep, and intra-node in the distributed mode)."""
    ar = next((ch for ch in report.get("checks") or [] if isinstance(ch, Mapping) and ch.get("name") == "allreduce"),
              None)
    if not ar:
        return ""
    series = [{"label": "all-reduce", "points": _rows(get(ar, "details", "rows"))}]
    intra = _rows(get(ar, "details", "intranode_rows"))
    if intra:
        series[0]["label"] = "all-reduce, all ranks"
        series.append({"label": "all-reduce, within the node", "points": intra, "style": "alt"})
    fig = next((f for f in report.get("figures") or [] if isinstance(f, Mapping)
                and f.get("check") == "allreduce" and f.get("metric") == "busbw_GBps"), {})
    chart = curve_chart("all-reduce", series, fig.get("floor"), " (judged at the largest size)")
    if not chart:
        return ""
    legend = '<div class="legend">' + "".join(
        f'<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve {cls}"/>'
        f'<circle cx="15" cy="6" r="3.5" class="pt {cls}"/></svg> {t(s["label"])}</span>'
        for s, cls in zip(series, ("", "alt"))) + (
        '<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="floor"/></svg> floor</span>'
        if is_num(fig.get("floor")) else '<span>no floor known for this hardware</span>') + "</div>"
    note = ("Bus bandwidth as nccl-tests defines it (algbw \u00d7 2(n\u22121)/n), per message size; "
            f"{t(get(ar, 'metrics', 'world_size') or '?')} rank(s) over {t(get(ar, 'metrics', 'backend') or '?')}.")
    return section("Bus bandwidth by message size", legend + chart, note=note)


def watch_section(report: Mapping) -> str:
    """Hook for the watcher's per-GPU traces (validate under watch, issue 16): none yet.

    When that report carries its samples, draw them here (temperature, power against its
    limit, SM clock, per GPU, over time) with the curve helpers in charts.py.
    """
    return ""


def figures_table(figures: Any) -> str:
    rows = []
    for f in figures if isinstance(figures, list) else []:
        if not isinstance(f, Mapping):
            continue
        ratio = f.get("ratio")
        rows.append([t(f.get("check")), f'<span class="mono">{t(f.get("metric"))}</span>', t(f.get("device")),
                     num(f.get("value")), t(f.get("unit") or ""), num(f.get("spec")), num(f.get("floor")),
                     f"{100 * ratio:.0f}%" if is_num(ratio) else "\u2013", badge(f.get("status") or "unjudged")])
    if not rows:
        return ""
    return section("Every figure, exact", table(
        ["Check", "Metric", "Device", "Value", "Unit", "Spec", "Floor", "Of spec", "Status"], rows,
        numeric=(3, 5, 6, 7)))


def _what(report: Mapping) -> str:
    devices = [d for d in report.get("devices") or [] if isinstance(d, Mapping)]
    if report.get("device") == "cuda":
        names = sorted({str(d.get("name")) for d in devices})
        return f"{len(devices)} \u00d7 {', '.join(names)}" if names else "cuda"
    cpu = get(report, "machine", "cpu") or "unknown CPU"
    return f"CPU ({cpu}), {report.get('world_size') or 1} all-reduce ranks"


def render(report: Mapping) -> tuple[str, str]:
    host = get(report, "machine", "hostname")
    v = report.get("versions") if isinstance(report.get("versions"), Mapping) else {}
    stack = [f"torch {v.get('torch') or '?'}"] + [f"{k.upper()} {v[k]}" for k in ("cuda", "nccl") if v.get(k)]
    meta = [t(report.get("created_at") or ""), f"profile {t(report.get('profile') or '?')}", t(_what(report)),
            t(" \u00b7 ".join(stack))]
    total = get(report, "timings", "total_s")
    if is_num(total):
        meta.append(f"took {_seconds(total)}")
    if report.get("interrupted"):
        meta.append("<strong>interrupted</strong>")
    head = header("validate", host, report.get("verdict") or "failed", meta)
    body = reasons_list(report.get("reasons"))
    body += section("Checks", checks_table(report.get("checks")) or '<p class="muted">No check ran.</p>')
    charts = figure_charts(report.get("figures"))
    if charts:
        body += section("Figures", charts, note="Each figure next to the spec of this hardware (solid tick) "
                        "and its pass floor (dashed); a CPU or unknown GPU has no spec: value only.")
    body += busbw_section(report)
    body += watch_section(report)
    body += figures_table(report.get("figures"))
    title = "envcheck validate" + (f" \u00b7 {host}" if host else "")
    return t(title), head + body
