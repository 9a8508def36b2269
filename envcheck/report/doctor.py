"""Render the doctor report: text for people, JSON (snapshot + findings + summary) for machines.

Text layout (stable; golden files in tests/fixtures/golden/)::

    envcheck doctor · <hostname> · <created_at>

    Findings: 1 error, 2 warnings, 1 info          (worst first; each with why, evidence, fix)
    Machine                                         (Python, torch, driver, GPU table, host)
    Verdict: NOT READY - 1 error, 2 warnings (exit 1)

JSON: the snapshot's own keys (see envcheck/snapshot.py and the example fixture), plus
``findings`` (``Finding.to_dict()`` each: id, severity, title, evidence, fix, detail; worst
first) and ``summary`` {errors, warnings, infos, worst, strict, exit_code, verdict, scope};
verdict is "ready" | "ready with warnings" | "incomplete" (a probe failed) | "not ready".
``exit_code`` is the default-mode exit code (0/1) for the ``strict`` flag given; ``scope`` is
"full" or "node" (doctor --scope). A report of a saved snapshot (doctor --snapshot) also has
``replayed_from`` {file, probed_at}, and the text says so under its first line.

Text wraps at ``width`` columns (the CLI passes the terminal's) at spaces, never inside a word;
a fix is never wrapped (it is copied and pasted), nor is the GPU table.

Both formats pass through envcheck.redact as a last line of defence: reports get pasted into
public issues. The text report neutralises control characters of the data it shows
(envcheck.report.safe); JSON escapes them itself and keeps the original strings. Only ASCII is produced by the renderer itself, so a report printed to a
non-UTF-8 console (Windows code pages, C locale) cannot fail to encode.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from envcheck.findings import Finding, Severity, sort_findings
from envcheck.report.safe import neutralise, neutralise_obj
from envcheck.report.style import paint, severity
from envcheck.report.style import wrap as _wrap
from envcheck.report.values import na_text, value_text
from envcheck.snapshot import get, is_na

try:  # the secret scrubber; identity if it is ever missing, the report still prints
    from envcheck.redact import scrub as _scrub
    from envcheck.redact import scrub_text as _scrub_text
except ImportError:  # pragma: no cover - redact ships with envcheck
    def _scrub(obj: Any) -> Any:
        return obj

    def _scrub_text(text: str) -> str:
        return text

GiB = 1024**3
_LABEL = {Severity.ERROR: "ERROR", Severity.WARN: "WARN", Severity.INFO: "INFO", Severity.OK: "OK"}
_INDENT = "  "
_MAX_TEXT_LINES = 12  # of a multi-line evidence value (stderr tails), the last lines are kept
WIDTH = 100  # default text width (not a terminal: files, pipes, golden tests)


# ------------------------------------------------------------------------------------ summary


def summarize(findings: list[Finding], strict: bool = False, scope: str = "full") -> dict[str, Any]:
    """Counts, the worst severity, the verdict word, the default-mode exit code and the scope."""
    from envcheck.rules import exit_code

    count = {s: sum(1 for f in findings if f.severity == s) for s in Severity}
    worst = max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
    if count[Severity.ERROR]:
        verdict = "not ready"
    elif any(f.id.endswith(".probe-failed") for f in findings):
        verdict = "incomplete"  # a probe failed: "ready" would claim checks that did not run
    elif count[Severity.WARN]:
        verdict = "ready with warnings"
    else:
        verdict = "ready"
    return {
        "errors": count[Severity.ERROR],
        "warnings": count[Severity.WARN],
        "infos": count[Severity.INFO],
        "worst": worst.value,
        "verdict": verdict,
        "strict": strict,
        "exit_code": exit_code(findings, strict=strict),
        "scope": scope,
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(summary: dict) -> str:
    parts = [_plural(summary["errors"], "error"), _plural(summary["warnings"], "warning"),
             _plural(summary["infos"], "info")]
    return ", ".join(p for p in parts if not p.startswith("0 ")) or "none"


# ------------------------------------------------------------------------------------ JSON


def _replay(snapshot: dict, replayed_from: str | None) -> dict | None:
    if replayed_from is None:
        return None
    created = snapshot.get("created_at")
    return {"file": str(replayed_from), "probed_at": created if isinstance(created, str) else None}


def to_json(snapshot: dict, findings: list[Finding], strict: bool = False, *, scope: str = "full",
            replayed_from: str | None = None) -> str:
    """The snapshot plus ``findings`` and ``summary`` (see the module docstring)."""
    ordered = sort_findings(list(findings))
    doc = {**snapshot, "findings": [f.to_dict() for f in ordered],
           "summary": summarize(ordered, strict=strict, scope=scope)}
    doc.pop("replayed_from", None)  # a replay of a replay names the file read now
    if replayed_from is not None:
        doc["replayed_from"] = _replay(snapshot, replayed_from)
    return json.dumps(_scrub(doc), indent=2, sort_keys=True, default=str) + "\n"


# ------------------------------------------------------------------------------------ text helpers


def _ascii(text: str) -> str:
    """Keep the report encodable anywhere: common typographic characters become ASCII."""
    table = {"\u2265": ">=", "\u2264": "<=", "\u2013": "-", "\u2014": "-", "\u2026": "...",
             "\u00b0": "", "\u00d7": "x", "\u2192": "->", "\u2018": "'", "\u2019": "'",
             "\u201c": '"', "\u201d": '"', "\u00b7": "-"}
    for a, b in table.items():
        text = text.replace(a, b)
    return text.encode("ascii", "replace").decode("ascii")


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _safely(fn, *args, fallback: Any = None) -> Any:
    """A summary row that cannot be formatted (a value of an unexpected shape in a hand-edited
    or future snapshot) shows as unreadable instead of failing the whole report."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - formatting must never take the report down
        return fallback


def _bytes(n: Any) -> str:
    if is_na(n):
        return "n/a"
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        return "?"
    for unit, size in (("TiB", 1024**4), ("GiB", GiB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _table(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]


# ------------------------------------------------------------------------------------ findings


def _finding_lines(f: Finding, color: bool, width: int = WIDTH) -> list[str]:
    label = _LABEL.get(f.severity, f.severity.value.upper())
    pad = " " * (6 - len(label))
    head = f"{_INDENT}{severity(label, f.severity.value, color)}{pad} {paint(f.id, color, bold=True)}"
    body_indent = _INDENT + " " * 7
    lines = [head] + [f"{body_indent}{t}" for t in _wrap(f.title, width - len(body_indent))]
    rows: list[tuple[str, str]] = []
    if f.detail:
        rows.append(("why", f.detail))
    for k, v in (f.evidence or {}).items():
        rows.append((str(k), value_text(v)))
    if f.fix:
        rows.append(("fix", f.fix))
    if not rows:
        return lines
    key_width = min(max(len(k) for k, _ in rows), 24)
    room = width - len(body_indent) - key_width - 2
    for key, text in rows:
        text_lines = str(text).splitlines() or [""]
        if len(text_lines) > _MAX_TEXT_LINES:
            text_lines = ["..."] + text_lines[-_MAX_TEXT_LINES:]
        if key != "fix":
            # Prose wraps at spaces; a fix stays on one line so it can be copied and pasted.
            text_lines = [w for t in text_lines for w in (_wrap(t, room) if len(t) > room else [t])]
        shown_key = paint(key.ljust(key_width), color, fg="green" if key == "fix" else None,
                          bold=key == "fix")
        if len(key) > key_width:  # an unusually long key gets its own line
            lines.append(f"{body_indent}{shown_key}")
            lines.extend(f"{body_indent}{' ' * key_width}  {t}" for t in text_lines)
            continue
        lines.append(f"{body_indent}{shown_key}  {text_lines[0]}")
        lines.extend(f"{body_indent}{' ' * key_width}  {t}" for t in text_lines[1:])
    return lines


# ------------------------------------------------------------------------------------ machine


def _section_na(s: dict, name: str) -> str | None:
    """'n/a (reason)' when a whole section is unavailable (its probe failed), else None."""
    section = s.get(name)
    if isinstance(section, dict) and not is_na(section):
        return None
    return na_text(section) if is_na(section) else "n/a"


def _python_line(s: dict) -> str:
    if _section_na(s, "python"):
        return _section_na(s, "python")
    py = s["python"]
    if py.get("status") not in (None, "ok"):
        msg = get(s, "python.error.message")
        return f"not inspected ({msg or py.get('status')})"
    parts = [value_text(py.get("version", "?")), f"({value_text(py.get('implementation', '?'))})",
             value_text(py.get("executable", "?"))]
    env = []
    if py.get("venv") is True:
        env.append("venv")
    if isinstance(py.get("conda_env"), str):
        env.append(f"conda:{py['conda_env']}")
    if py.get("free_threaded") is True:
        env.append("free-threaded")
    return " ".join(parts + env)


def _cudnn(v: Any) -> str | None:
    # torch.backends.cudnn.version() is an int like 90501 (9.5.1) or 8902 (8.9.2).
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        return None
    if v >= 10000:
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"


def _torch_lines(s: dict) -> list[str]:
    if _section_na(s, "torch"):
        return [_section_na(s, "torch")]
    t = s["torch"]
    status = t.get("status")
    if status == "not_installed":
        return ["not installed"]
    if status != "ok":
        err = t.get("error") if isinstance(t.get("error"), dict) else {}
        msg = str(err.get("message") or status or "unknown").strip().splitlines()
        word = {"import_error": "import failed", "crashed": "import crashed", "timeout": "import hung",
                "probe_failed": "not inspected"}.get(str(status), str(status))
        last = msg[-1] if msg else ""
        return [f"{word}: {last[:70] + '...' if len(last) > 73 else last}".rstrip(": ")]
    first = [value_text(t.get("version", "?"))]
    if isinstance(t.get("cuda"), str):
        first.append(f"CUDA {t['cuda']}")
    elif isinstance(t.get("hip"), str):
        first.append(f"ROCm/HIP {t['hip']}")
    else:
        first.append("CPU-only build")
    cudnn = _cudnn(t.get("cudnn"))
    if cudnn:
        first.append(f"cuDNN {cudnn}")
    if isinstance(t.get("nccl"), str):
        first.append(f"NCCL {t['nccl']}")
    triton = get(s, "torch.compile.triton.version")
    if isinstance(triton, str):
        first.append(f"triton {triton}")
    avail = t.get("cuda_available")
    second = f"CUDA available: {value_text(avail)}"
    if avail is True and isinstance(t.get("device_count"), int):
        second += f" ({_plural(t['device_count'], 'device')})"
    if isinstance(t.get("import_seconds"), (int, float)):
        second += f", import {t['import_seconds']:.2f} s"
    return ["  ".join(first), second]


def _driver_line(s: dict) -> str:
    if _section_na(s, "nvidia"):
        return _section_na(s, "nvidia")
    status = get(s, "nvidia.nvml.status")
    if status != "ok":
        return f"not available (NVML: {status or 'not probed'})"
    parts = [value_text(get(s, "nvidia.driver_version", "?"))]
    cuda = get(s, "nvidia.cuda_driver_version")
    if isinstance(cuda, str):
        parts.append(f"(supports CUDA <= {cuda})")
    nvml = get(s, "nvidia.nvml_version")
    if isinstance(nvml, str):
        parts.append(f"NVML {nvml}")
    return "  ".join(parts)


def _gpu_row(g: dict) -> list[str]:
    idx = str(g.get("index", "?"))
    err = g.get("error") if isinstance(g.get("error"), dict) else None
    if err:
        return [idx, f"({err.get('class', 'error')}: {str(err.get('message', ''))[:50]})", "", "", "", "", "", ""]
    name = g.get("name") if isinstance(g.get("name"), str) else "?"
    cc = g.get("compute_capability") if isinstance(g.get("compute_capability"), str) else "?"
    mem = g.get("memory") if isinstance(g.get("memory"), dict) and not is_na(g.get("memory")) else {}
    used, total = mem.get("used_bytes"), mem.get("total_bytes")
    memory = (f"{used / GiB:.1f}/{total / GiB:.1f} GiB"
              if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (used, total))
              else "n/a")
    temp = g.get("temperature_c")
    temp_s = f"{temp}C" if isinstance(temp, (int, float)) and not isinstance(temp, bool) else "n/a"
    draw, limit = get(g, "power.draw_w"), get(g, "power.limit_w")
    power = (f"{draw:.0f}/{limit:.0f} W" if isinstance(draw, (int, float)) and isinstance(limit, (int, float))
             else f"{draw:.0f} W" if isinstance(draw, (int, float)) else "n/a")
    ecc = g.get("ecc")
    if not isinstance(ecc, dict) or is_na(ecc):
        ecc_s = "n/a"
    elif ecc.get("mode_current") is False:
        ecc_s = "off"
    else:
        vol, agg = ecc.get("volatile_uncorrected"), ecc.get("aggregate_uncorrected")
        nums = [x for x in (vol, agg) if isinstance(x, int) and not isinstance(x, bool)]
        ecc_s = f"{max(nums)} unc" if nums and max(nums) > 0 else ("ok" if nums else "on")
    p = g.get("pcie") if isinstance(g.get("pcie"), dict) and not is_na(g.get("pcie")) else {}
    gen, width = p.get("gen_current"), p.get("width_current")
    if isinstance(gen, int) and isinstance(width, int):
        pcie = f"Gen{gen} x{width}"
        gmax, wmax = p.get("gen_max"), p.get("width_max")
        if isinstance(gmax, int) and isinstance(wmax, int) and (gen < gmax or width < wmax):
            pcie += f" (max Gen{gmax} x{wmax})"
    else:
        pcie = "n/a"
    return [idx, name, cc, memory, temp_s, power, ecc_s, pcie]


def _gpu_lines(s: dict) -> list[str]:
    gpus = [g for g in _list(get(s, "nvidia.gpus", [])) if isinstance(g, dict)]
    if not gpus:
        return []
    rows = [["#", "NAME", "CC", "MEMORY", "TEMP", "POWER", "ECC", "PCIE"]]
    rows += [_gpu_row(g) for g in gpus]
    return _table(rows, _INDENT * 2)


def _host_rows(s: dict) -> list[tuple[str, str]]:
    if _section_na(s, "host"):
        return [("Host facts", _section_na(s, "host"))]
    h = s["host"]
    rows: list[tuple[str, str]] = []
    os_name = get(s, "host.os.distro") or get(s, "host.os.system")
    os_parts = [str(os_name) if os_name else "n/a"]
    for key, label in (("kernel", "kernel "), ("arch", ""), ("glibc", "glibc ")):
        v = get(s, f"host.{key}")
        if isinstance(v, str) and v:
            os_parts.append(f"{label}{v}")
    if get(s, "host.wsl") is True:
        os_parts.append("WSL")
    rows.append(("OS", "  ".join(os_parts)))
    model = get(s, "host.cpu.model")
    phys, logical = get(s, "host.cpu.physical_cores"), get(s, "host.cpu.logical_cores")
    cpu = str(model) if model else "n/a"
    if isinstance(phys, int) or isinstance(logical, int):
        cpu += f"  {phys if isinstance(phys, int) else '?'} cores / {logical if isinstance(logical, int) else '?'} threads"
    rows.append(("CPU", cpu))
    total, avail = get(s, "host.ram.total_bytes"), get(s, "host.ram.available_bytes")
    rows.append(("RAM", f"{_bytes(total)} total, {_bytes(avail)} available" if total is not None
                 else value_text(h.get("ram", "n/a"))))
    disks = [d for d in _list(get(s, "host.disk", [])) if isinstance(d, dict)]
    # Entries with identical figures are one filesystem (cwd, home and /tmp often are).
    grouped: dict[tuple, list[tuple[str, str]]] = {}
    for d in disks:
        key = (_bytes(d.get("free_bytes")), _bytes(d.get("total_bytes")))
        path = d.get("path") if isinstance(d.get("path"), str) else "?"
        grouped.setdefault(key, []).append((str(d.get("label", "?")), path))
    disk_lines = []
    for (free, total_), members in grouped.items():
        labels = ", ".join(label for label, _ in members)
        paths = ", ".join(dict.fromkeys(path for _, path in members))
        disk_lines.append(f"{labels} ({paths}): {free} free of {total_}")
    if disks:
        rows.append(("Disk", disk_lines[0]))
        rows.extend(("", line) for line in disk_lines[1:])
    else:
        rows.append(("Disk", "n/a"))
    shm = get(s, "host.shm.total_bytes")
    rows.append(("/dev/shm", _bytes(shm) if shm is not None else "n/a"))
    kind = get(s, "host.container.kind")
    rows.append(("Container", str(kind) if kind else "none detected"))
    mem_limit, cpu_quota = get(s, "host.cgroup.memory_limit_bytes"), get(s, "host.cgroup.cpu_quota_cores")
    limits = ([f"memory {_bytes(mem_limit)}"] if isinstance(mem_limit, int) else []) + (
        [f"{cpu_quota:g} CPUs"] if isinstance(cpu_quota, (int, float)) and not isinstance(cpu_quota, bool) else [])
    if limits:
        rows.append(("Limits", "cgroup: " + ", ".join(limits)))
    return rows


def _target_line(s: dict) -> str | None:
    """Which interpreter was judged and why, and how to judge another (envcheck.target)."""
    t = s.get("target")
    if not isinstance(t, dict) or not isinstance(t.get("reason"), str):
        return None
    return f"judged: {t['reason']}; choose another with {t.get('choose_another') or '--python PATH'}"


_NODE_SCOPE = "not judged (--scope node: the node alone, no Python environment)"


def _machine_lines(s: dict, color: bool, width: int = WIDTH, scope: str = "full") -> list[str]:
    bad = "n/a (unreadable value in the snapshot)"
    rows: list[tuple[str, str]] = [("Host", str(get(s, "host.hostname") or "n/a"))]
    if scope == "node":
        rows.append(("Python", _NODE_SCOPE))
    else:
        rows.append(("Python", _safely(_python_line, s, fallback=bad)))
        target = _safely(_target_line, s)
        if target:
            rows.append(("", target))
        torch = _safely(_torch_lines, s, fallback=[bad])
        rows.append(("torch", torch[0]))
        rows.extend(("", line) for line in torch[1:])
    rows.append(("Driver", _safely(_driver_line, s, fallback=bad)))
    count = get(s, "nvidia.gpu_count")
    gpu_rows = _safely(_gpu_lines, s, fallback=[_INDENT * 2 + bad])
    if gpu_rows or isinstance(count, int):
        rows.append(("GPUs", str(count if isinstance(count, int) else len(gpu_rows) - 1)))
    host_rows = _safely(_host_rows, s, fallback=[("Host facts", bad)])
    lines = []
    key_width = max(len(k) for k, _ in rows + host_rows)
    room = width - len(_INDENT) - key_width - 2
    for key, value in rows + host_rows:
        first, *more = _wrap(value, room) if len(value) > room else [value]
        lines.append(f"{_INDENT}{paint(key.ljust(key_width), color, bold=bool(key))}  {first}".rstrip())
        lines.extend(f"{_INDENT}{' ' * key_width}  {t}" for t in more)
        if key == "GPUs":
            lines.extend(gpu_rows)
    return lines


# ------------------------------------------------------------------------------------ text


def _verdict_lines(summary: dict, color: bool, width: int = WIDTH) -> list[str]:
    word = summary["verdict"].upper()
    sev = "error" if summary["errors"] else "warn" if summary["warnings"] or summary["verdict"] == "incomplete" else "ok"
    code = summary["exit_code"]
    tail = f"exit {code}"
    if summary["warnings"] and not summary["errors"] and not summary["strict"]:
        tail += "; 1 with --strict"
    counts = _counts(summary)
    text = f"{word}: {counts} ({tail})" if counts != "none" else f"{word}: no problems found ({tail})"
    label = "Verdict: "
    first, *more = _wrap(text, width - len(label))
    return ([paint(label, color, bold=True) + severity(first, sev, color)]
            + [" " * len(label) + severity(t, sev, color) for t in more])


def _neutral(f: Finding) -> Finding:
    return replace(f, id=neutralise(f.id), title=neutralise(f.title), fix=neutralise(f.fix),
                   detail=neutralise(f.detail), evidence=neutralise_obj(f.evidence or {}))


def to_text(snapshot: dict, findings: list[Finding], color: bool = False, strict: bool = False, *,
            width: int = WIDTH, scope: str = "full", replayed_from: str | None = None) -> str:
    """The human report: findings first (worst first), machine facts, one verdict line."""
    # Untrusted text (hostname, GPU names, torch errors, paths; a snapshot file) is neutralised
    # before any colour code is added: envcheck.report.safe.
    snapshot = neutralise_obj(snapshot)
    replayed_from = neutralise(replayed_from) if replayed_from else replayed_from
    ordered = sort_findings([_neutral(f) for f in findings])
    summary = summarize(ordered, strict=strict, scope=scope)
    host = get(snapshot, "host.hostname")
    created = snapshot.get("created_at") if isinstance(snapshot.get("created_at"), str) else None
    head = " - ".join(x for x in ("envcheck doctor", host if isinstance(host, str) else None, created) if x)
    lines = [paint(head, color, bold=True)]
    replay = _replay(snapshot, replayed_from)
    if replay:
        lines.extend(_wrap(f"replayed from {replay['file']} (probed at {replay['probed_at'] or 'an unknown time'}); "
                           "nothing was probed now", width))
    if scope == "node":
        lines.extend(_wrap("scope: node (driver, GPUs, host; no Python environment judged)", width))
    lines.append("")
    lines.append(paint("Findings", color, bold=True) + f": {_counts(summary)}")
    for f in ordered:
        lines.extend(_finding_lines(f, color, width))
    lines.append("")
    lines.append(paint("Machine", color, bold=True))
    lines.extend(_machine_lines(snapshot, color, width, scope))
    lines.append("")
    lines.extend(_verdict_lines(summary, color, width))
    # Scrub first (its patterns see the text as produced), then make it ASCII.
    text = "\n".join(line.rstrip() for line in "\n".join(lines).splitlines())
    return _ascii(_scrub_text(text)) + "\n"
