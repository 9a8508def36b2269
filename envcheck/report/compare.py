"""Render ``envcheck compare``: text for people, JSON (schema ``envcheck.compare``) for machines.

Text layout (stable; tests/report/test_compare_report.py)::

    envcheck compare - node-a vs node-b                      (two nodes: side by side)
    envcheck compare - 200 nodes, majority per field         (many: majority and odd nodes)
    envcheck compare - 200 nodes against golden.json (from node-001)

    <group title>                                            (only fields that differ)
      <label>        <value> (<count> of <n>)
                     <other value> (<count>): node-7, node-9
    Odd nodes                                                (fleet and golden modes)
      node-7   NCCL_IB_DISABLE
    Verdict: SAME | DIFFERENT - ... (exit 0|1)

The JSON is the document of :func:`envcheck.compare.compare`, scrubbed like every report.
"""

from __future__ import annotations

import json
import re
from typing import Any

from envcheck.report.style import paint, severity
from envcheck.report.values import value_text

try:
    from envcheck.redact import scrub as _scrub
except ImportError:  # pragma: no cover - redact ships with envcheck
    def _scrub(obj: Any) -> Any:
        return obj

_INDENT = "  "
_MAX_NAMES = 6
_MAX_VALUE = 60


def to_json(result: dict) -> str:
    return json.dumps(_scrub(result), indent=2, sort_keys=True, default=str) + "\n"


def _clean(text: str) -> str:
    """ASCII only, no control characters (escape sequences from a hostile snapshot)."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)
    return text.encode("ascii", "replace").decode("ascii")


def fmt(value: Any, env: bool = False) -> str:
    """One compared value as compact text (an unset environment variable reads "unset")."""
    out = value_text(value, none="unset" if env else "-")
    out = _clean(out)
    return out if len(out) <= _MAX_VALUE else out[: _MAX_VALUE - 3] + "..."


def _names(names: list[str]) -> str:
    shown = ", ".join(_clean(n) for n in names[:_MAX_NAMES])
    return shown + (f" (+{len(names) - _MAX_NAMES} more)" if len(names) > _MAX_NAMES else "")


def _label(row: dict) -> str:
    return row["label"] + ("" if row["weight"] else " (not weighed)")


def _title(result: dict) -> str:
    n = result["summary"]["nodes"]
    if result["mode"] == "pair":
        a, b = (x["name"] for x in result["nodes"])
        return f"envcheck compare - {_clean(a)} vs {_clean(b)}"
    if result["mode"] == "golden":
        g = result["golden"] or {}
        src = g.get("source") if isinstance(g.get("source"), dict) else {}
        frm = f" (from {_clean(str(src.get('node')))})" if src.get("node") else ""
        return f"envcheck compare - {n} node{'s' if n != 1 else ''} against {_clean(str(g.get('file')))}{frm}"
    return f"envcheck compare - {n} nodes, majority per field"


def _pair_lines(result: dict, rows: list[dict], color: bool) -> list[str]:
    a, b = (x["name"] for x in result["nodes"])
    table = []
    for r in rows:
        env = r["group"] == "env"
        by_node = {}
        for v in r["values"]:
            for nm in v.get("nodes") or []:
                by_node[nm] = fmt(v["value"], env)
        table.append((r, _label(r), by_node.get(a, "?"), by_node.get(b, "?")))
    lw = max([len("FIELD")] + [len(t[1]) for t in table])
    aw = max([len(_clean(a))] + [len(t[2]) for t in table])
    lines = [paint(f"{_INDENT}{'FIELD'.ljust(lw)}  {_clean(a).ljust(aw)}  {_clean(b)}", color, bold=True)]
    group = None
    for r, label, va, vb in table:
        if r["group"] != group:
            group = r["group"]
            lines.append(paint(_group_title(result, group), color, bold=True))
        lines.append(f"{_INDENT}{label.ljust(lw)}  {va.ljust(aw)}  {vb}".rstrip())
    return lines


def _group_title(result: dict, gid: str) -> str:
    return next((g["title"] for g in result["groups"] if g["id"] == gid), gid)


def _fleet_lines(result: dict, rows: list[dict], color: bool) -> list[str]:
    n = result["summary"]["nodes"]
    lw = max(len(_label(r)) for r in rows)
    lines, group = [], None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            lines.append(paint(_group_title(result, group), color, bold=True))
        env = r["group"] == "env"
        pad = " " * (len(_INDENT) + lw + 2)
        first = True
        if r["reference_from"] == "golden":
            ref_count = next((v["count"] for v in r["values"] if "nodes" not in v), 0)
            head = f"{fmt(r['reference'], env)} (golden; {ref_count} of {n})"
            lines.append(f"{_INDENT}{_label(r).ljust(lw)}  {head}")
            first = False
        for v in r["values"]:
            if "nodes" not in v and r["reference_from"] == "golden":
                continue
            if "nodes" not in v:  # the majority value
                text = f"{fmt(v['value'], env)} ({v['count']} of {n})"
            else:
                text = f"{fmt(v['value'], env)} ({v['count']}): {_names(v['nodes'])}"
            lines.append(f"{_INDENT}{_label(r).ljust(lw)}  {text}" if first else f"{pad}{text}")
            first = False
        if r["unknown_nodes"]:
            lines.append(f"{pad}unknown ({len(r['unknown_nodes'])}): {_names(r['unknown_nodes'])}")
    odd = [x for x in result["nodes"] if x["weighty"]]
    if odd:
        lines.append("")
        lines.append(paint("Odd nodes", color, bold=True) + f" ({len(odd)} differ in a field of weight)")
        nw = max(len(_clean(x["name"])) for x in odd[:50])
        for x in sorted(odd, key=lambda x: (-len(x["weighty"]), x["name"]))[:50]:
            keys = ", ".join(k[4:] if k.startswith("env.") else k for k in x["weighty"])
            lines.append(f"{_INDENT}{_clean(x['name']).ljust(nw)}  {keys}")
        if len(odd) > 50:
            lines.append(f"{_INDENT}... and {len(odd) - 50} more (see --format json)")
    return lines


def to_text(result: dict, color: bool = False) -> str:
    s = result["summary"]
    rows = [r for r in result["fields"] if r["status"] == "differs"]
    lines = [paint(_title(result), color, bold=True), ""]
    if rows:
        lines += _pair_lines(result, rows, color) if result["mode"] == "pair" else _fleet_lines(result, rows, color)
        lines.append("")
    same = s["fields"] - s["differing_fields"]
    if s["weighty_fields"]:
        who = f" on {s['odd_nodes']} node{'s' if s['odd_nodes'] != 1 else ''}" if result["mode"] != "pair" else ""
        one = s["weighty_fields"] == 1
        text = (f"DIFFERENT - {s['weighty_fields']} field{'' if one else 's'} of weight "
                f"differ{'s' if one else ''}{who}; {same} agree (exit {s['exit_code']})")
        sev = "error"
    else:
        extra = (f"; {s['differing_fields']} difference{'s' if s['differing_fields'] != 1 else ''} not weighed"
                 if s["differing_fields"] else "")
        text = f"SAME - {same} fields agree on {s['nodes']} nodes{extra} (exit {s['exit_code']})"
        sev = "ok"
    lines.append(paint("Verdict: ", color, bold=True) + severity(text, sev, color))
    return "\n".join(lines) + "\n"
