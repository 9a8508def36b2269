"""Shared pieces of the HTML views: escaping, the page shell, badges, tables and SVG helpers.

Safety rules every view follows (tests/report/test_html.py checks them):

- Every string that comes from a report goes through :func:`t` (control and bidi characters made
  visible, length capped, then ``html.escape(quote=True)``), in text, in SVG ``<title>`` and in
  attributes alike.
- No string from a report ever lands in a URL, a ``style`` or a ``class``: class names come from
  fixed tables (:func:`status_class`), colours and coordinates are computed from numbers.
- The page loads nothing: inline CSS and SVG only, no script, and a Content-Security-Policy
  ``default-src 'none'`` so even a mistake could not fetch anything (works from file://).
- Never colour alone: every status is also a word and a symbol, below-floor bars and stragglers
  carry a hatch pattern (WCAG 2.2 SC 1.4.1, "Use of Color").
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

MAX_TEXT = 2000  # characters of one free-text value shown (a traceback is cut, with a mark)

# C0/C1 controls (ESC starts terminal sequences), bidi overrides and isolates (CVE-2021-42574,
# "Trojan Source"), and lone surrogates (not encodable as UTF-8) are shown as escapes.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(value: Any) -> str:
    """The text of ``value`` with unsafe characters visible as ``\\xNN`` / ``\\uNNNN``, capped."""
    s = value if isinstance(value, str) else str(value)
    s = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                    else f"\\u{ord(m.group()):04x}", s)
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + " \u2026 (cut)"


def t(value: Any) -> str:
    """Untrusted text, safe in HTML text, in attribute values and in SVG <title>."""
    return html.escape(clean(value), quote=True)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def num(v: Any, unit: str = "") -> str:
    """A figure as short text ("712", "55.3", "0.694"); "-" when there is none."""
    if not is_num(v):
        return "\u2013"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e6:
        s = f"{int(v)}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.3g}"
    return f"{s} {t(unit)}" if unit else s


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"


def c(x: float) -> str:
    """An SVG coordinate (computed, never from the report as text)."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if is_num(x) else "0"


# ------------------------------------------------------------------------------ statuses

# word, symbol, CSS class: the word and symbol carry the meaning without colour.
_STATUS = {
    "pass": ("PASS", "\u2713", "good"), "ok": ("OK", "\u2713", "good"),
    "certified": ("CERTIFIED", "\u2713", "good"), "passed": ("PASSED", "\u2713", "good"),
    "ready": ("READY", "\u2713", "good"),
    "warn": ("WARN", "\u26a0", "warn"), "degraded": ("DEGRADED", "\u26a0", "warn"),
    "below": ("BELOW FLOOR", "\u25bc", "warn"), "ready with warnings": ("READY WITH WARNINGS", "\u26a0", "warn"),
    "incomplete": ("INCOMPLETE", "?", "warn"),
    "fail": ("FAIL", "\u2717", "bad"), "failed": ("FAILED", "\u2717", "bad"), "error": ("ERROR", "\u2717", "bad"),
    "not ready": ("NOT READY", "\u2717", "bad"),
    "same": ("SAME", "=", "good"), "differs": ("DIFFERS", "\u2260", "warn"),
    "info": ("INFO", "i", "info"), "skip": ("SKIP", "\u2013", "muted"), "unjudged": ("NO FLOOR", "\u2013", "muted"),
}


def status_class(status: Any) -> str:
    """A CSS class from a fixed set, whatever the report says."""
    return _STATUS.get(str(status).lower(), ("", "", "muted"))[2]


def badge(status: Any, big: bool = False) -> str:
    word, sym, cls = _STATUS.get(str(status).lower(), (None, "?", "muted"))
    label = word if word else t(str(status).upper())
    return f'<span class="badge {cls}{" big" if big else ""}"><span aria-hidden="true">{sym}</span> {label}</span>'


# ------------------------------------------------------------------------------ HTML blocks


def table(head: Iterable[str], rows: Iterable[Iterable[str]], numeric: Iterable[int] = (),
          cls: str = "", nowrap: Iterable[int] = ()) -> str:
    """A table of already-safe cells; columns in ``numeric`` are right-aligned, tabular figures,
    columns in ``nowrap`` do not wrap."""
    right, keep = set(numeric), set(nowrap)

    def attr(i: int) -> str:
        return ' class="num"' if i in right else ' class="nw"' if i in keep else ""

    ths = "".join(f'<th{attr(i)} scope="col">{h}</th>' for i, h in enumerate(head))
    body = []
    for r in rows:
        tds = "".join(f"<td{attr(i)}>{v}</td>" for i, v in enumerate(r))
        body.append(f"<tr>{tds}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return (f'<table{attr}><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def kv(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column fact table (key, already-safe value)."""
    out = "".join(f'<tr><th scope="row">{k}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<table class="kv"><tbody>{out}</tbody></table>'


def section(title: str, body: str, note: str = "", anchor: str = "") -> str:
    ident = f' id="{anchor}"' if anchor else ""
    sub = f'<p class="note">{note}</p>' if note else ""
    return f"<section{ident}><h2>{title}</h2>{sub}{body}</section>"


def reasons_list(reasons: Any) -> str:
    items = [r for r in (reasons if isinstance(reasons, list) else []) if r]
    if not items:
        return ""
    return '<ul class="reasons">' + "".join(f"<li>{t(r)}</li>" for r in items) + "</ul>"


# ------------------------------------------------------------------------------ SVG

# One hidden SVG holds the patterns every chart refers to by fragment (url(#...) is local).
SVG_DEFS = (
    '<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false"><defs>'
    '<pattern id="hatch-warn" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#f6c28b"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b35806" stroke-width="3"/>'
    "</pattern>"
    '<pattern id="hatch-bad" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)">'
    '<rect width="6" height="6" fill="#f4b6b0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#a4161a" stroke-width="3"/>'
    "</pattern>"
    '<pattern id="dots-muted" width="5" height="5" patternUnits="userSpaceOnUse">'
    '<rect width="5" height="5" fill="#eef0f2"/><circle cx="2.5" cy="2.5" r="0.9" fill="#8c959f"/>'
    "</pattern>"
    "</defs></svg>"
)


def svg(width: float, height: float, body: str, label: str, cls: str = "chart") -> str:
    """An inline SVG with an accessible name (``label`` is already safe)."""
    return (f'<svg class="{cls}" role="img" aria-label="{label}" viewBox="0 0 {c(width)} {c(height)}" '
            f'width="{c(width)}" height="{c(height)}">'
            f"<title>{label}</title>{body}</svg>")


def mix(a: str, b: str, f: float) -> str:
    """Colour between hex ``a`` and ``b`` at fraction ``f`` (0..1), as #rrggbb."""
    f = min(1.0, max(0.0, f if is_num(f) else 0.0))
    pa = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    pb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(pa, pb))


def get(d: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if isinstance(d, Mapping) and p in d:
            d = d[p]
        else:
            return default
    if isinstance(d, Mapping) and set(d) == {"unavailable"}:
        return default
    return d


# ------------------------------------------------------------------------------ the page

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--good:#1a7f37;--warn:#9a6700;
--bad:#cf222e;--info:#0969da;--accent:#4c78a8}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:10px 18px;border-bottom:2px solid var(--fg);
padding-bottom:12px;margin-bottom:8px}
h1{font-size:22px;margin:0;font-weight:650;letter-spacing:-.01em}
h2{font-size:16px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line);font-weight:650}
h3{font-size:14px;margin:16px 0 6px;font-weight:650}
p{margin:6px 0}
.meta{color:var(--muted);font-size:13px;margin:4px 0 0}
.note{color:var(--muted);font-size:12.5px;margin:-2px 0 8px}
code,pre,.mono{font-family:ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 10px;margin:6px 0;
white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600;
border-bottom:1.5px solid var(--fg);white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}td.nw{white-space:nowrap}
table.kv th{font-weight:600;white-space:nowrap;color:var(--muted);padding-right:18px}
table.wide{width:100%}
.badge{display:inline-block;border:1.5px solid currentColor;border-radius:4px;padding:0 6px;font-size:12px;
font-weight:700;letter-spacing:.03em;white-space:nowrap;line-height:18px}
.badge.big{font-size:15px;padding:3px 10px;line-height:22px;border-width:2px}
.good{color:var(--good)}.warn{color:var(--warn)}.bad{color:var(--bad)}.info{color:var(--info)}
.muted{color:var(--muted)}
ul.reasons{margin:6px 0;padding-left:20px}ul.reasons li{margin:2px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px}
article.finding{border:1px solid var(--line);border-left-width:6px;border-radius:6px;padding:8px 14px;margin:10px 0;
break-inside:avoid}
article.f-bad{border-left-color:var(--bad)}article.f-warn{border-left-color:var(--warn);border-left-style:double}
article.f-info{border-left-color:var(--info);border-left-style:dashed}
article.finding h3{margin:2px 0 4px;color:var(--fg)}
article.finding .fid{color:var(--muted);font-weight:400;font-size:12px;margin-left:6px}
article.finding table{margin:4px 0}
svg{display:block;max-width:100%;height:auto;overflow:visible}
svg.defs{position:absolute;width:0;height:0}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;font-size:12px;
fill:var(--fg);font-variant-numeric:tabular-nums}
svg .axis{stroke:#8c959f;stroke-width:1}svg .grid{stroke:#e6e9ec;stroke-width:1}
svg .lbl{fill:var(--muted);font-size:11px}
svg .spec{stroke:#1f2328;stroke-width:2}svg .floor{stroke:#a4161a;stroke-width:2;stroke-dasharray:5 3}
svg .track{fill:#f1f3f5}
svg .bar-ok{fill:#4c78a8}svg .bar-below{fill:url(#hatch-warn);stroke:#b35806}svg .bar-unjudged{fill:#9aa5b1}
svg .curve{fill:none;stroke:#4c78a8;stroke-width:2}svg .curve.alt{stroke:#b35806;stroke-dasharray:6 3}
svg .curve.thin{stroke:#9aa5b1;stroke-width:1.2}
svg .pt{fill:#fff;stroke:#4c78a8;stroke-width:2}svg .pt.alt{stroke:#b35806}
svg .tr-temp{stroke:#b35806}svg .tr-memtemp{stroke:#b35806;stroke-width:1.3;stroke-dasharray:4 3}
svg .tr-power{stroke:#4c78a8}svg .tr-clock{stroke:#1a7f37}
svg .limit{fill:none;stroke:#1f2328;stroke-width:1.3;stroke-dasharray:6 4}
svg .band-warn{fill:url(#hatch-warn);opacity:.45}svg .band-info{fill:url(#dots-muted);opacity:.8}
svg .band-lbl{font-size:10.5px}svg .panel-title{font-size:11.5px;font-weight:600}
svg .mark{stroke:#a4161a;stroke-width:1.5;stroke-dasharray:2 2}
.watch-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:6px 24px}
.watch-grid figure{margin:0;break-inside:avoid}.watch-grid figcaption{font-weight:600;margin:8px 0 0}
svg .cell-flag{fill:url(#hatch-warn);opacity:.55}
svg .pair-pass{fill:#dbe9f6;stroke:#4c78a8}svg .pair-fail{fill:url(#hatch-bad);stroke:#a4161a;stroke-width:1.5}
svg .pair-none{fill:#fafbfc;stroke:#eef0f2}svg .diag{fill:#e6e9ec}
svg .bad-txt{fill:#a4161a;font-weight:700}svg .warn-txt{fill:#8a4b00;font-weight:700}
.diff{font-weight:600;color:#8a4b00;background:repeating-linear-gradient(45deg,#fdebd3 0 4px,#fff7ec 4px 8px);
padding:0 4px;border-radius:3px}
table.matrix td{white-space:nowrap}.scroll{overflow-x:auto}
table.diffs{table-layout:fixed}table.diffs th:nth-child(1){width:24%}table.diffs th:nth-child(2){width:27%}
table.diffs th:nth-child(4){width:10%}table.matrix thead th{text-transform:none;letter-spacing:0;font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:center;font-size:12px;color:var(--muted);margin:4px 0 10px}
.legend svg{display:inline-block;vertical-align:middle}
.chart-block{break-inside:avoid;margin:8px 0 14px}
details>summary{cursor:pointer;color:var(--muted);margin:6px 0}
footer{margin-top:36px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
@media print{
 @page{margin:14mm}
 body{font-size:10.5pt;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 main{max-width:none;padding:0}
 section,.chart-block,table,article.finding{break-inside:avoid}
 h2{break-after:avoid}
 details{display:block}details>summary{display:none}.scroll{overflow:visible}
}
"""


def page(title: str, body: str, generator: str = "envcheck") -> str:
    """The whole document: one file, no external resource (CSP ``default-src 'none'``)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{t(generator)}">'
        f"<title>{title}</title><style>{CSS}</style></head>\n"
        f"<body>{SVG_DEFS}<main>{body}"
        f"<footer>Rendered by {t(generator)} from the report JSON, which stays the source of truth. "
        "Self-contained: no script, no network.</footer></main></body></html>\n"
    )


def header(kind: str, subject: Any, verdict: Any, meta: Iterable[str]) -> str:
    """The page heading: what, for whom, the verdict as a badge with its word, and a meta line."""
    who = f" \u00b7 {t(subject)}" if subject else ""
    parts = [m for m in meta if m]
    sep = " \u00b7 "
    line = f'<p class="meta">{sep.join(parts)}</p>' if parts else ""
    return (f'<header class="top"><h1>envcheck {kind}{who}</h1>{badge(verdict, big=True)}</header>{line}')
