"""Two SVG charts: horizontal bars against spec and floor, and bus bandwidth over message size.

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
