"""Render a validation report: text for people, JSON for machines, JUnit XML for CI; and
the progress display on stderr. Formatting only: the report comes in, text goes out.

Text layout (stable; golden test in tests/report/test_validate_report.py)::

    envcheck validate · <hostname> · profile <p> · <device summary>
    torch <v> · CUDA <v> · NCCL <v> · python <v>

    Checks
      PASS  cnn        5.2 s  <message>
      ...
    Figures                                  (value next to spec and floor; "-" = none)
      check      metric        device   value  unit    spec   floor  of spec  status
    Verdict: PASSED - <reason>; ... (exit 0)

JSON: ``ValidationReport.to_dict()`` (keys documented in README "validate JSON"). JUnit: one
``<testsuite>`` with one ``<testcase>`` per check (``<failure>`` for a failed check,
``<error>`` when it crashed, hung, ran out of memory or was interrupted, ``<skipped>``) and a
``verdict`` testcase that fails unless the verdict is certified or passed.

Only ASCII is produced; free text passes through envcheck.redact, as in the doctor report.
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any, TextIO

from envcheck.report.safe import neutralise
from envcheck.report.style import paint, wrap_lines
from envcheck.validate.results import CERTIFIED, PASSED, CheckResult, ValidationReport
from envcheck.validate.runner import Listener

try:
    from envcheck.redact import scrub as _scrub
    from envcheck.redact import scrub_text as _scrub_text
except ImportError:  # pragma: no cover - redact ships with envcheck
    def _scrub(obj: Any) -> Any:
        return obj

    def _scrub_text(text: str) -> str:
        return text

_STATUS_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "cyan"}
_VERDICT_COLOURS = {"certified": "green", "passed": "green", "degraded": "yellow", "failed": "red"}


def exit_code(report: ValidationReport) -> int:
    """0 certified/passed, 1 degraded/failed (README "Exit codes")."""
    return 0 if report.verdict in (CERTIFIED, PASSED) else 1


def _ascii(text: str) -> str:
    """Free text made safe to show: secrets scrubbed, control characters escaped (also what
    keeps JUnit well-formed XML: envcheck.report.safe), then ASCII."""
    return neutralise(_scrub_text(str(text))).encode("ascii", "replace").decode("ascii")


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.3g}"
    return str(v)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 600 else f"{s / 60:.1f} min"


def to_json(report: ValidationReport) -> str:
    return json.dumps(_scrub(report.to_dict()), indent=2, default=str) + "\n"


def _header(report: ValidationReport) -> list[str]:
    m = report.machine or {}
    host = m.get("hostname") or "?"
    if report.device == "cuda":
        names = sorted({str(d.get("name")) for d in report.devices})
        what = f"{len(report.devices)} x {', '.join(names)}" if names else "cuda"
    else:
        what = f"CPU ({m.get('cpu') or 'unknown'}), {report.world_size} all-reduce ranks"
    v = report.versions or {}
    stack = [f"torch {v.get('torch') or '?'}"]
    if v.get("cuda"):
        stack.append(f"CUDA {v['cuda']}")
    if v.get("nccl"):
        stack.append(f"NCCL {v['nccl']}")
    stack.append(f"python {v.get('python') or '?'}")
    return [_ascii(f"envcheck validate . {host} . profile {report.profile} . {what}"), _ascii(" . ".join(stack))]


def _check_line(c: CheckResult, width: int, color: bool, columns: int | None = None) -> str:
    label = paint(f"{c.status.upper():<4}", color, fg=_STATUS_COLOURS.get(c.status), bold=c.status == "fail")
    secs = _seconds(c.seconds) if c.status != "skip" else "-"
    plain = f"  {c.status.upper():<4}  {c.name:<{width}}  {secs:>7}  "  # the columns, without colour codes
    first, *rest = wrap_lines(plain, _ascii(c.message), columns)
    return "\n".join([f"  {label}  {c.name:<{width}}  {secs:>7}  " + first[len(plain):], *rest])


def _figure_rows(report: ValidationReport) -> list[tuple[str, ...]]:
    rows = [("check", "metric", "device", "value", "unit", "spec", "floor", "of spec", "status")]
    for f in report.figures:
        ratio = f.ratio
        rows.append((f.check, f.metric, _ascii(f.device), _num(f.value), f.unit, _num(f.spec), _num(f.floor),
                     "-" if ratio is None else f"{100 * ratio:.0f}%", f.status))
    return rows


def _watch_gpu(g: dict[str, Any]) -> str:
    parts = [f"GPU {g.get('index')}"]
    if g.get("temp_c_peak") is not None:
        parts.append(f"peak {_num(g['temp_c_peak'])} C" + (f" (memory {_num(g['mem_temp_c_peak'])} C)"
                                                          if g.get("mem_temp_c_peak") is not None else ""))
    if g.get("power_w_peak") is not None:
        parts.append(f"{_num(g['power_w_peak'])}/{_num(g.get('power_limit_w'))} W")
    if g.get("sm_clock_mhz_max") is not None:
        parts.append(f"SM {_num(g.get('sm_clock_mhz_min'))}-{_num(g['sm_clock_mhz_max'])} MHz")
    reasons = g.get("clock_event_samples") or {}
    if reasons:
        parts.append("clock events " + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())))
    for key, label in (("dbe_volatile_delta", "DBE"), ("sbe_volatile_delta", "SBE"), ("pcie_replay_delta", "replays")):
        if g.get(key):
            parts.append(f"{label} +{g[key]}")
    if g.get("xids"):
        parts.append("XID " + ", ".join(f"{x['xid']}@{x['t']:g}s" for x in g["xids"]))
    return " ".join(parts[:1]) + ": " + ", ".join(parts[1:]) if len(parts) > 1 else parts[0]


def watch_lines(report: ValidationReport, width: int) -> list[str]:
    """The NVML watcher's summary per check (issue 16); nothing when no check carries one."""
    watched = [(c, c.details.get("watch")) for c in report.checks if isinstance(c.details.get("watch"), dict)]
    if not watched:
        return []
    off = {w.get("reason") for _, w in watched if not w.get("available")}
    if len(off) == 1 and all(not w.get("available") for _, w in watched):
        return ["", f"GPU watch: {_ascii(next(iter(off)) or 'not available')}"]
    lines = ["", "GPU watch (NVML during each check: peaks, clock events, new errors)"]
    for c, w in watched:
        if not w.get("available"):
            lines.append(f"  {c.name:<{width}}  {_ascii(w.get('reason') or 'not available')}")
            continue
        text = "; ".join(_watch_gpu(g) for g in w.get("gpus") or [])
        lines.append(f"  {c.name:<{width}}  {_ascii(text)} ({w.get('samples')} samples)")
    return lines


def to_text(report: ValidationReport, color: bool = False, columns: int | None = None) -> str:
    """The human report; ``columns``: wrap the check messages at this width (a terminal's),
    never mid-word; None keeps one line per check (files, pipes)."""
    lines = _header(report)
    lines += ["", "Checks"]
    width = max([len(c.name) for c in report.checks] + [5])
    lines += [_check_line(c, width, color, columns) for c in report.checks]
    lines += watch_lines(report, width)
    if report.figures:
        rows = _figure_rows(report)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["", "Figures (value next to the spec of this hardware and its pass floor; - = none known)"]
        for n, r in enumerate(rows):
            cells = [r[i].ljust(widths[i]) if i < 3 or i == 4 or i == 8 else r[i].rjust(widths[i])
                     for i in range(len(r))]
            text = "  " + "  ".join(cells).rstrip()
            if n > 0 and r[8] == "below":
                text = paint(text, color, fg="yellow")
            lines.append(text)
    code = exit_code(report)
    verdict = paint(report.verdict.upper(), color, fg=_VERDICT_COLOURS.get(report.verdict), bold=True)
    why = "; ".join(report.reasons) if report.reasons else ""
    total = report.timings.get("total_s")
    took = f", {_seconds(float(total))}" if total is not None else ""
    lines += ["", f"Verdict: {verdict}" + (f" - {_ascii(why)}" if why else "") + f" (exit {code}{took})"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ JUnit


def testsuite_element(report: ValidationReport, name: str = "envcheck.validate",
                      hostname: str | None = None, classname: str = "envcheck.validate") -> ET.Element:
    """One ``<testsuite>`` for one report (the cluster mode makes one per node)."""
    checks = report.checks
    failures = sum(1 for c in checks if c.status == "fail" and not c.error)
    errors = sum(1 for c in checks if c.status == "fail" and c.error)
    skipped = sum(1 for c in checks if c.status == "skip")
    verdict_fails = report.verdict not in (CERTIFIED, PASSED)
    suite = ET.Element("testsuite", {
        "name": _ascii(name), "tests": str(len(checks) + 1), "failures": str(failures + int(verdict_fails)),
        "errors": str(errors), "skipped": str(skipped),
        "time": f"{sum(c.seconds for c in checks):.3f}", "timestamp": report.created_at.rstrip("Z"),
        "hostname": _ascii(hostname or (report.machine or {}).get("hostname") or "unknown"),
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("verdict", report.verdict), ("profile", report.profile), ("device", report.device),
                       ("world_size", report.world_size), ("torch", (report.versions or {}).get("torch")),
                       ("cuda", (report.versions or {}).get("cuda")), ("nccl", (report.versions or {}).get("nccl"))):
        ET.SubElement(props, "property", {"name": key, "value": "" if value is None else _ascii(value)})
    for c in checks:
        case = ET.SubElement(suite, "testcase", {"classname": _ascii(classname), "name": _ascii(c.name),
                                                  "time": f"{c.seconds:.3f}"})
        msg = _ascii(c.message)
        if c.status == "fail" and c.error:
            el = ET.SubElement(case, "error", {"message": msg, "type": _ascii(c.error.get("kind") or "error")})
            el.text = _ascii(c.error.get("traceback") or c.error.get("message") or msg)
        elif c.status == "fail":
            ET.SubElement(case, "failure", {"message": msg, "type": "check_failed"})
        elif c.status == "skip":
            ET.SubElement(case, "skipped", {"message": msg})
        out = ET.SubElement(case, "system-out")
        out.text = _ascii(("WARNING: " if c.status == "warn" else "") + json.dumps(c.metrics, default=str))
    case = ET.SubElement(suite, "testcase", {"classname": classname, "name": "verdict", "time": "0"})
    if verdict_fails:
        ET.SubElement(case, "failure", {"message": _ascii(f"{report.verdict}: " + "; ".join(report.reasons)),
                                        "type": report.verdict})
    return suite


def to_junit(report: ValidationReport) -> str:
    root = ET.Element("testsuites", {"name": "envcheck validate"})
    suite = testsuite_element(report)
    root.append(suite)
    for key in ("tests", "failures", "errors", "skipped", "time"):
        root.set(key, suite.get(key, "0"))
    ET.indent(root)  # Python >= 3.9
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------------- progress


class ProgressDisplay(Listener):
    """A bar per check on a terminal; plain lines otherwise (logs, CI). Writes to ``stream``.

    ``transient``: the report itself goes to the same terminal (text on a TTY stdout), so a
    finished check's bar is erased instead of becoming a result line: each result is printed
    once, in the report."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, color: bool = False,
                 width: int = 24, transient: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.color = color
        self.width = width
        self.transient = transient and self.tty
        self._last_draw = 0.0
        self._quarter: dict[str, int] = {}
        self._total = 0
        self._index = 0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not end the run
            pass

    def start(self, name: str, index: int, total: int) -> None:
        self._index, self._total = index + 1, total
        self._quarter[name] = 0
        if self.tty:
            self._draw(name, 0.0, "starting", force=True)
        else:
            self._write(f"validate: [{self._index}/{total}] {name}: started\n")

    def _draw(self, name: str, fraction: float, note: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = max(0.0, min(1.0, fraction))
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        self._write(f"\r\x1b[2K  [{self._index}/{self._total}] {name:<9} [{bar}] {100 * fraction:3.0f}%  "
                    f"{_ascii(note)[:60]}")

    def progress(self, name: str, fraction: float, note: str) -> None:
        if self.tty:
            self._draw(name, fraction, note)
            return
        quarter = int(max(0.0, min(1.0, fraction)) * 4)
        if 0 < quarter < 4 and quarter > self._quarter.get(name, 0):
            self._quarter[name] = quarter
            self._write(f"validate: {name}: {25 * quarter}% ({_ascii(note)})\n")

    def end(self, result: CheckResult) -> None:
        label = paint(result.status.upper(), self.color, fg=_STATUS_COLOURS.get(result.status))
        line = f"{result.name}: {label} in {_seconds(result.seconds)} - {_ascii(result.message)}"
        if self.transient:
            self._write("\r\x1b[2K")
        elif self.tty:
            self._write(f"\r\x1b[2K  [{self._index}/{self._total}] {line[:200]}\n")
        else:
            self._write(f"validate: {line}\n")
