"""Drift in the cluster report (issue 17 part 2): does every node run the same software?

Each node's local rank 0 sends a compact summary of the facts ``envcheck compare`` weighs
(:func:`node_summary`: driver and CUDA, torch build, NCCL, cuDNN, Python, kernel, GPU model and
count from the rank's validate ``machine`` / ``versions``, plus the allowlisted NCCL_*, CUDA_*,
TORCH_* ... environment); rank 0 compares the nodes with :func:`envcheck.compare.compare`
(:func:`drift_section`, pure). With 3+ nodes a node that differs from the majority in a field
of weight is named (at least *degraded*, even when its figures pass); with 2 nodes there is no
majority: the difference is shown and the cluster is degraded, no node is blamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envcheck import compare

# Set per task by the launcher (srun --gpus-per-task, torchrun): differs by design.
_PER_TASK = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"})


def env_facts(environ: Mapping[str, str]) -> dict[str, Any]:
    """``env.<NAME>`` facts: the env probe's allowlist and redaction, compare's prefixes."""
    from envcheck.probes import env as env_probe

    out = {}
    for name, value in env_probe.probe(environ)["vars"].items():
        if (name.startswith(compare.ENV_PREFIXES) or name in compare.ENV_NAMES) and name not in _PER_TASK:
            out[f"env.{name}"] = value
    return out


def node_summary(machine: Any, versions: Any, environ: Mapping[str, str]) -> dict[str, Any]:
    """The compact per-node doctor summary a node's local rank 0 sends (no probe runs: the rank
    already has its machine summary and versions)."""
    facts = compare.facts_of_validate(machine if isinstance(machine, dict) else {},
                                      versions if isinstance(versions, dict) else {})
    facts.update(env_facts(environ))
    return {"facts": facts}


def _show(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def drift_section(summaries: Mapping[int, tuple[Any, Mapping]]) -> dict | None:
    """node_rank -> (hostname, summary) => the ``drift`` section, or None with < 2 summaries.

    ``{"mode": pair|fleet, "nodes_compared", "fields": [compare's differing rows], "odd_nodes":
    [{node_rank, hostname, fields: [{key, label, value, majority}]}], "unresolved": [labels]}``;
    ``unresolved``: fields of weight that differ with no majority (2 nodes, or a tie).
    """
    if len(summaries) < 2:
        return None
    order = sorted(summaries)
    names = {n: str(summaries[n][0] or f"node{n}") for n in order}
    # kind "snapshot": the summary records the environment, so a variable absent is unset.
    nodes = compare.unique_names([compare.Node(names[n], f"node {n}", "snapshot",
                                               dict((summaries[n][1] or {}).get("facts") or {})) for n in order])
    by_name = {node.name: n for node, n in zip(nodes, order)}
    res = compare.compare(nodes)
    rows = [r for r in res["fields"] if r["status"] == "differs"]
    odd: dict[int, list[dict]] = {}
    unresolved = []
    for r in rows:
        if not r["weight"]:
            continue
        if r["reference_from"] != "majority":
            unresolved.append(r["label"])
            continue
        for g in r["values"]:
            for nm in g.get("nodes") or []:
                odd.setdefault(by_name[nm], []).append({"key": r["key"], "label": r["label"], "value": g["value"],
                                                        "majority": r["reference"]})
    return {"mode": res["mode"], "nodes_compared": len(nodes), "fields": rows,
            "odd_nodes": [{"node_rank": n, "hostname": summaries[n][0], "fields": odd[n]} for n in sorted(odd)],
            "unresolved": unresolved}


def summaries_of(entries: list[Mapping]) -> dict[int, tuple[Any, Mapping]]:
    """The node summaries sent (once per node, by its local rank 0)."""
    out: dict[int, tuple[Any, Mapping]] = {}
    for e in entries:
        s = (e.get("report") or {}).get("node_summary")
        if isinstance(s, Mapping) and isinstance(e.get("node_rank"), int):
            out.setdefault(e["node_rank"], (e.get("hostname"), s))
    return out


def apply(nodes: list[dict], drift: dict | None) -> tuple[list[str], list[str]]:
    """Flag the odd nodes (at least degraded); (reasons, extra cluster verdicts)."""
    if not drift:
        return [], []
    from envcheck.validate.distributed.aggregate import worst_verdict

    reasons, extra = [], []
    flagged = {o["node_rank"]: o for o in drift["odd_nodes"]}
    for n in nodes:
        o = flagged.get(n["node_rank"])
        if o:
            n["verdict"] = worst_verdict([n["verdict"], "degraded"])
            n["drift"] = [f["key"] for f in o["fields"]]
            reasons += [f"drift: node {n['node_rank']} ({n['hostname']}): {f['label']} differs: "
                        f"{_show(f['value'])} vs majority {_show(f['majority'])}" for f in o["fields"]]
    for r in drift["fields"]:
        if r["weight"] and r["reference_from"] != "majority":
            vals = "; ".join(f"{', '.join(g.get('nodes') or [])}: {_show(g['value'])}" for g in r["values"])
            reasons.append(f"drift: {r['label']} differs between nodes with no majority ({vals})")
            extra = ["degraded"]
    return reasons, extra
