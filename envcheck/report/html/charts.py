"""The SVG charts: horizontal bars against spec and floor, bus bandwidth over message size, and
the watcher's traces over time (small multiples sharing one time axis).

Pure: rows and points in, SVG text out. Every label is escaped here (callers pass raw text);
every coordinate is computed from numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from envcheck.report.html.base import c, human_bytes, is_num, num, svg, t

_BAR_CLASS = {"ok": "bar-ok", "below": "bar-below"}


def nice_ceil(x: float) -> float:
    """The smallest 1, 2, 2.5, 5 x 10^k at or above ``x`` (axis ends people can read)."""
    if not is_num(x) or x <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * base >= x * 0.999999:
            return m * base
    return 10 * base


def axis(high: float, n: int = 5) -> tuple[float, list[float]]:
    """(axis end, ticks): about ``n`` steps of 1, 2, 2.5 or 5 x 10^k, the end just above ``high``."""
    step = nice_ceil(high / n) if is_num(high) and high > 0 else 0.2
    top = math.ceil(high / step - 1e-9) * step if is_num(high) and high > 0 else 1.0
    return top, [round(k * step, 10) for k in range(int(round(top / step)) + 1)]


def bar_chart(title: str, unit: str, rows: Sequence[dict[str, Any]]) -> str:
    """One bar per row (``label``, ``value``, ``spec``, ``floor``, ``status``) on a shared scale.

    The spec is a solid tick, the floor a dashed red tick; a bar below its floor is hatched and
    says BELOW FLOOR; a figure with nothing to compare to says "no spec".
    """
    rows = [r for r in rows if is_num(r.get("value"))]
    if not rows:
        return ""
    top = max(max(float(r["value"]), float(r["spec"]) if is_num(r.get("spec")) else 0.0,
                  float(r["floor"]) if is_num(r.get("floor")) else 0.0) for r in rows)
    top, ticks = axis(top * 1.03)
    label_w, x0, x1, right_w = 96, 104, 520, 250
    width, row_h, bar_h, top_pad = x1 + right_w, 24, 14, 8
    height = top_pad + row_h * len(rows) + 26

    def x(v: float) -> float:
        return x0 + (x1 - x0) * max(0.0, min(float(v), top)) / top

    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{c(x(tick))}" y1="{top_pad - 4}" x2="{c(x(tick))}" '
                     f'y2="{c(height - 22)}"/>'
                     f'<text class="lbl" x="{c(x(tick))}" y="{c(height - 8)}" text-anchor="middle">{num(tick)}</text>')
    parts.append(f'<line class="axis" x1="{x0}" y1="{top_pad - 4}" x2="{x0}" y2="{c(height - 22)}"/>')
    for i, r in enumerate(rows):
        y = top_pad + i * row_h
        value, spec, floor = float(r["value"]), r.get("spec"), r.get("floor")
        status = str(r.get("status") or "unjudged")
        cls = _BAR_CLASS.get(status, "bar-unjudged")
        tip = f"{r.get('label')}: {num(value)} {unit}"
        if is_num(spec):
            tip += f", spec {num(spec)}"
        if is_num(floor):
            tip += f", floor {num(floor)}"
        parts.append(f'<text x="{label_w}" y="{c(y + bar_h - 2)}" text-anchor="end">{t(r.get("label"))}</text>')
        parts.append(f'<rect class="track" x="{x0}" y="{y}" width="{x1 - x0}" height="{bar_h}"/>')
        parts.append(f'<rect class="bar {cls}" x="{x0}" y="{y}" width="{c(x(value) - x0)}" height="{bar_h}">'
                     f"<title>{t(tip)}</title></rect>")
        if is_num(spec):
            parts.append(f'<line class="spec" x1="{c(x(spec))}" y1="{y - 3}" x2="{c(x(spec))}" y2="{y + bar_h + 3}"/>')
        if is_num(floor):
            parts.append(f'<line class="floor" x1="{c(x(floor))}" y1="{y - 3}" x2="{c(x(floor))}" '
                         f'y2="{y + bar_h + 3}"/>')
        words = [f"{num(value)} {t(unit)}"]
        if is_num(spec) and spec:
            words.append(f"{100 * value / float(spec):.0f}% of spec")
        elif not is_num(floor):
            words.append("no spec")
        mark = {"ok": ("\u2713 ok", ""), "below": ("\u25bc BELOW FLOOR", "warn-txt")}.get(status)
        text = " \u00b7 ".join(words)
        parts.append(f'<text x="{x1 + 10}" y="{c(y + bar_h - 2)}">{text}'
                     + (f' <tspan class="{mark[1]}">{mark[0]}</tspan>' if mark else "") + "</text>")
    label = t(f"{title}: bars per device against spec and floor")
    return svg(width, height, "".join(parts), label)


def curve_chart(title: str, series: Sequence[dict[str, Any]], floor: float | None = None,
                floor_note: str = "") -> str:
    """Bus bandwidth (GB/s) over message size on a log2 x axis; each series ``{label, points,
    style}`` with points ``[(bytes, GB/s)]``; the floor as a dashed line."""
    series = [{**s, "points": [(float(b), float(v)) for b, v in s.get("points") or []
                               if is_num(b) and is_num(v) and b > 0]} for s in series]
    series = [s for s in series if s["points"]]
    if not series:
        return ""
    xs = [b for s in series for b, _ in s["points"]]
    ys = [v for s in series for _, v in s["points"]] + ([float(floor)] if is_num(floor) else [])
    lo, hi = math.log2(min(xs)), math.log2(max(xs))
    if hi - lo < 1:
        lo, hi = lo - 1, hi + 1
    top, ticks = axis(max(ys) * 1.05)
    x0, x1, y0, y1 = 64, 700, 16, 236
    width, height = 760, 282

    def px(b: float) -> float:
        return x0 + (x1 - x0) * (math.log2(b) - lo) / (hi - lo)

    def py(v: float) -> float:
        return y1 - (y1 - y0) * max(0.0, min(v, top)) / top

    parts = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{x0}" y1="{c(py(tick))}" x2="{x1}" y2="{c(py(tick))}"/>'
                     f'<text class="lbl" x="{x0 - 8}" y="{c(py(tick) + 4)}" text-anchor="end">{num(tick)}</text>')
    span = int(hi) - int(math.ceil(lo))
    step = 1 if span <= 8 else 2 if span <= 16 else 4
    e = int(math.ceil(lo))
    while e <= hi:
        parts.append(f'<line class="grid" x1="{c(px(2 ** e))}" y1="{y0}" x2="{c(px(2 ** e))}" y2="{y1}"/>'
                     f'<text class="lbl" x="{c(px(2 ** e))}" y="{y1 + 16}" text-anchor="middle">'
                     f"{human_bytes(2 ** e)}</text>")
        e += step
    parts.append(f'<line class="axis" x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/>'
                 f'<line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>'
                 f'<text class="lbl" x="{(x0 + x1) / 2}" y="{height - 4}" text-anchor="middle">'
                 "message size (log scale)</text>"
                 f'<text class="lbl" x="14" y="{(y0 + y1) / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(y0 + y1) / 2})">bus bandwidth (GB/s)</text>')
    if is_num(floor):
        fy = py(float(floor))
        parts.append(f'<line class="floor" x1="{x0}" y1="{c(fy)}" x2="{x1}" y2="{c(fy)}"/>'
                     f'<text class="bad-txt" x="{x1 - 4}" y="{c(fy - 5)}" text-anchor="end">'
                     f"floor {num(floor)} GB/s{t(floor_note)}</text>")
    for s in series:
        style = {"alt": "alt", "thin": "thin"}.get(str(s.get("style")), "")
        pts = sorted(s["points"])
        path = " ".join(f"{c(px(b))},{c(py(v))}" for b, v in pts)
        parts.append(f'<polyline class="curve {style}" points="{path}"><title>{t(s.get("label"))}</title></polyline>')
        if style != "thin":
            for b, v in pts:
                parts.append(f'<circle class="pt {style}" cx="{c(px(b))}" cy="{c(py(v))}" r="3.5">'
                             f"<title>{t(s.get('label'))}: {human_bytes(b)} {num(v)} GB/s</title></circle>")
    label = t(f"{title}: bus bandwidth by message size")
    return svg(width, height, "".join(parts), label)


# Series classes of trace_panels: fixed names, never from the report.
_TRACE_CLASS = {"temp": "tr-temp", "memtemp": "tr-memtemp", "power": "tr-power", "clock": "tr-clock"}


def _free_row(rows: list[float], x: float, w: float) -> int:
    """The first label row whose last label ends left of ``x`` (the last row when none is free)."""
    for i, end in enumerate(rows):
        if end <= x:
            rows[i] = x + w
            return i
    rows[-1] = max(rows[-1], x + w)
    return len(rows) - 1


def trace_panels(title: str, times: Sequence[Any], panels: Sequence[dict[str, Any]],
                 bands: Sequence[tuple[float, float, Sequence[str], str]] = (),
                 marks: Sequence[tuple[float, str]] = (), width: int = 520) -> str:
    """Small multiples over one time axis: a panel per metric, stacked, sharing x.

    ``times`` are seconds; each panel ``{label, series: [{label, values, cls}], limit, limit_label}``
    has values aligned with ``times`` (None leaves a gap) and an optional dashed ``limit`` line.
    ``bands`` ``(t0, t1, labels, kind)`` shade a period across every panel (kind "warn" hatched,
    "info" dotted) and are named in words in a strip above the panels; ``marks`` ``(t, label)``
    draw a labelled vertical line (an event at a moment). Axes come from :func:`axis`."""
    ts = [float(x) if is_num(x) else None for x in times]
    known = [x for x in ts if x is not None]
    if not known:
        return ""
    tmax = max(known)
    scale, tunit = (60.0, "min") if tmax >= 600 else (1.0, "s")
    xtop, xticks = axis(max(tmax / scale, 1e-3), 6)
    label_rows = 4
    x0, x1 = 50, width - 12
    strip, panel_h, gap, bottom = 6 + 12 * label_rows, 80, 26, 34
    y_first = strip + gap
    height = y_first + len(panels) * (panel_h + gap) - gap + bottom

    def px(sec: float) -> float:
        return x0 + (x1 - x0) * min(max(sec / scale / xtop, 0.0), 1.0)

    parts = []
    y_last = y_first + len(panels) * (panel_h + gap) - gap
    # periods first, under the curves; their words in the strip on top
    rows = [float("-inf")] * label_rows
    for b0, b1, words, kind in bands:
        if not (is_num(b0) and is_num(b1)):
            continue
        left, right = px(b0), max(px(b1), px(b0) + 2)
        cls = "band-warn" if kind == "warn" else "band-info"
        tip = " + ".join(str(w) for w in words)
        parts.append(f'<rect class="band {cls}" x="{c(left)}" y="{strip}" width="{c(right - left)}" '
                     f'height="{c(y_last - strip)}"><title>{t(tip)} {num(b0)}\u2013{num(b1)} s</title></rect>')
        for w in words:
            r = _free_row(rows, left, 5.7 * len(str(w)) + 8)
            parts.append(f'<text class="band-lbl {"warn-txt" if kind == "warn" else "lbl"}" x="{c(left + 2)}" '
                         f'y="{12 + 12 * r}">{t(w)}</text>')
    for at, word in marks:
        if not is_num(at):
            continue
        x = px(at)
        r = _free_row(rows, x, 5.7 * len(str(word)) + 8)
        parts.append(f'<line class="mark" x1="{c(x)}" y1="{c(12 * r + 15)}" x2="{c(x)}" y2="{c(y_last)}">'
                     f"<title>{t(word)} at {num(at)} s</title></line>"
                     f'<text class="bad-txt band-lbl" x="{c(x + 3)}" y="{12 + 12 * r}">{t(word)}</text>')
    for k, panel in enumerate(panels):
        top_y = y_first + k * (panel_h + gap)
        bot_y = top_y + panel_h
        values = [float(v) for s in panel.get("series") or [] for v in s.get("values") or [] if is_num(v)]
        limit = panel.get("limit")
        limits = [float(v) for v in (limit if isinstance(limit, (list, tuple)) else [limit]) if is_num(v)]
        ytop, yticks = axis(max(values + limits + [1e-9]) * 1.08, 5)

        def py(v: float, top_y: float = top_y, ytop: float = ytop) -> float:
            return top_y + panel_h - panel_h * max(0.0, min(v, ytop)) / ytop

        parts.append(f'<text x="{x0}" y="{c(top_y - 7)}" class="panel-title">{t(panel.get("label"))}</text>')
        for tick in yticks:
            parts.append(f'<line class="grid" x1="{x0}" y1="{c(py(tick))}" x2="{x1}" y2="{c(py(tick))}"/>'
                         f'<text class="lbl" x="{x0 - 6}" y="{c(py(tick) + 4)}" text-anchor="end">{num(tick)}</text>')
        for tick in xticks:
            parts.append(f'<line class="grid" x1="{c(px(tick * scale))}" y1="{c(top_y)}" x2="{c(px(tick * scale))}" '
                         f'y2="{c(bot_y)}"/>')
        parts.append(f'<line class="axis" x1="{x0}" y1="{c(bot_y)}" x2="{x1}" y2="{c(bot_y)}"/>'
                     f'<line class="axis" x1="{x0}" y1="{c(top_y)}" x2="{x0}" y2="{c(bot_y)}"/>')
        if limits:
            seq = limit if isinstance(limit, (list, tuple)) else [limit] * len(ts)
            pts = [(x, float(v)) for x, v in zip(ts, seq) if x is not None and is_num(v)]
            if pts:
                if pts[0][0] > 0:  # the limit holds from the check's start
                    pts.insert(0, (0.0, pts[0][1]))
                path = " ".join(f"{c(px(x))},{c(py(v))}" for x, v in pts)
                words = f"{panel.get('limit_label') or 'limit'} {num(pts[-1][1])}"
                parts.append(f'<polyline class="limit" points="{path}"><title>{t(words)}</title></polyline>'
                             f'<text class="lbl" x="{x1 - 2}" y="{c(py(pts[-1][1]) - 4)}" text-anchor="end">'
                             f"{t(words)}</text>")
        for s in panel.get("series") or []:
            cls = _TRACE_CLASS.get(str(s.get("cls")), "")
            run: list[str] = []
            runs = []
            for x, v in zip(ts, s.get("values") or []):
                if x is None or not is_num(v):
                    if run:
                        runs.append(run)
                    run = []
                    continue
                run.append(f"{c(px(x))},{c(py(float(v)))}")
            if run:
                runs.append(run)
            for r in runs:
                parts.append(f'<polyline class="curve {cls}" points="{" ".join(r)}">'
                             f"<title>{t(s.get('label'))}</title></polyline>")
    for tick in xticks:
        parts.append(f'<text class="lbl" x="{c(px(tick * scale))}" y="{c(y_last + 16)}" text-anchor="middle">'
                     f"{num(tick)}</text>")
    parts.append(f'<text class="lbl" x="{c((x0 + x1) / 2)}" y="{c(height - 4)}" text-anchor="middle">'
                 f"{'minutes' if tunit == 'min' else 'seconds'} into the check</text>")
    return svg(width, height, "".join(parts), t(f"{title}: temperature, power and SM clock over time"))
