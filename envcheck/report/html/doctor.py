"""The doctor report (schema "envcheck.snapshot" with findings) as HTML.

Findings first, worst first, each with its severity word, evidence and exact fix; then a machine
card and a per-GPU table of health facts. The facts reuse the text report's formatting
(envcheck/report/doctor.py), so both views always say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck.report import doctor as text
from envcheck.report.html.base import badge, clean, get, header, is_num, kv, section, t, table
from envcheck.report.values import value_text

_SEP = " \u00b7 "
_SEV_ORDER = {"error": 0, "warn": 1, "info": 2, "ok": 3}
_SEV_WORD = {"error": "error", "warn": "warn", "info": "info", "ok": "ok"}


def _tx(line: str) -> str:
    """A text-report line for HTML: its column gaps (two spaces) become a middle dot."""
    return t(_SEP.join(part.strip() for part in str(line).split("  ") if part.strip()))


def _value(v: Any) -> str:
    """One evidence value: multi-line text (a stderr tail) as a block, the rest inline."""
    s = value_text(v)
    if "\n" in s:
        lines = s.splitlines()[-text._MAX_TEXT_LINES:]
        return f"<pre>{t(chr(10).join(lines))}</pre>"
    return f"<code>{t(s)}</code>"


def _finding(f: Mapping) -> str:
    sev = str(f.get("severity") or "info").lower()
    cls = {"error": "bad", "warn": "warn", "info": "info"}.get(sev, "muted")
    parts = [f'<article class="finding f-{cls}"><h3>{badge(_SEV_WORD.get(sev, sev))} {t(f.get("title") or "")}'
             f'<span class="fid mono">{t(f.get("id") or "")}</span></h3>']
    if f.get("detail"):
        parts.append(f"<p>{t(f['detail'])}</p>")
    ev = f.get("evidence")
    if isinstance(ev, Mapping) and ev:
        parts.append(kv((t(k), _value(v)) for k, v in ev.items()))
    if f.get("fix"):
        parts.append(f'<p class="note">Fix:</p><pre>{t(f["fix"])}</pre>')
    parts.append("</article>")
    return "".join(parts)


def _machine(doc: Mapping) -> str:
    bad = "n/a (unreadable value in the snapshot)"
    rows: list[tuple[str, str]] = [("Host", t(get(doc, "host", "hostname") or "n/a")),
                                   ("Python", t(text._safely(text._python_line, doc, fallback=bad)))]
    torch = text._safely(text._torch_lines, doc, fallback=[bad])
    rows.append(("torch", "<br>".join(_tx(x) for x in torch)))
    rows.append(("Driver", _tx(text._safely(text._driver_line, doc, fallback=bad))))
    count = get(doc, "nvidia", "gpu_count")
    if is_num(count):
        rows.append(("GPUs", t(count)))
    host = text._safely(text._host_rows, doc, fallback=[("Host facts", bad)]) or []
    merged: list[tuple[str, list[str]]] = []
    for k, v in host:  # continuation rows ("", line) join their key's cell
        if k or not merged:
            merged.append((k, [v]))
        else:
            merged[-1][1].append(v)
    rows += [(t(k), "<br>".join(_tx(x) for x in vs)) for k, vs in merged]
    return kv(rows)


def _health(g: Mapping) -> str:
    """NVLink, row remapping / retired pages, throttling: the facts, as the probe gave them."""
    out = []
    nv = get(g, "nvlink")
    if isinstance(nv, Mapping) and is_num(nv.get("total")) and nv.get("total"):
        out.append(f"NVLink {t(nv.get('up'))}/{t(nv.get('total'))} up")
    rr = get(g, "row_remap")
    if isinstance(rr, Mapping):
        flags = [w for w, k in (("remap pending", "pending"), ("remap FAILED", "failure")) if rr.get(k) is True]
        unc = rr.get("uncorrectable")
        if is_num(unc) and unc:
            flags.append(f"{t(unc)} uncorrectable remaps")
        out.append("rows: " + (", ".join(flags) if flags else "ok"))
    rp = get(g, "retired_pages")
    if isinstance(rp, Mapping):
        pend = rp.get("pending")
        n = sum(v for k, v in rp.items() if k != "pending" and is_num(v))
        out.append(f"retired pages {t(n)}" + (" (pending)" if pend is True else ""))
    thr = get(g, "throttle_reasons")
    if isinstance(thr, list):
        shown = [str(x) for x in thr if str(x) != "gpu_idle"]
        out.append("throttle: " + (", ".join(t(x) for x in shown) if shown else "none"))
    return "<br>".join(out) or "\u2013"


def _gpus(doc: Mapping) -> str:
    gpus = [g for g in (get(doc, "nvidia", "gpus") or []) if isinstance(g, Mapping)]
    if not gpus:
        return ""
    rows = []
    for g in gpus:
        cells = text._safely(text._gpu_row, g, fallback=None) or [str(g.get("index", "?"))] + ["?"] * 7
        lost = isinstance(g.get("error"), Mapping)
        status = badge("fail") if lost else ""
        rows.append([t(cells[0]), f"{status} {t(cells[1])}".strip()] + [t(x) for x in cells[2:]]
                    + [_health(g) if not lost else "\u2013"])
    head = ["#", "GPU", "CC", "Memory used", "Temp", "Power", "ECC", "PCIe", "Health"]
    return table(head, rows, numeric=(0, 3, 4, 5), nowrap=(2, 6, 7), cls="wide")


def render(doc: Mapping) -> tuple[str, str]:
    findings = sorted((f for f in doc.get("findings") or [] if isinstance(f, Mapping)),
                      key=lambda f: (_SEV_ORDER.get(str(f.get("severity")), 9), str(f.get("id"))))
    summary = doc.get("summary") if isinstance(doc.get("summary"), Mapping) else {}
    verdict = summary.get("verdict") or "incomplete"
    host = get(doc, "host", "hostname")
    counts = [f"{summary.get(k)} {w}{'' if summary.get(k) == 1 else 's'}"
              for k, w in (("errors", "error"), ("warnings", "warning"), ("infos", "info"))
              if is_num(summary.get(k)) and summary.get(k)]
    meta = [t(doc.get("created_at") or ""), f"envcheck {t(doc.get('envcheck_version') or '?')}",
            ", ".join(counts) or "no problems found"]
    if is_num(summary.get("exit_code")):
        meta.append(f"exit {t(summary['exit_code'])}")
    head = header("doctor", host, verdict, meta)
    if "findings" not in doc:
        body = section("Findings", '<p class="muted">This snapshot carries no findings: render it with '
                       "<code>envcheck report --html</code>, which evaluates the rules.</p>")
    elif not findings:
        body = section("Findings", f"<p>{badge('ok')} Nothing to fix.</p>")
    else:
        body = section(f"Findings ({len(findings)})", "".join(_finding(f) for f in findings),
                       note="Worst first. Each says what was seen (evidence) and the exact fix.")
    body += section("Machine", _machine(doc))
    gpus = _gpus(doc)
    if gpus:
        body += section("GPUs", gpus, note="Health facts as NVML reported them; judgements are in the findings.")
    title = "envcheck doctor" + (f" \u00b7 {clean(host)}" if host else "")
    return t(title), head + body
