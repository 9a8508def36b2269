"""Render an install plan: text for people, JSON for machines (format only; the engine decides).

Text layout::

    envcheck install - linux-x86_64, Python 3.12, glibc 2.35, driver 575.57.08, 1 GPU

    Machine   (each fact, and where it came from: probed / flag / snapshot)
    Plan      torch 2.11.0 (cu128) and its pip / uv / conda commands      -- or --
    Blocked   each blocker: id, why, fix
    Online check  (--online) verified on <index> at <time>, or the exact mismatch
    Why       the reasons behind the pick
    Notes     what a newer torch would need, caveats
    Verdict: INSTALLABLE (exit 0) | BLOCKED - N blockers (exit 1) | NOT VERIFIED (exit 1)

JSON (``envcheck install --format json``): one object with ``torch`` (string or null),
``variant`` ("cpu", "cu128", "rocm6.4"...; null when blocked), ``cuda``, ``index_url`` (null when
plain PyPI is right), ``companions`` ({"torchvision": "0.26.0"} for --with), ``commands``
({pip, uv, conda}; each a string or null), ``blockers`` ([{id, message, fix}], empty when an
install is possible), ``notes`` ([str]), ``reasons`` ([str]), ``constraint`` (the --torch
specifier or null), ``with`` ([str]), ``already_installed`` (true when the installed torch is
exactly the plan), ``online`` (null unless --online: {status verified|mismatch|unreachable,
indexes, checked_at, packages [{name, version, status, index, wheel, metadata, detail}], newer,
lines}), ``machine`` (the facts used: platform, python, python_full ("3.14.1" or null),
macos, glibc, driver, gpus [{name, vendor (nvidia/amd/intel), compute_capability, gfx}], no_gpu,
gpu_without_driver, wsl, executable, installed_torch, sources {fact: probed|flag|snapshot|assumed},
assumed [what a what-if plan took from this machine or left out]), ``newest_known_release``,
``schema`` ("envcheck.install"), ``schema_version`` (1) and ``exit_code`` (0 plan, 1 blocked).
``target`` (envcheck.target: {executable, chosen_by, reason, choose_another}; null when the
machine was described by flags, not probed) says which interpreter the plan is for and why.
"""

from __future__ import annotations

import json
from typing import Any

from envcheck.report.safe import neutralise
from envcheck.report.style import paint, severity, wrap_lines

try:  # the secret scrubber shared with the doctor report; identity if it is ever missing
    from envcheck.redact import scrub as _scrub
    from envcheck.redact import scrub_text as _scrub_text
except ImportError:  # pragma: no cover
    def _scrub(obj: Any) -> Any:
        return obj

    def _scrub_text(text: str) -> str:
        return text

SCHEMA = "envcheck.install"
SCHEMA_VERSION = 1
_INDENT = "  "


def exit_code(plan) -> int:
    """1 when blocked, or when --online found that the index disagrees with the plan."""
    online_failed = bool(plan.online) and plan.online.get("status") == "mismatch"
    return 0 if plan.ok and not online_failed else 1


def to_dict(plan, target: dict | None = None) -> dict:
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **plan.to_dict(),
           "exit_code": exit_code(plan), "target": target}
    return _scrub(doc)


def to_json(plan, target: dict | None = None) -> str:
    return json.dumps(to_dict(plan, target), indent=2, sort_keys=True) + "\n"


def _ascii(text: str) -> str:
    """Reports get pasted into consoles with odd code pages: keep the renderer's output ASCII."""
    table = {"\u2265": ">=", "\u2264": "<=", "\u2013": "-", "\u2014": "-", "\u2026": "...",
             "\u2192": "->", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}
    for a, b in table.items():
        text = text.replace(a, b)
    return text.encode("ascii", "replace").decode("ascii")


def _source(machine, fact: str) -> str:
    src = machine.sources.get(fact)
    if src == "assumed":
        return " (assumed: this machine's)"
    if src == "left out":
        return " (this machine's left out: another platform)"
    return f" ({src})" if src in ("flag", "snapshot") else ""


def _machine_lines(m, target: dict | None = None) -> list[str]:
    py = (m.python + ("t" if m.free_threaded else "")) if m.python else "unknown"
    rows = [
        ("platform", (m.platform or "unknown") + _source(m, "platform")),
        ("python", py + (f" ({m.python_full})" if m.python_full else "")
         + (f"  {m.executable}" if m.executable else "") + _source(m, "python")),
    ]
    if m.macos:
        rows.append(("macos", m.macos))
    if target and isinstance(target.get("reason"), str):
        rows.append(("", f"judged: {target['reason']}; choose another with "
                         f"{target.get('choose_another') or '--python PATH'}"))
    if (m.platform or "").startswith("linux") or m.glibc:
        rows.append(("glibc", (m.glibc or "unknown") + _source(m, "glibc")))
    rows.append(("driver", (m.driver or ("none loaded" if m.gpu_without_driver else "unknown"))
                 + (" (Windows host driver, WSL)" if m.wsl else "") + _source(m, "driver")))
    if m.no_gpu:
        gpus = "none (--no-gpu)"
    elif m.gpus:
        counts: dict[str, int] = {}
        for g in m.gpus:
            counts[g.label] = counts.get(g.label, 0) + 1
        gpus = ", ".join(f"{n}x {label}" if n > 1 else label for label, n in counts.items())
    elif m.gpu_without_driver:
        gpus = "NVIDIA GPU on the PCI bus, model unknown (no driver)"
    else:
        gpus = "none found"
    rows.append(("gpus", gpus + _source(m, "gpus")))
    if m.installed_torch:
        rows.append(("torch", f"{m.installed_torch} installed"))
    width = max(len(k) for k, _ in rows)
    return [f"{_INDENT}{k.ljust(width)}  {v}".rstrip() for k, v in rows]


def _bullets(items: list[str], columns: int | None = None) -> list[str]:
    return [line for t in items for line in wrap_lines(f"{_INDENT}- ", neutralise(t), columns)]


def to_text(plan, color: bool = False, target: dict | None = None, columns: int | None = None) -> str:
    """The plan for a person; ``columns``: wrap the prose (why, notes, blockers) at this width (a
    terminal's), never mid-word; commands and fixes stay on one line so they can be copied."""
    m = plan.machine
    head_bits = [m.platform or "unknown platform",
                 f"Python {m.python}{'t' if m.free_threaded else ''}" if m.python else "Python unknown"]
    if plan.constraint:
        head_bits.append(f"torch {plan.constraint}")
    # Probed facts (interpreter path, driver and GPU names, versions) and the messages quoting
    # them are untrusted text: neutralised here, before any colour (envcheck.report.safe).
    lines = [paint("envcheck install", color, bold=True) + " - " + neutralise(", ".join(head_bits)), ""]
    lines.append(paint("Machine", color, bold=True))
    lines += [neutralise(line) for line in _machine_lines(m, target)]
    lines.append("")
    if plan.ok:
        extra = ", ".join(f"{k} {v}" for k, v in plan.companions.items())
        title = (f"Plan: torch {plan.torch} ({plan.variant})" + (f" with {extra}" if extra else "")
                 + (" - already installed, nothing to do" if plan.already_installed else ""))
        lines.append(paint(title, color, fg="green", bold=True))
        for key in ("pip", "uv", "conda"):
            cmd = plan.commands.get(key)
            lines.append(f"{_INDENT}{key.ljust(5)}  {neutralise(cmd) if cmd else '(none: ' + _why_none(key) + ')'}")
    else:
        lines.append(paint("Blocked: no torch build fits this machine as it is", color, fg="red", bold=True))
        for b in plan.blockers:
            lines.append(f"{_INDENT}{severity('BLOCKER', 'error', color)} {paint(b.id, color, bold=True)}")
            lines += wrap_lines(f"{_INDENT}        ", neutralise(b.message), columns)
            lines.append(f"{_INDENT}        {paint('fix', color, fg='green', bold=True)}  {neutralise(b.fix)}")
    if plan.online:
        lines += ["", paint("Online check", color, bold=True)] + _bullets(plan.online.get("lines", []), columns)
    if plan.reasons:
        lines += ["", paint("Why", color, bold=True)] + _bullets(plan.reasons, columns)
    if plan.notes:
        lines += ["", paint("Notes", color, bold=True)] + _bullets(plan.notes, columns)
    lines.append("")
    if plan.ok and exit_code(plan):
        verdict = (paint("Verdict: NOT VERIFIED", color, fg="red", bold=True)
                   + " - the index disagrees with the plan (exit 1)")
    elif plan.ok:
        verdict = paint("Verdict: INSTALLABLE", color, fg="green", bold=True) + " (exit 0)"
    else:
        n = len(plan.blockers)
        verdict = (paint("Verdict: BLOCKED", color, fg="red", bold=True)
                   + f" - {n} blocker{'s' if n != 1 else ''} (exit 1)")
    lines.append(verdict)
    return _ascii(_scrub_text("\n".join(lines))) + "\n"


def _why_none(key: str) -> str:
    return {"conda": "no conda channel is known to ship this build"}.get(key, "not available")
