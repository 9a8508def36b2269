"""The validate report (schema "envcheck.validate") as HTML.

Per-check status; every figure as a bar against the spec and floor of its device (a CPU run has
no spec: the value and "no spec"); the all-reduce bus bandwidth over message size with its floor;
the exact figures in a table; the NVML watcher's findings and per-GPU traces (temperature, power
against its limit, SM clock, clock-event periods) of every check (:func:`watch_section`).
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
from envcheck.report.html.charts import bar_chart, curve_chart, trace_panels

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


_REASON_WORDS = {"hw_slowdown": "HW slowdown", "hw_thermal_slowdown": "HW thermal slowdown",
                 "sw_thermal_slowdown": "SW thermal slowdown", "hw_power_brake": "HW power brake",
                 "sw_power_cap": "SW power cap"}
_COUNTERS = {"dbe_volatile": ("double-bit ECC errors (volatile DBE)", "DBE"),
             "sbe_volatile": ("single-bit ECC errors (volatile SBE)", "SBE"),
             "pcie_replay": ("PCIe replay counter", "replay"), "remap_pending": ("row remap pending", "remap pending"),
             "remap_failure": ("row remap failure", "remap failure"), "xid": ("XID event", "XID")}

WATCH_LEGEND = (
    '<div class="legend">'
    '<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve tr-temp"/></svg> GPU</span>'
    '<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve tr-memtemp"/></svg>'
    " memory (HBM)</span>"
    '<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="limit"/></svg> power limit</span>'
    '<span><svg width="22" height="12"><rect width="22" height="12" class="band-warn"/></svg>'
    " hardware / thermal clock slowdown (named above the panels)</span>"
    '<span><svg width="22" height="12"><rect width="22" height="12" class="band-info"/></svg>'
    " SW power cap (at the power limit, by design)</span>"
    '<span><svg width="14" height="12"><line x1="7" y1="0" x2="7" y2="12" class="mark"/></svg>'
    " a new error (DBE, XID, remap, replay)</span></div>"
)


def _reason(r: Any) -> str:
    return _REASON_WORDS.get(str(r), str(r).replace("_", " "))


def _bands(trace: Mapping) -> list[tuple[float, float, list[str], str]]:
    """Runs of points with the same active clock-event reasons, as (from, to, words, kind)."""
    ts, evs = trace.get("t"), trace.get("events")
    if not isinstance(ts, list) or not isinstance(evs, list):
        return []
    out: list[tuple[float, float, list[str], str]] = []
    cur: tuple[str, ...] = ()
    start = 0.0
    prev = None
    for at, ev in zip(ts, evs):
        if not is_num(at):
            continue
        key = tuple(sorted(str(e) for e in ev)) if isinstance(ev, list) else ()
        if key != cur:
            if cur:
                out.append((start, prev, cur))
            cur, start = key, prev if prev is not None else at
        prev = at
    if cur and prev is not None:
        out.append((start, prev, cur))
    return [(a, b, [_reason(r) for r in key], "info" if set(key) <= {"sw_power_cap"} else "warn")
            for a, b, key in out]


def _change(e: Mapping) -> str:
    if e.get("counter") == "xid":
        return f"XID {t(e.get('value'))}"
    a, b = e.get("from"), e.get("to")
    if isinstance(a, bool) or isinstance(b, bool):
        return f"{'yes' if a else 'no'} \u2192 {'yes' if b else 'no'}"
    if is_num(a) and is_num(b):
        return f"{num(a)} \u2192 {num(b)} ({'+' if b >= a else ''}{num(b - a)})"
    return f"{t(a)} \u2192 {t(b)}"


def _mark(e: Mapping) -> str:
    short = _COUNTERS.get(str(e.get("counter")), (None, str(e.get("counter"))))[1]
    if e.get("counter") == "xid":
        return f"XID {e.get('value')}"
    a, b = e.get("from"), e.get("to")
    return f"{short} +{b - a:g}" if is_num(a) and is_num(b) and not isinstance(a, bool) else short


def _gpu_name(g: Mapping) -> str:
    return f"GPU {g.get('index')}" + (f" \u00b7 {g.get('name')}" if g.get("name") else "")


def _gpu_trace(check: str, g: Mapping) -> str:
    tr = g.get("trace")
    if not isinstance(tr, Mapping) or not isinstance(tr.get("t"), list) or not tr["t"]:
        return ""
    events = [e for e in g.get("events") or [] if isinstance(e, Mapping)]
    temps = [{"label": "GPU temperature", "values": tr.get("temp_c") or [], "cls": "temp"}]
    if any(is_num(v) for v in tr.get("mem_temp_c") or []):
        temps.append({"label": "memory (HBM) temperature", "values": tr["mem_temp_c"], "cls": "memtemp"})
    panels = [
        {"label": "temperature (\u00b0C)", "series": temps},
        {"label": "power (W)", "series": [{"label": "power", "values": tr.get("power_w") or [], "cls": "power"}],
         "limit": tr.get("power_limit_w") or g.get("power_limit_w"), "limit_label": "limit"},
        {"label": "SM clock (MHz)", "series": [{"label": "SM clock", "values": tr.get("sm_clock_mhz") or [],
                                               "cls": "clock"}]},
    ]
    bands = _bands(tr)
    chart = trace_panels(f"{check}, {_gpu_name(g)}", tr["t"], panels, bands,
                         [(e.get("t"), _mark(e)) for e in events])
    words = [f"{' + '.join(w)} {round(a, 2):g}\u2013{round(b, 2):g} s" for a, b, w, _ in bands]
    stride = tr.get("stride")
    note = "; ".join(words) if words else "no clock event"
    if is_num(stride) and stride > 1:
        note += f" \u00b7 each point merges {num(stride)} samples (peaks and the lowest clock kept)"
    return (f"<figure><figcaption>{t(_gpu_name(g))}</figcaption>{chart}"
            f'<p class="note">Clock events: {t(note)}</p></figure>')


def watch_blocks(checks: Any, where: str = "") -> str:
    """Each watched check: its findings (GPU, counter, time) and per-GPU traces; or why not."""
    out = []
    for ch in checks if isinstance(checks, list) else []:
        w = get(ch, "details", "watch") if isinstance(ch, Mapping) else None
        if not isinstance(w, Mapping):
            continue
        name = f"{where}{ch.get('name')}"
        if not w.get("available"):
            out.append(f"<p><strong>{t(name)}</strong>: {t(w.get('reason') or 'not available')}</p>")
            continue
        gpus = [g for g in w.get("gpus") or [] if isinstance(g, Mapping)]
        rows = [[t(_gpu_name(g)), t(_COUNTERS.get(str(e.get("counter")), (str(e.get("counter")),))[0]),
                 f"{num(e.get('t'))} s", _change(e)]
                for g in gpus for e in g.get("events") or [] if isinstance(e, Mapping)]
        found = (table(["GPU", "Counter", "At (into the check)", "Change"], rows, numeric=(2,))
                 if rows else '<p class="muted">No new error (DBE, XID, row remap, PCIe replay) during the check.</p>')
        figs = "".join(_gpu_trace(name, g) for g in gpus)
        meta = f"{num(w.get('samples'))} samples over {_seconds(w.get('seconds'))}, every {num(w.get('interval_s'))} s"
        out.append(f'<div class="chart-block"><h3>{t(name)} <span class="muted">({meta})</span></h3>{found}'
                   + (f'<div class="watch-grid">{figs}</div>' if figs else "") + "</div>")
    return "".join(out)


def notable(watch: Any) -> bool:
    """A watch worth drawing among many (the cluster page): a new error, or a clock event
    other than the SW power cap."""
    if not isinstance(watch, Mapping) or not watch.get("available"):
        return False
    for g in watch.get("gpus") or []:
        if not isinstance(g, Mapping):
            continue
        reasons = g.get("clock_event_samples") if isinstance(g.get("clock_event_samples"), Mapping) else {}
        if g.get("events") or g.get("xids") or g.get("remap_pending") or g.get("remap_failure") \
                or set(reasons) - {"sw_power_cap"}:
            return True
    return False


def watch_section(report: Mapping) -> str:
    """The NVML watcher (validate under watch, issue 16) of every check: what changed on which
    GPU and when, and temperature, power against its limit and SM clock over time per GPU, with
    clock-event periods shaded and named; one line saying why when it was not available."""
    checks = [ch for ch in report.get("checks") or [] if isinstance(get(ch, "details", "watch"), Mapping)]
    if not checks:
        return ""
    watches = [ch["details"]["watch"] for ch in checks]
    off = {str(w.get("reason") or "not available") for w in watches if not w.get("available")}
    title = "GPU watch (NVML during each check)"
    if len(off) == 1 and not any(w.get("available") for w in watches):
        return section(title, f"<p>{t(next(iter(off)))}</p>")
    return section(title, WATCH_LEGEND + watch_blocks(checks),
                   note="Sampled by envcheck's NVML watcher while each check ran; a new double-bit ECC error, a "
                        "hardware XID or a row remap fails the check, hardware or thermal slowdown under load "
                        "degrades it.")


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
