"""The cluster report (schema "envcheck.cluster", envcheck/validate/distributed/aggregate.py) as HTML.

A node x metric heat map coloured by each node's distance from the cluster median (the value
written in every cell, stragglers hatched and marked), the --pairwise matrix with failed pairs
hatched and crossed, the node table, the merged checks and the all-reduce curves.

A node's value is its worst device's, computed by the same function as the straggler rule
(aggregate._node_figures), so the colours and the verdict cannot disagree.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from envcheck.report.cluster import _short  # one way to show a compared value (text and HTML)
from envcheck.report.html.base import (
    badge,
    c,
    header,
    is_num,
    mix,
    num,
    reasons_list,
    section,
    status_class,
    svg,
    t,
    table,
)
from envcheck.report.html.charts import curve_chart
from envcheck.report.html.validate import WATCH_LEGEND, checks_table, notable, watch_blocks
from envcheck.validate.distributed import aggregate

MAX_MATRIX_NODES = 64  # beyond, an N x N matrix is mostly empty cells: the failed pairs are listed instead
_WORSE, _BETTER, _MID = "#b35806", "#2166ac", "#f7f7f7"  # ColorBrewer PuOr/RdBu ends: colour-blind safe


def _nodes(report: Mapping) -> list[Mapping]:
    return [n for n in report.get("nodes") or [] if isinstance(n, Mapping)]


def _host(n: Mapping) -> str:
    return str(n.get("hostname") or "?")


def node_values(node: Mapping) -> dict[tuple[str, str], tuple[float, str]]:
    if isinstance(node.get("figures"), list):  # schema 2: the node's worst figure per check and metric
        ranks = [{"report": {"figures": node["figures"]}}]
    else:  # schema 1: every rank's figures
        ranks = [{"report": {"figures": r.get("figures") or []}} for r in node.get("ranks") or []
                 if isinstance(r, Mapping)]
    return aggregate._node_figures(ranks, aggregate.STRAGGLER_CHECKS)


def _metric_label(metric: str, unit: str) -> str:
    """"bf16_tflops" in TFLOPS reads "bf16 TFLOPS"; the full name is in the tooltip."""
    for suffix in ("_tflops", "_GBps", "_gbps", "_s"):
        if metric.endswith(suffix):
            metric = metric[: -len(suffix)]
            break
    return f"{metric.replace('_', ' ')} {unit}".strip()


def _pct(dev: float) -> str:
    """Signed distance from the median with a real minus sign; a decimal below 10 %."""
    text = f"{abs(dev):.1%}" if abs(dev) < 0.1 else f"{abs(dev):.0%}"
    if text in ("0.0%", "0%"):
        return "\u00b10%"
    return ("+" if dev > 0 else "\u2212") + text


def heatmap(report: Mapping) -> str:
    nodes = _nodes(report)
    values = [node_values(n) for n in nodes]
    keys = sorted({k for v in values for k in v}, key=lambda k: (aggregate.STRAGGLER_CHECKS.index(k[0])
                                                                 if k[0] in aggregate.STRAGGLER_CHECKS else 9, k[1]))
    if not nodes or not keys:
        return ""
    threshold = report.get("straggler_threshold")
    threshold = float(threshold) if is_num(threshold) and threshold > 0 else aggregate.DEFAULT_THRESHOLD
    medians = {}
    for k in keys:
        vs = [v[k][0] for v in values if k in v]
        medians[k] = statistics.median(vs) if vs else None
    label_w, verdict_w, cell_w, cell_h, head_h = 170, 104, 108, 24, 44
    x0 = label_w + verdict_w
    width = x0 + cell_w * len(keys) + 4
    height = head_h + cell_h * (len(nodes) + 1) + 8
    parts = []
    for j, k in enumerate(keys):
        cx = x0 + j * cell_w + cell_w / 2
        unit = next((v[k][1] for v in values if k in v), "")
        parts.append(f'<text x="{c(cx)}" y="16" text-anchor="middle" font-weight="600">{t(k[0])}</text>'
                     f'<text class="lbl" x="{c(cx)}" y="32" text-anchor="middle">{t(_metric_label(k[1], unit))}'
                     f"<title>{t(k[1])} ({t(unit)})</title></text>")
    parts.append(f'<text class="lbl" x="{label_w - 8}" y="32" text-anchor="end">node (host)</text>'
                 f'<text class="lbl" x="{label_w + 4}" y="32">verdict</text>')
    for i, (n, v) in enumerate(zip(nodes, values)):
        y = head_h + i * cell_h
        flagged = {(f.get("check"), f.get("metric")) for f in n.get("straggler_figures") or [] if isinstance(f, Mapping)}
        verdict = str(n.get("verdict") or "failed")
        parts.append(f'<text x="{label_w - 8}" y="{c(y + 16)}" text-anchor="end">'
                     f'{t(n.get("node_rank"))} \u00b7 {t(_host(n)[:22])}<title>{t(_host(n))}</title></text>')
        vcls = {"bad": "bad-txt", "warn": "warn-txt"}.get(status_class(verdict), "lbl")
        parts.append(f'<text x="{label_w + 4}" y="{c(y + 16)}" class="{vcls}">{badge_word(verdict)}</text>')
        for j, k in enumerate(keys):
            cx = x0 + j * cell_w
            if k not in v or not medians.get(k):
                parts.append(f'<rect x="{c(cx + 1)}" y="{c(y + 1)}" width="{cell_w - 2}" height="{cell_h - 2}" '
                             f'fill="url(#dots-muted)"><title>{t(_host(n))}: no value</title></rect>'
                             f'<text class="lbl" x="{c(cx + cell_w / 2)}" y="{c(y + 16)}" text-anchor="middle">'
                             "no value</text>")
                continue
            value, unit = v[k]
            dev = value / medians[k] - 1.0
            if aggregate._lower_is_better(unit):
                dev = -dev
            strength = min(1.0, abs(dev) / (2 * threshold))
            fill = mix(_MID, _WORSE if dev < 0 else _BETTER, strength)
            flag = k in flagged
            ink = "#ffffff" if strength > 0.62 else "#1f2328"
            tip = (f"{_host(n)} {k[0]} {k[1]}: {num(value)} {unit}, {dev:+.1%} vs median {num(medians[k])}"
                   + (" (straggler)" if flag else ""))
            parts.append(f'<rect class="cell" x="{c(cx + 1)}" y="{c(y + 1)}" width="{cell_w - 2}" '
                         f'height="{cell_h - 2}" fill="{fill}"><title>{t(tip)}</title></rect>')
            if flag:  # hatched and framed; the figure on a light pill so it stays legible
                parts.append(f'<rect class="cell-flag" x="{c(cx + 1)}" y="{c(y + 1)}" width="{cell_w - 2}" '
                             f'height="{cell_h - 2}"/><rect x="{c(cx + 1.5)}" y="{c(y + 1.5)}" width="{cell_w - 3}" '
                             f'height="{cell_h - 3}" fill="none" stroke="#1f2328" stroke-width="2"/>'
                             f'<rect x="{c(cx + 12)}" y="{c(y + 4)}" width="{cell_w - 24}" height="{cell_h - 8}" '
                             'rx="3" fill="#ffffff" opacity="0.92"/>')
                ink = "#1f2328"
            sign = "\u25bc" if flag else ""
            weight = ' font-weight="700"' if flag else ""
            parts.append(f'<text x="{c(cx + cell_w / 2)}" y="{c(y + 16)}" text-anchor="middle" fill="{ink}"{weight}>'
                         f'{sign}{num(value)} <tspan font-size="10">{_pct(dev)}</tspan></text>')
    y = head_h + len(nodes) * cell_h
    parts.append(f'<line class="axis" x1="0" y1="{c(y + 2)}" x2="{c(width)}" y2="{c(y + 2)}"/>'
                 f'<text x="{label_w - 8}" y="{c(y + 18)}" text-anchor="end" font-weight="600">cluster median</text>')
    for j, k in enumerate(keys):
        parts.append(f'<text x="{c(x0 + j * cell_w + cell_w / 2)}" y="{c(y + 18)}" text-anchor="middle" '
                     f'font-weight="600">{num(medians[k])}</text>')
    label = t(f"heat map of {len(nodes)} nodes by {len(keys)} metrics, coloured by distance from the median")
    chart = svg(width, height, "".join(parts), label, cls="chart heatmap")
    stops = "".join(f'<rect x="{i * 12}" y="0" width="12" height="12" fill="{mix(_MID, _WORSE, 1 - i / 5)}"/>'
                    for i in range(5))
    stops += f'<rect x="60" y="0" width="12" height="12" fill="{_MID}" stroke="#d1d9e0"/>'
    stops += "".join(f'<rect x="{72 + i * 12}" y="0" width="12" height="12" fill="{mix(_MID, _BETTER, (i + 1) / 5)}"/>'
                     for i in range(5))
    pct = f"{2 * threshold:.0%}"
    legend = ('<div class="legend">'
              f'<span>worse \u2212{pct} <svg width="132" height="12">{stops}</svg> better +{pct}'
              " than the median (the cell's value and its distance are written in it)</span>"
              '<span><svg width="26" height="14"><rect width="26" height="14" class="cell-flag"/>'
              '<rect x="1" y="1" width="24" height="12" fill="none" stroke="#1f2328" stroke-width="2"/></svg>'
              f" \u25bc straggler: worse than the median by more than {threshold:.0%}</span>"
              '<span><svg width="26" height="14"><rect width="26" height="14" fill="url(#dots-muted)"/></svg>'
              " no value</span></div>")
    return legend + chart


def badge_word(verdict: str) -> str:
    return {"certified": "\u2713 CERTIFIED", "passed": "\u2713 PASSED", "degraded": "\u26a0 DEGRADED",
            "failed": "\u2717 FAILED"}.get(verdict, t(verdict.upper()))


def pairwise_matrix(report: Mapping) -> str:
    pw = report.get("pairwise")
    if not isinstance(pw, Mapping):
        return ""
    if pw.get("skipped"):
        return f'<p class="muted">Skipped: {t(pw["skipped"])}</p>'
    nodes = _nodes(report)
    index = {n.get("node_rank"): i for i, n in enumerate(nodes)}
    runs = []
    for rnd, ms in enumerate(pw.get("rounds") or [], start=1):
        for m in ms if isinstance(ms, list) else []:
            if isinstance(m, Mapping) and isinstance(m.get("pair"), list) and len(m["pair"]) == 2:
                runs.append((rnd, m))
    if not nodes or not runs:
        return ""
    extra = _pair_tables(pw, nodes, index, runs)
    if len(nodes) > MAX_MATRIX_NODES:
        passed = sum(1 for _, m in runs if m.get("passed"))
        return (f'<p>{passed} of {len(runs)} pairs passed; the matrix is drawn up to {MAX_MATRIX_NODES} nodes '
                f"(this run has {len(nodes)}).</p>" + extra)
    cell, label_w, top = 24, 170, 40
    size = len(nodes) * cell
    width, height = label_w + size + 8, top + size + 8
    parts = []
    for i, n in enumerate(nodes):
        parts.append(f'<text class="lbl" x="{c(label_w + i * cell + cell / 2)}" y="{top - 8}" text-anchor="middle">'
                     f'{t(n.get("node_rank"))}</text>'
                     f'<text x="{label_w - 8}" y="{c(top + i * cell + 16)}" text-anchor="end">'
                     f'{t(n.get("node_rank"))} \u00b7 {t(_host(n)[:20])}</text>')
        for j in range(len(nodes)):
            cls = "diag" if i == j else "pair-none"
            parts.append(f'<rect class="{cls}" x="{c(label_w + j * cell + 1)}" y="{c(top + i * cell + 1)}" '
                         f'width="{cell - 2}" height="{cell - 2}"/>')
    parts.append(f'<text class="lbl" x="{c(label_w + size / 2)}" y="12" text-anchor="middle">partner node</text>')
    for rnd, m in runs:
        a, b = (index.get(x) for x in m["pair"])
        if a is None or b is None:
            continue
        ok = bool(m.get("passed"))
        hosts = " + ".join(_host(nodes[x]) for x in (a, b))
        tip = f"round {rnd}: {hosts}: {num(m.get('busbw_GBps'))} GB/s, " + ("pass" if ok else f"FAIL: {m.get('why') or ''}")
        mark = "\u2713" if ok else "\u2717"
        for i, j in ((a, b), (b, a)):
            x, y = label_w + j * cell, top + i * cell
            parts.append(f'<rect class="{"pair-pass" if ok else "pair-fail"}" x="{c(x + 1)}" y="{c(y + 1)}" '
                         f'width="{cell - 2}" height="{cell - 2}"><title>{t(tip)}</title></rect>'
                         + ("" if ok else f'<circle cx="{c(x + cell / 2)}" cy="{c(y + cell / 2)}" r="7" '
                                          'fill="#ffffff" opacity="0.92"/>')
                         + f'<text x="{c(x + cell / 2)}" y="{c(y + 16)}" text-anchor="middle" '
                         f'class="{"lbl" if ok else "bad-txt"}">{mark}</text>')
    chart = svg(width, height, "".join(parts), t(f"pairwise all-reduce matrix of {len(nodes)} nodes"),
                cls="chart pairmatrix")
    legend = ('<div class="legend">'
              '<span><svg width="16" height="16"><rect x="1" y="1" width="14" height="14" class="pair-pass"/></svg>'
              " \u2713 pair passed</span>"
              '<span><svg width="16" height="16"><rect x="1" y="1" width="14" height="14" class="pair-fail"/></svg>'
              " \u2717 pair failed (error, wrong sums, or slow)</span>"
              '<span><svg width="16" height="16"><rect x="1" y="1" width="14" height="14" class="pair-none"/></svg>'
              " not paired</span></div>")
    return legend + chart + extra


def _pair_tables(pw: Mapping, nodes: list[Mapping], index: dict, runs: list) -> str:
    """The failed pairs, the nodes blamed and the suspect links, as tables."""
    failed = [(rnd, m) for rnd, m in runs if not m.get("passed")]
    rows = [[str(rnd), t(" + ".join(f"{x} ({_host(nodes[index[x]]) if x in index else '?'})" for x in m["pair"])),
             num(m.get("busbw_GBps")), badge("fail"), t(m.get("why") or "")] for rnd, m in failed]
    extra = ""
    if rows:
        extra += "<h3>Failed pairs</h3>" + table(["Round", "Pair", "busbw GB/s", "Status", "Why"], rows,
                                                   numeric=(0, 2), cls="wide")
    bad = [b for b in pw.get("bad_nodes") or [] if isinstance(b, Mapping)]
    if bad:
        extra += "<h3>Nodes blamed</h3>" + table(
            ["Node", "Host", "Verdict", "Why"],
            [[t(b.get("node_rank")), t(b.get("hostname") or "?"), badge(b.get("verdict") or "failed"),
              "<br>".join(t(w) for w in b.get("why") or [])] for b in bad], numeric=(0,), cls="wide")
    links = [x for x in pw.get("suspect_links") or [] if isinstance(x, list)]
    if links:
        arrow = " \u2194 "
        extra += "<h3>Suspect links</h3><ul>" + "".join(
            f"<li>{t(arrow.join(str(h) for h in x))} (both nodes pass with others)</li>" for x in links) + "</ul>"
    return extra


def _ranks(n: Mapping) -> str:
    rs = sorted(r.get("rank") for r in n.get("ranks") or [] if isinstance(r, Mapping) and isinstance(r.get("rank"), int))
    if not rs:
        return "\u2013"
    return f"{rs[0]}\u2013{rs[-1]}" if len(rs) > 1 and rs == list(range(rs[0], rs[-1] + 1)) else ", ".join(map(str, rs))


def node_table(report: Mapping) -> str:
    rows = []
    for n in _nodes(report):
        notes = [f"\u25bc {t(f.get('message'))}" for f in n.get("straggler_figures") or [] if isinstance(f, Mapping)]
        if n.get("pairwise_bad"):
            notes.append("\u2717 blamed by the pairwise all-reduce")
        notes += [f"rank {t(r.get('rank'))}: {t(r.get('error'))}" for r in n.get("ranks") or []
                  if isinstance(r, Mapping) and r.get("error")]
        rows.append([t(n.get("node_rank")), t(_host(n)), badge(n.get("verdict") or "failed"), _ranks(n),
                     "<br>".join(notes) or "\u2013"])
    return table(["Node", "Host", "Verdict", "Ranks", "Why"], rows, numeric=(0,), cls="wide") if rows else ""


def merged_checks(report: Mapping) -> str:
    rows = []
    for ch in report.get("checks") or []:
        if not isinstance(ch, Mapping):
            continue
        ranks = ch.get("ranks") if isinstance(ch.get("ranks"), Mapping) else {}
        per = ", ".join(f"{t(s)}: {len(rs) if isinstance(rs, list) else '?'}" for s, rs in ranks.items())
        msg = "; ".join(x for x in (f"ranks {per}" if per else "", str(ch.get("message") or "")) if x)
        rows.append({"name": ch.get("name"), "status": ch.get("status"), "message": msg})
    return checks_table(rows, timed=False)


def curves(report: Mapping) -> str:
    """The world all-reduce sweep, and each node's intra-node sweep (stragglers dashed)."""
    series, flagged = [], 0
    world = report.get("allreduce_rows") if isinstance(report.get("allreduce_rows"), list) else None
    for n in _nodes(report):
        if isinstance(n.get("intranode_rows"), list) and n["intranode_rows"]:  # schema 2: on the node
            slow = bool(n.get("straggler"))
            flagged += slow
            series.append({"label": f"node {n.get('node_rank')} ({_host(n)}), within the node",
                           "points": [(x.get("bytes"), x.get("busbw_GBps")) for x in n["intranode_rows"]
                                      if isinstance(x, Mapping)], "style": "alt" if slow else "thin"})
            continue
        for r in n.get("ranks") or []:  # schema 1: in each rank's all-reduce details
            ar = next((ch for ch in (r.get("checks") or []) if isinstance(ch, Mapping)
                       and ch.get("name") == "allreduce"), None) if isinstance(r, Mapping) else None
            det = ar.get("details") if isinstance(ar, Mapping) and isinstance(ar.get("details"), Mapping) else {}
            if world is None and isinstance(det.get("rows"), list) and det["rows"]:
                world = det["rows"]
            intra = det.get("intranode_rows")
            if isinstance(intra, list) and intra:
                slow = bool(n.get("straggler"))
                flagged += slow
                series.append({"label": f"node {n.get('node_rank')} ({_host(n)}), within the node",
                               "points": [(x.get("bytes"), x.get("busbw_GBps")) for x in intra if isinstance(x, Mapping)],
                               "style": "alt" if slow else "thin"})
                break
    if world:
        series.insert(0, {"label": "all ranks (world)",
                          "points": [(x.get("bytes"), x.get("busbw_GBps")) for x in world if isinstance(x, Mapping)]})
    chart = curve_chart("cluster all-reduce", series)
    if not chart:
        return ""
    legend = ('<div class="legend"><span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve"/>'
              '<circle cx="15" cy="6" r="3.5" class="pt"/></svg> all ranks (world)</span>'
              '<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve thin"/></svg>'
              " one node, within the node</span>"
              + ('<span><svg width="30" height="12"><line x1="0" y1="6" x2="30" y2="6" class="curve alt"/>'
                 '<circle cx="15" cy="6" r="3.5" class="pt alt"/></svg> \u25bc straggler node, within the node</span>'
                 if flagged else "") + "</div>")
    return section("Bus bandwidth by message size", legend + chart,
                   note="nccl-tests' bus bandwidth (algbw \u00d7 2(n\u22121)/n) per message size.")


MAX_WATCHED_RANKS = 16  # traces drawn on the cluster page; the rest are counted


def watch_section(report: Mapping) -> str:
    """The NVML watcher on every rank (issue 16): the traces of the rank checks where it saw a
    new error or a hardware/thermal clock event; the quiet ones and the unavailable ones counted."""
    shown, quiet, more, off = [], 0, 0, {}
    for n in _nodes(report):
        for r in n.get("ranks") or []:
            if not isinstance(r, Mapping):
                continue
            checks = [ch for ch in r.get("checks") or [] if isinstance(ch, Mapping)
                      and isinstance(ch.get("details"), Mapping) and isinstance(ch["details"].get("watch"), Mapping)]
            for ch in checks:
                w = ch["details"]["watch"]
                if not w.get("available"):
                    why = str(w.get("reason") or "not available")
                    off[why] = off.get(why, 0) + 1
                elif not notable(w):
                    quiet += 1
                elif len(shown) < MAX_WATCHED_RANKS:
                    shown.append(watch_blocks([ch], f"node {n.get('node_rank')} ({_host(n)}) rank {r.get('rank')} "
                                                    "\u00b7 "))
                else:
                    more += 1
    if not (shown or quiet or off):
        return ""
    lines = []
    if quiet:
        lines.append(f"{quiet} watched rank check(s) without a new error or a hardware/thermal clock event.")
    if more:
        lines.append(f"{more} more rank check(s) with a finding, not drawn (their messages are in each rank's report).")
    lines += [f"{t(why)} ({k} rank check(s))" for why, k in sorted(off.items())]
    body = "".join(f"<p>{line}</p>" for line in lines) + (WATCH_LEGEND + "".join(shown) if shown else "")
    return section("GPU watch (NVML during each check, every rank)", body,
                   note="Per-GPU traces are drawn for the rank checks where the watcher saw a new error or a "
                        "hardware or thermal clock slowdown.")


def drift_section(report: Mapping) -> str:
    """Issue 17: the fields whose value differs between nodes (majority first, then who differs),
    and the consensus groups (the same fixed-seed computation's digest per device model)."""
    out = ""
    d = report.get("drift") if isinstance(report.get("drift"), Mapping) else None
    if d:
        rows = []
        for f in d.get("fields") or []:
            if not isinstance(f, Mapping):
                continue
            vals = [v for v in f.get("values") or [] if isinstance(v, Mapping)]
            majority = next((v for v in vals if not v.get("nodes")), vals[0] if vals else {})
            others = "; ".join(f"{', '.join(map(str, v.get('nodes') or []))}: {_short(v.get('value'))}"
                               for v in vals if v is not majority)
            rows.append([t(f.get("label") or f.get("key")), "weighs" if f.get("weight") else "shown only",
                         t(f"{_short(majority.get('value'))} ({majority.get('count')})"), t(others or "-")])
        body = table(["Field", "Weight", "Majority (nodes)", "Differs on"], rows, cls="wide") if rows else \
            '<p class="muted">Every node has the same software in every compared field.</p>'
        out += section("Drift between nodes", body,
                       note=f"{t(d.get('nodes_compared'))} nodes compared"
                            + ("; with 2 nodes there is no majority, so no node is blamed" if d.get("mode") != "fleet"
                               else "; a node that differs in a field that weighs is at least degraded"))
    c = report.get("consensus") if isinstance(report.get("consensus"), Mapping) else None
    if c:
        rows = []
        for g in c.get("groups") or []:
            if not isinstance(g, Mapping):
                continue
            odd = ", ".join(f"rank {o.get('rank')} ({o.get('hostname')})" for o in g.get("outliers") or []
                            if isinstance(o, Mapping))
            rows.append([t(g.get("label")), badge({"agree": "pass", "alone": "skip", "inconclusive": "warn",
                                                   "outliers": "fail"}.get(str(g.get("status")), "skip")),
                         t(g.get("ranks")), t(g.get("digests")), t(odd or "-")])
        out += section("Cross-node consensus", table(["Group", "Status", "Ranks", "Digests", "Differs"], rows,
                                                      numeric=(2, 3), cls="wide"),
                       note="Every rank runs the same fixed-seed GEMM chain and training steps; digests are "
                            "compared within a device model and software build, where results are bit-reproducible.")
    return out


def render(report: Mapping) -> tuple[str, str]:
    nodes = _nodes(report)
    verdict = report.get("verdict") or "failed"
    slow = sum(1 for n in nodes if n.get("straggler"))
    thr = report.get("straggler_threshold")
    meta = [f"{t(report.get('num_nodes') if is_num(report.get('num_nodes')) else len(nodes))} nodes",
            f"{t(report.get('world_size') if is_num(report.get('world_size')) else '?')} ranks",
            f"{slow} straggler{'' if slow == 1 else 's'}" + (f" (threshold {thr:.0%})" if is_num(thr) else "")]
    missing = [m for m in report.get("missing_ranks") or [] if isinstance(m, Mapping)]
    if missing:
        meta.append(f"{len(missing)} rank(s) without a result")
    head = header("validate", "cluster", verdict, meta)
    body = reasons_list(report.get("reasons"))
    hm = heatmap(report)
    if hm:
        body += section("Nodes \u00d7 metrics", hm,
                        note="Each node's value is its slowest device's; colour is the distance from the cluster "
                             "median, worse to the orange side.")
    pm = pairwise_matrix(report)
    if pm:
        body += section("Pairwise all-reduce (--pairwise)", pm,
                        note="Round 1 pairs even/odd nodes; round 2 re-pairs the nodes of failed pairs with "
                             "known-good ones, so the bad node is named, not the bad pair.")
    body += section("Nodes", node_table(report) or '<p class="muted">No node reported.</p>')
    body += curves(report)
    checks = merged_checks(report)
    if checks:
        body += section("Checks across ranks", checks, note="Each check's worst status over every rank.")
    body += drift_section(report)
    body += watch_section(report)
    if missing:
        body += section("Ranks without a result", table(
            ["Rank", "Host", "Error"], [[t(m.get("rank")), t(m.get("hostname") or "?"), t(m.get("error"))]
                                        for m in missing], numeric=(0,), cls="wide"))
    return t(f"envcheck cluster validate \u00b7 {len(nodes)} nodes"), head + body
