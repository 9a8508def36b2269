"""The fleet comparison (schema "envcheck.compare", ``envcheck compare``) as HTML.

Shape (envcheck/compare.py ``compare``): ``mode`` pair|fleet|golden, ``nodes[]`` {name, source,
kind, differs, weighty}, ``fields[]`` {key, group, label, weight, status same|differs, reference,
reference_from, values [{value, count, nodes?}], odd_nodes, unknown_nodes}, ``groups[]`` {id,
title}, ``summary``.

A node x field matrix of the differing fields (the odd value written in the cell, hatched and
marked with a not-equal sign), the differences grouped by what matters with the reference value
and who differs, and the fields that are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck.report.html.base import badge, header, is_num, section, t, table
from envcheck.report.values import value_text

_MAX_NAMES = 12  # nodes listed per value; the rest are counted
_MAX_COLUMNS = 14  # differing fields drawn in the matrix; the table below lists every one


def fmt(value: Any, env: bool = False) -> str:
    """One compared value as text (escaped by the caller)."""
    return value_text(value, none="unset" if env else "\u2013")


def _names(names: Any) -> str:
    names = [str(n) for n in names] if isinstance(names, list) else []
    shown = ", ".join(names[:_MAX_NAMES])
    return t(shown + (f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else ""))


def _fields(doc: Mapping) -> list[Mapping]:
    return [f for f in doc.get("fields") or [] if isinstance(f, Mapping)]


def _value_of(field: Mapping, node: str) -> Any:
    for v in field.get("values") or []:
        if isinstance(v, Mapping) and node in (v.get("nodes") or []):
            return v.get("value")
    return field.get("reference")


def matrix(doc: Mapping) -> str:
    """Odd nodes x differing fields: the node's value where it differs, '=' where it does not."""
    differing = [f for f in _fields(doc) if f.get("status") == "differs"]
    nodes = [n for n in doc.get("nodes") or [] if isinstance(n, Mapping) and n.get("differs")]
    if not differing or not nodes:
        return ""
    cols = differing[:_MAX_COLUMNS]
    head = ["Node"] + [f'{t(f.get("label") or f.get("key"))}<br><span class="mono muted">{t(f.get("key"))}</span>'
                       for f in cols]
    rows = []
    for n in nodes:
        name = str(n.get("name"))
        cells = [f"<strong>{t(name)}</strong>"]
        for f in cols:
            env = str(f.get("key", "")).startswith("env.")
            if name in (f.get("odd_nodes") or []) or (f.get("reference_from") is None
                                                       and name in [x for v in f.get("values") or []
                                                                    if isinstance(v, Mapping)
                                                                    for x in v.get("nodes") or []]):
                full = fmt(_value_of(f, name), env)
                short = full if len(full) <= 28 else full[:26] + "\u2026"
                cells.append(f'<span class="diff" title="{t(full)}">\u2260 {t(short)}</span>')
            elif name in (f.get("unknown_nodes") or []):
                cells.append('<span class="muted">?</span>')
            else:
                cells.append('<span class="muted">=</span>')
        rows.append(cells)
    note = "" if len(differing) <= len(cols) else f'<p class="note">The first {len(cols)} of ' \
        f"{len(differing)} differing fields; the table below lists all.</p>"
    return '<div class="scroll">' + table(head, rows, cls="matrix") + "</div>" + note


def differences(doc: Mapping) -> str:
    titles = {g.get("id"): g.get("title") for g in doc.get("groups") or [] if isinstance(g, Mapping)}
    by_group: dict[Any, list[Mapping]] = {}
    for f in _fields(doc):
        if f.get("status") == "differs":
            by_group.setdefault(f.get("group"), []).append(f)
    if not by_group:
        return f"<p>{badge('same')} Every compared field is the same on every node.</p>"
    ref_word = {"golden": "golden", "majority": "majority"}
    out = []
    for gid, fields in by_group.items():
        rows = []
        for f in fields:
            env = str(f.get("key", "")).startswith("env.")
            ref = (f'{t(fmt(f.get("reference"), env))} <span class="muted">'
                   f'({ref_word.get(str(f.get("reference_from")), "no majority")})</span>'
                   if f.get("reference_from") else '<span class="muted">no majority</span>')
            others = "<br>".join(
                f'<span class="diff">\u2260 {t(fmt(v.get("value"), env))}</span> '
                f'\u00d7{t(v.get("count"))}: {_names(v.get("nodes"))}'
                for v in f.get("values") or [] if isinstance(v, Mapping) and v.get("nodes"))
            rows.append([t(f.get("label") or f.get("key")), ref, others or "\u2013",
                         "weighs" if f.get("weight") else '<span class="muted">shown only</span>'])
        out.append(f"<h3>{t(titles.get(gid) or gid)}</h3>"
                   + table(["Field", "Reference", "Differs on", "Weight"], rows, cls="wide diffs"))
    return "".join(out)


def same_fields(doc: Mapping) -> str:
    rows = [[t(f.get("label") or f.get("key")), f'<span class="mono">{t(f.get("key"))}</span>',
             t(fmt(f.get("reference"), str(f.get("key", "")).startswith("env.")))]
            for f in _fields(doc) if f.get("status") == "same"]
    if not rows:
        return ""
    return section(f"The same everywhere ({len(rows)})",
                   f"<details><summary>show the {len(rows)} fields</summary>"
                   + table(["Field", "Key", "Value"], rows, cls="wide") + "</details>")


def render(doc: Mapping) -> tuple[str, str]:
    summary = doc.get("summary") if isinstance(doc.get("summary"), Mapping) else {}
    nodes = [n for n in doc.get("nodes") or [] if isinstance(n, Mapping)]
    mode = str(doc.get("mode") or "fleet")
    golden = doc.get("golden") if isinstance(doc.get("golden"), Mapping) else None
    verdict = "same" if summary.get("exit_code") == 0 else "differs"
    how = {"pair": "two machines side by side", "fleet": "each field against the majority value",
           "golden": "each field against the golden file"}.get(mode, t(mode))
    meta = [how]
    if golden:
        meta.append(f"golden {t(golden.get('file') or golden.get('source') or '?')}")
    for key, word in (("fields", "fields compared"), ("differing_fields", "differ"),
                      ("weighty_fields", "weigh"), ("odd_nodes", "odd nodes")):
        if is_num(summary.get(key)):
            meta.append(f"{t(summary[key])} {word}")
    head = header("compare", f"{len(nodes)} machines", verdict, meta)
    body = ""
    m = matrix(doc)
    if m:
        body += section("Who differs", m, note="\u2260 and the node's value where it differs from the reference; "
                        "= where it agrees; ? where its report does not tell.")
    body += section("Differences", differences(doc))
    node_rows = [[t(n.get("name")), t(n.get("source") or ""), t(n.get("kind") or ""),
                  badge("differs") if n.get("weighty") else badge("same"),
                  t(", ".join(str(k) for k in n.get("differs") or [])) or "\u2013"] for n in nodes]
    if node_rows:
        body += section("Machines", table(["Node", "File", "Kind", "Status", "Differing fields"], node_rows,
                                          cls="wide"))
    body += same_fields(doc)
    return t(f"envcheck compare \u00b7 {len(nodes)} machines"), head + body
