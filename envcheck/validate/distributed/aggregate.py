"""One cluster report from every rank's validate report: per-node verdicts and stragglers.

Pure: rank entries in, the cluster report dict out. Rank 0 of the distributed mode calls it
after gathering; nothing here knows how the ranks ran.

A rank entry is ``{"rank", "local_rank", "node_rank", "hostname", "report", "error"}`` where
``report`` is that rank's ``envcheck validate`` JSON (``ValidationReport.to_dict()``: verdict,
checks, figures, ...) or None, and ``error`` says why there is none ("never joined the
rendezvous", "exited with signal 9", "timed out after 120 s in allreduce"). Ranks that never
reported are passed as entries with ``report: None`` and their error.

Straggler rule (issue 5): for each figure (check, metric) measured on at least two nodes, a
node's value is its worst device's (a single slow GPU slows every collective of the node), and
the node is a straggler when that value is worse than the median of the nodes' values by more
than ``threshold`` (default 10 %: beyond the few-percent run-to-run spread of identical healthy
parts; pass ``threshold`` to change it). "Worse" is lower for throughputs (TFLOPS, GB/s, ...) and
higher for times (s, ms, us). A straggler node is at least *degraded*.

Size (issue 10, class 11): the report grows linearly with ranks and stays small per rank. Each
node carries its merged ``checks`` (worst status per check), its key ``figures`` (the node's
worst value per (check, metric), the values stragglers are judged on) and the rows of its
intra-node all-reduce sweep; each rank a summary (:func:`rank_summary`: verdict, error, first
reason, the checks that passed by name, the others with a one-line message, its figures'
values); the whole checks and figures of at most :data:`DETAILED_RANKS` ranks (failed first,
then in rank order: every rank of a small job) are kept. Every step is one pass over the ranks (dict
indexes, no per-rank scan of all nodes).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_THRESHOLD = 0.10
STRAGGLER_CHECKS = ("gemm", "memory", "allreduce")  # issue 5: GEMM, memory, intra-node busbw
_ORDER = {"certified": 0, "passed": 1, "degraded": 2, "failed": 3}
_TIME_UNITS = frozenset({"s", "ms", "us", "ns", "seconds"})
_STATUS_ORDER = {"pass": 0, "skip": 1, "warn": 2, "fail": 3}
DETAILED_RANKS = 16  # ranks whose whole checks (details, metrics) stay in the cluster report
REASON_RANKS = 64  # ranks whose own reasons are listed in the cluster's reasons; the rest counted
MESSAGE_CHARS = 240  # a check's message in a rank summary: its first line, cut here


def worst_verdict(verdicts: Iterable[str]) -> str:
    """failed > degraded > passed > certified; nothing at all is failed (no evidence)."""
    vs = [v if v in _ORDER else "failed" for v in verdicts]
    return max(vs, key=_ORDER.__getitem__) if vs else "failed"


@functools.lru_cache(maxsize=256)
def _lower_is_better(unit: str) -> bool:
    return str(unit).strip().lower() in _TIME_UNITS


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _node_figures(ranks: list[Mapping], checks: tuple[str, ...]) -> dict[tuple[str, str], tuple[float, str]]:
    """(check, metric) -> (the node's worst value, unit) over its ranks' figures."""
    return {k: (float(f["value"]), str(f.get("unit") or "")) for k, f in _worst_figures(ranks, checks).items()}


def _worst_figures(ranks: list[Mapping], checks: tuple[str, ...] | None = None) -> dict[tuple[str, str], dict]:
    """(check, metric) -> the node's worst figure (the whole figure dict, with its rank)."""
    out: dict[tuple[str, str], dict] = {}
    picked: dict[tuple[str, str], tuple[Any, Mapping]] = {}
    for r in ranks:
        for fig in (r.get("report") or {}).get("figures") or []:
            # dict, not Mapping: an abc check per figure costs seconds at 32768 ranks (parsed JSON)
            if not isinstance(fig, dict) or not _num(fig.get("value")):
                continue
            if checks is not None and fig.get("check") not in checks:
                continue
            key = (str(fig["check"]), str(fig.get("metric")))
            prev = picked.get(key)
            if prev is not None:
                lower = _lower_is_better(str(fig.get("unit") or ""))
                if (fig["value"] <= prev[1]["value"]) if lower else (fig["value"] >= prev[1]["value"]):
                    continue
            picked[key] = (r.get("rank"), fig)
    for key, (rank, fig) in picked.items():  # copied once per key, not once per better value
        out[key] = {**fig, "rank": rank}
    return out


def stragglers(node_figures: Mapping[int, Mapping[tuple[str, str], tuple[float, str]]],
               threshold: float = DEFAULT_THRESHOLD) -> dict[int, list[dict]]:
    """node_rank -> the figures that make it a straggler (empty list: not one)."""
    flagged: dict[int, list[dict]] = {n: [] for n in node_figures}
    by_key: dict[tuple[str, str], dict[int, tuple[float, str]]] = {}
    for n, figs in node_figures.items():  # one pass: key -> node -> value
        for key, v in figs.items():
            by_key.setdefault(key, {})[n] = v
    for key in sorted(by_key):
        values = by_key[key]
        if len(values) < 2:
            continue
        median = statistics.median(v for v, _ in values.values())
        if median <= 0:
            continue
        for node, (value, unit) in values.items():
            ratio = value / median
            lower = _lower_is_better(unit)
            if (ratio > 1 + threshold) if lower else (ratio < 1 - threshold):
                flagged[node].append({
                    "check": key[0], "metric": key[1], "unit": unit, "value": value,
                    "median": median, "ratio": round(ratio, 4),
                    "message": (f"{key[0]} {key[1]} {value:.4g} {unit} is {abs(1 - ratio):.0%} "
                                f"{'above' if lower else 'below'} the cluster median {median:.4g} {unit}"),
                })
    return flagged


def _merged_checks(entries: list[Mapping]) -> list[dict]:
    """One entry per check name across ranks: its worst status, and which ranks had it."""
    by_name: dict[str, dict] = {}
    for e in entries:
        for c in (e.get("report") or {}).get("checks") or []:
            if not isinstance(c, dict) or not c.get("name"):
                continue
            name = str(c["name"])
            status = str(c.get("status"))
            cur = by_name.setdefault(name, {"name": name, "status": "pass", "ranks": {}, "message": ""})
            cur["ranks"].setdefault(status, []).append(e.get("rank"))
            if _STATUS_ORDER.get(status, 3) > _STATUS_ORDER.get(cur["status"], 3):
                cur["status"] = status
                cur["message"] = f"rank {e.get('rank')} ({e.get('hostname')}): {c.get('message') or status}"
    return list(by_name.values())


def _hang_summary(nodes: list[dict], by_node: Mapping[int, list[Mapping]]) -> list[str]:
    """When the all-reduce hung, name the ranks that were behind (fewest progress marks)."""
    hung = []
    for n in nodes:
        for r in by_node.get(n["node_rank"]) or []:
            if _rank_verdict(r) != "failed":  # a hung check failed, and a failed check fails the rank
                continue
            for c in (r.get("report") or {}).get("checks") or []:
                if not isinstance(c, dict):
                    continue
                err = c.get("error") if isinstance(c.get("error"), Mapping) else {}
                if c.get("name") == "allreduce" and err.get("kind") == "hang":
                    m = c.get("metrics") or {}
                    hung.append((int(m.get("progress_marks") or 0), r["rank"], n["hostname"], m.get("last_mark")))
    if not hung:
        return []
    low = min(h[0] for h in hung)
    behind = [h for h in hung if h[0] == low]
    text = "; ".join(f"rank {r} ({host}) stopped after '{last or 'start-up'}'" for _, r, host, last in behind)
    waiting = sorted(h[1] for h in hung if h[0] > low)
    return [f"all-reduce hung: {text}" + (f"; rank(s) {', '.join(map(str, waiting))} were waiting for it"
                                           if waiting else "")]


def _allreduce_detail(entries: list[Mapping], key: str, kind: type) -> Any:
    """The first non-empty ``details[key]`` of an all-reduce check among ``entries`` (rank
    reports): what every rank computed alike is sent by one rank only (``mode.shared_once``)."""
    for e in entries:
        for c in (e.get("report") or {}).get("checks") or []:
            if isinstance(c, dict) and c.get("name") == "allreduce":
                value = (c.get("details") or {}).get(key)
                if isinstance(value, kind) and value:
                    return value
    return None


def _pairwise_result(entries: list[Mapping]) -> dict | None:
    """The --pairwise results of the all-reduce (every rank computed the same; rank 0 sends them,
    the other ranks only a count: the first full table)."""
    pw = _allreduce_detail(entries, "pairwise", Mapping)
    return dict(pw) if pw is not None else None


def pairwise_section(pw: Mapping, hosts: Mapping[int, Any]) -> dict:
    """--pairwise in the cluster report: every pair run, by host, and the nodes blamed.

    A bad node is *failed* when a pair with a known-good partner raised or summed wrong, and
    *degraded* when it was only slow (like a straggler: it slows every job, it does not corrupt).
    """
    def name(n: Any) -> str:
        return f"node {n} ({hosts.get(n) or '?'})"

    rounds = [[{**m, "hosts": [hosts.get(n) for n in m.get("pair") or []]} for m in r] for r in pw.get("rounds") or []]
    runs = [m for r in rounds for m in r]
    verdicts = pw.get("blame") or {}
    good = set(verdicts.get("good") or [])
    failed_by_node: dict[Any, list[dict]] = {}  # one pass over the runs, not one per bad node
    for m in runs:
        if not m.get("passed"):
            for x in set(m.get("pair") or []):
                failed_by_node.setdefault(x, []).append(m)
    bad = []
    for n in verdicts.get("bad") or []:
        against = [m for m in failed_by_node.get(n, []) if set(m["pair"]) - {n} <= good]
        hard = any(m.get("error") or m.get("wrong") for m in against)
        bad.append({"node_rank": n, "hostname": hosts.get(n), "verdict": "failed" if hard else "degraded",
                    "why": [f"with {name(next(iter(set(m['pair']) - {n})))}: {m.get('why')}" for m in against]})
    return {
        "skipped": pw.get("skipped"),
        "threshold": pw.get("threshold"),
        "reference_busbw_GBps": pw.get("reference_busbw_GBps"),
        "rounds": rounds,
        "bad_nodes": bad,
        "good_nodes": sorted(good),
        "suspect_links": [[hosts.get(a), hosts.get(b)] for a, b in verdicts.get("suspect_links") or []],
        "inconclusive_nodes": list(verdicts.get("inconclusive") or []),
        "failed_pairs": sum(1 for m in runs if not m.get("passed")),
    }


def _group_by_node(entries: list[dict], world_size: int) -> tuple[dict[int, list[dict]], list[dict]]:
    """(node_rank -> its ranks, missing ranks). A rank that never said who it is (never joined)
    belongs to the node of its expected host when one reported; otherwise it is missing."""
    seen = {e.get("rank") for e in entries}
    missing = [{"rank": r, "hostname": None, "error": "no result from this rank"}
               for r in range(world_size) if r not in seen]
    by_node: dict[int, list[dict]] = {}
    for e in entries:
        if isinstance(e.get("node_rank"), int):
            by_node.setdefault(e["node_rank"], []).append(e)
    host_node = {r.get("hostname"): n for n, rs in by_node.items() for r in rs if r.get("hostname")}
    for e in entries:
        if not isinstance(e.get("node_rank"), int):
            if e.get("hostname") in host_node:
                by_node[host_node[e["hostname"]]].append({**e, "node_rank": host_node[e["hostname"]]})
            else:
                missing.append({"rank": e.get("rank"), "hostname": e.get("hostname"),
                                "error": e.get("error") or "no result from this rank"})
    missing.sort(key=lambda m: m["rank"] if isinstance(m["rank"], int) else -1)
    return by_node, missing


def _rank_verdict(r: Mapping) -> str | None:
    return (r.get("report") or {}).get("verdict") if r.get("report") else "failed"


def _line(text: Any) -> str:
    first = str(text or "").strip().splitlines()
    line = first[0] if first else ""
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "..."


def _check_summary(c: Mapping) -> dict:
    """A check that did not pass, in a rank summary: name, status, a one-line message, the
    error's kind."""
    out: dict[str, Any] = {"name": c.get("name"), "status": c.get("status"),
                           "message": _line(c.get("message") or c.get("status"))}
    err = c.get("error")
    if isinstance(err, Mapping) and err.get("kind"):
        out["error"] = {"kind": err.get("kind"), "type": err.get("type")}
    return out


def rank_summary(r: Mapping, detailed: bool) -> dict:
    """A rank in the cluster report (issue 10, class 11): verdict, error, first reason, the names
    of its checks that passed, its other checks (:func:`_check_summary`) and its figures' values
    (``{"check.metric": value}``, ``@device`` added when the rank has several devices). A
    ``detailed`` rank keeps its whole ``checks`` and ``figures`` instead."""
    rep = r.get("report") or {}
    checks = [c for c in rep.get("checks") or [] if isinstance(c, dict)]
    figures = [f for f in rep.get("figures") or [] if isinstance(f, dict)]
    out: dict[str, Any] = {"rank": r.get("rank"), "local_rank": r.get("local_rank"), "verdict": _rank_verdict(r),
                           "error": r.get("error")}
    reasons = rep.get("reasons") or []
    if reasons and out["verdict"] in ("failed", "degraded"):
        out["reason"] = _line(reasons[0])
    if detailed:
        out.update(detailed=True, checks=checks, figures=figures)
        return out
    out["passed"] = [c.get("name") for c in checks if c.get("status") == "pass"]
    out["checks"] = [_check_summary(c) for c in checks if c.get("status") != "pass"]
    several = len({f.get("device") for f in figures}) > 1
    out["values"] = {f"{f.get('check')}.{f.get('metric')}" + (f"@{f.get('device')}" if several else ""): f["value"]
                     for f in figures if _num(f.get("value"))}
    return out


def detailed_ranks(entries: list[Mapping], limit: int = DETAILED_RANKS) -> set:
    """The ranks whose whole checks are kept: failed ones first, then the rest, in rank order."""
    failed = [e.get("rank") for e in entries if _rank_verdict(e) == "failed"]
    if len(failed) >= limit:
        return set(failed[:limit])
    rest = [e.get("rank") for e in entries if _rank_verdict(e) != "failed"]
    return set(failed) | set(rest[: limit - len(failed)])


def _node_checks(ranks: list[Mapping]) -> list[dict]:
    """The node's checks: each one's worst status over its ranks, with that rank's message."""
    by_name: dict[str, dict] = {}
    for r in ranks:
        for c in (r.get("report") or {}).get("checks") or []:
            if not isinstance(c, dict) or not c.get("name"):
                continue
            status = str(c.get("status"))
            cur = by_name.get(str(c["name"]))
            if cur is None:
                cur = by_name[str(c["name"])] = {"name": str(c["name"]), "status": status, "seconds": None}
                if status != "pass":
                    cur["message"] = f"rank {r.get('rank')}: {_line(c.get('message') or status)}"
            elif _STATUS_ORDER.get(status, 3) > _STATUS_ORDER.get(cur["status"], 3):
                cur["status"] = status
                cur["message"] = f"rank {r.get('rank')}: {_line(c.get('message') or status)}"
            if _num(c.get("seconds")) and (cur["seconds"] is None or c["seconds"] > cur["seconds"]):
                cur["seconds"] = c["seconds"]  # the node's slowest rank
    return [{k: v for k, v in c.items() if v is not None} for c in by_name.values()]


def _intranode_rows(ranks: list[Mapping]) -> list | None:
    """The node's intra-node sweep (the same rows on each of its ranks; its local rank 0 sends them)."""
    return _allreduce_detail(ranks, "intranode_rows", list)


def _world_rows(entries: list[Mapping]) -> list | None:
    """The world sweep's rows (every rank gets the same MAX/SUM-reduced rows; rank 0 sends them)."""
    return _allreduce_detail(entries, "rows", list)


def _node(n: int, ranks: list[dict], slow: list, detailed: set, worst: dict) -> dict:
    verdict = worst_verdict([_rank_verdict(r) for r in ranks])
    if slow:
        verdict = worst_verdict([verdict, "degraded"])
    out = {
        "node_rank": n,
        "hostname": next((r.get("hostname") for r in ranks if r.get("hostname")), None),
        "verdict": verdict,
        "straggler": bool(slow),
        "straggler_figures": slow,
        "checks": _node_checks(ranks),
        "figures": list(worst.values()),
        "ranks": [rank_summary(r, r.get("rank") in detailed) for r in ranks],
    }
    rows = _intranode_rows(ranks)
    if rows:
        out["intranode_rows"] = rows
    return out


def _apply_pairwise(nodes: list[dict], pw: dict | None) -> list[str]:
    """Mark the nodes pairwise blamed; "degraded" when pairs failed but no node can be named."""
    if not pw:
        return []
    blamed = {b["node_rank"]: b for b in pw["bad_nodes"]}
    for n in nodes:
        if n["node_rank"] in blamed:
            n["verdict"] = worst_verdict([n["verdict"], blamed[n["node_rank"]]["verdict"]])
            n["pairwise_bad"] = True
    # Something between nodes is wrong, but no single node can be named (two nodes, a bad
    # link, or no known-good partner): the cluster is not fine, no node is drained.
    return ["degraded"] if pw["failed_pairs"] and not blamed else []


def _pairwise_reasons(pw: dict | None) -> list[str]:
    if not pw:
        return []
    reasons = [f"pairwise: node {b['node_rank']} ({b['hostname']}) is bad: {'; '.join(b['why'])}"
               for b in pw["bad_nodes"]]
    reasons += [f"pairwise: the link between {a} and {b} is suspect (both nodes pass with others)"
                for a, b in pw["suspect_links"]]
    if pw["inconclusive_nodes"]:
        reasons.append("pairwise: no known-good partner to tell apart node(s) "
                       + ", ".join(map(str, pw["inconclusive_nodes"])) + " after "
                       + f"{pw['failed_pairs']} failed pair(s)")
    return reasons


def node_transport(ranks: list[Mapping]) -> dict | None:
    """A node's NCCL transport from its ranks' all-reduce records (mode.transport_record; rank
    entries as received), and when NCCL fell back to sockets on ACTIVE RDMA ports, the likely
    causes (issue 14 point 3). The node's facts (RDMA ports, NCCL's summary, environment) come
    from the record of its lowest local rank that sent them whole (mode.shared_once)."""
    from envcheck.validate import nccl_transport as nt

    recs = {}
    for r in ranks:
        for c in (r.get("report") or {}).get("checks") or []:
            if not isinstance(c, dict) or c.get("name") != "allreduce":
                continue
            rec = (c.get("details") or {}).get("nccl_transport")
            if isinstance(rec, Mapping):
                recs[r.get("rank")] = rec
    if not recs:
        return None
    kinds = sorted({str(rec.get("transport") or "unknown (no NET line: one node, or NCCL_DEBUG too low)")
                    for rec in recs.values()})
    first = next((rec for rec in recs.values() if "rdma" in rec), next(iter(recs.values())))
    out: dict[str, Any] = {"transport": kinds[0] if len(kinds) == 1 else "mixed: " + ", ".join(kinds),
                           "ranks": {str(k): v.get("transport") for k, v in recs.items()}}
    if first.get("transport") == nt.NOT_APPLICABLE_GLOO:
        return out
    summary = first.get("summary") or {}
    rdma = first.get("rdma") or {}
    out.update({"gdr": summary.get("gdr"), "devices": summary.get("devices") or [],
                "socket_ifaces": summary.get("socket_ifaces") or [],
                "active_rdma_ports": rdma.get("active_ports"), "nccl_debug": first.get("nccl_debug")})
    fallback = [rec for rec in recs.values() if rec.get("socket_fallback")]
    out["socket_fallback"] = bool(fallback)
    if fallback:
        fb = fallback[0]
        out["causes"] = nt.fallback_causes(fb.get("summary") or summary, fb.get("rdma") or rdma,
                                           fb.get("env") or first.get("env") or {})
    return out


def apply_nccl_transport(nodes: list[dict], by_node: Mapping[int, list[Mapping]]) -> list[str]:
    """Put ``nccl_transport`` on every node; a socket fallback on a node with ACTIVE RDMA ports
    degrades it (inter-node traffic over TCP: it works, slowly) and says why."""
    reasons = []
    for n in nodes:
        t = node_transport(by_node.get(n["node_rank"]) or [])
        if t is None:
            continue
        n["nccl_transport"] = t
        if t.get("socket_fallback"):
            n["verdict"] = worst_verdict([n["verdict"], "degraded"])
            reasons.append(f"node {n['node_rank']} ({n['hostname']}): NCCL used TCP sockets although "
                           f"{t.get('active_rdma_ports')} RDMA port(s) are ACTIVE; likely: "
                           + "; ".join(t.get("causes") or []))
    return reasons


def _reasons(entries: list[dict], nodes: list[dict], missing: list[dict], pw: dict | None,
             by_node: Mapping[int, list[Mapping]]) -> list[str]:
    """Why the verdict: ranks that sent nothing, then each failed or degraded rank's own reasons
    (at most 3 each, for the first :data:`REASON_RANKS` such ranks; the others are counted:
    each rank's first reason is in its summary), the hang, stragglers, pairwise."""
    reasons = [f"rank {m['rank']}: {m['error']}" for m in missing]
    reasons += [f"rank {r['rank']} ({n['hostname']}): {r['error']}" for n in nodes for r in n["ranks"] if r["error"]]
    by_rank = {e.get("rank"): e for e in entries}
    listed = more = 0
    for n in nodes:
        for r in n["ranks"]:
            if r["verdict"] in ("failed", "degraded") and not r["error"]:
                why = list(((by_rank[r["rank"]].get("report") or {}).get("reasons")) or [])[:3]
                if not why:
                    continue
                if listed >= REASON_RANKS:
                    more += 1
                    continue
                listed += 1
                reasons += [f"rank {r['rank']} ({n['hostname']}): {w}" for w in why]
    if more:
        reasons.append(f"{more} more failed or degraded rank(s) with reasons: see each rank's summary "
                       "(nodes[].ranks[].reason)")
    reasons += _hang_summary(nodes, by_node)
    reasons += [f"node {n['node_rank']} ({n['hostname']}) is a straggler: {f['message']}"
                for n in nodes for f in n["straggler_figures"]]
    return reasons + _pairwise_reasons(pw)


def fleet_sections(entries: list[dict], nodes: list[dict], extra: list[str]) -> tuple[dict, list[str]]:
    """Issue 17: the ``drift`` and ``consensus`` sections (when the ranks sent node summaries /
    digests); marks the nodes they blame and appends to ``extra`` (cluster verdicts)."""
    from envcheck.validate.distributed import consensus, drift

    out: dict = {}
    reasons: list[str] = []
    d = drift.drift_section(drift.summaries_of(entries))
    c = consensus.consensus_section(entries)
    for name, section, mod in (("drift", d, drift), ("consensus", c, consensus)):
        if section is not None:
            out[name] = section
            why, more = mod.apply(nodes, section)
            reasons += why
            extra += more
    return out, reasons


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside: rank 0 holds every rank's parsed report (about a
    million containers at 32768 ranks), and each collection the report's new containers trigger
    walks all of them - seconds, growing faster than the ranks. What is built here has no cycles;
    reference counting frees it. The collector's previous state comes back on the way out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cluster_report(entries: Iterable[Mapping], world_size: int, threshold: float = DEFAULT_THRESHOLD,
                   checks: tuple[str, ...] = STRAGGLER_CHECKS) -> dict:
    """The cluster report: ``verdict``, ``world_size``, ``nodes`` (one per node), ``missing_ranks``."""
    with gc_paused():
        return _cluster_report(entries, world_size, threshold, checks)


def _cluster_report(entries: Iterable[Mapping], world_size: int, threshold: float,
                    checks: tuple[str, ...]) -> dict:
    entries = sorted((dict(e) for e in entries), key=lambda e: e.get("rank", 0))
    by_node, missing = _group_by_node(entries, world_size)
    worst = {n: _worst_figures(ranks) for n, ranks in by_node.items()}  # one pass over the figures
    slow = stragglers({n: {k: (float(f["value"]), str(f.get("unit") or "")) for k, f in w.items() if k[0] in checks}
                       for n, w in worst.items()}, threshold)
    detailed = detailed_ranks(entries)
    nodes = [_node(n, by_node[n], slow[n], detailed, worst[n]) for n in sorted(by_node)]
    world = _world_rows(entries)
    pw_raw = _pairwise_result(entries)
    pw = pairwise_section(pw_raw, {n["node_rank"]: n["hostname"] for n in nodes}) if pw_raw else None
    extra = _apply_pairwise(nodes, pw)
    fleet, fleet_reasons = fleet_sections(entries, nodes, extra)
    transport_reasons = apply_nccl_transport(nodes, by_node)
    verdict = worst_verdict([n["verdict"] for n in nodes] + (["failed"] if missing else []) + extra)
    return {
        "schema": "envcheck.cluster",
        "schema_version": 2,  # 2: per-rank summaries, node checks/figures (issue 10, class 11)
        "verdict": verdict,
        "reasons": _reasons(entries, nodes, missing, pw, by_node) + fleet_reasons + transport_reasons,
        "world_size": world_size,
        "num_nodes": len(nodes),
        "straggler_threshold": threshold,
        "checks": _merged_checks(entries),
        "nodes": nodes,
        "missing_ranks": missing,
        "detailed_ranks": sorted(r for r in detailed if isinstance(r, int)),
        **({"allreduce_rows": world} if world else {}),
        **({"pairwise": pw} if pw else {}),
        **fleet,
    }
