"""``--pairwise``: name the bad node, not the bad pair, from 2-node all-reduce results.

Pure planning and blame; the runs themselves belong to the distributed mode. The method is
the one of Google's cluster-health-scanner NCCL check (src/nccl_healthcheck, "second pass")
and Meta gcm's ``check-nccl --pairwise-quick`` (facebookresearch/gcm, health_checks):

1. **Round 1**: pair nodes even/odd in order, (0,1), (2,3), ...; with an odd count the last
   node is paired with node 0, which then runs twice (sequentially, never two pairs at once).
2. **Round 2**: every node of a failed pair is paired again with a node from a passed pair
   (a known-good node), spreading the work over the known-good nodes; when no pair passed,
   the suspects are re-paired among themselves in new pairs.
3. **Blame**: a node that passed any pair is good (a bad node fails every pair); a node that
   passed none and failed with a good partner is bad. A failed pair of two good nodes is a
   suspect link. Nodes that never met a good partner are inconclusive.

A pair fails when its all-reduce raised, summed wrong, or its bus bandwidth at the largest
size is more than ``threshold`` below the median of the round-1 pairs (a slow NIC or link
makes every pair it is in slow). Pairs that share no node run at the same time (:func:`waves`).
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Callable


def round1(nodes: Sequence[str]) -> list[tuple[str, str]]:
    """Even/odd pairs; an odd node out is paired with the first node."""
    nodes = list(nodes)
    pairs = [(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
    if len(nodes) % 2 == 1 and len(nodes) > 1:
        pairs.append((nodes[-1], nodes[0]))
    return pairs


def known_good(results: Mapping[tuple[str, str], bool]) -> list[str]:
    """Nodes that were in at least one passing pair (a bad node fails every pair it is in)."""
    return sorted({n for pair, ok in results.items() if ok for n in pair})


def round2(results1: Mapping[tuple[str, str], bool]) -> list[tuple[str, str]]:
    """Each node of a failed round-1 pair with a known-good partner (round-robin over them).

    When every round-1 pair failed there is no known-good node; the suspects are then paired
    anew (shifted by one, pairs already run left out), which still names a single bad node
    among three or more.
    """
    good = [n for n in known_good(results1) if not any(not ok and n in p for p, ok in results1.items())]
    suspects = sorted({n for pair, ok in results1.items() if not ok for n in pair})
    if good:
        return [(node, good[i % len(good)]) for i, node in enumerate(suspects)]
    done = {frozenset(p) for p in results1}
    return [p for p in round1(suspects[1:] + suspects[:1]) if frozenset(p) not in done]


def blame(results1: Mapping[tuple[str, str], bool], results2: Mapping[tuple[str, str], bool]) -> dict:
    """``{"bad": [...], "good": [...], "suspect_links": [[a, b], ...], "inconclusive": [...]}``.

    good: passed at least one pair. bad: passed none and failed with a good partner.
    inconclusive: passed none and never met a good partner. suspect link: a failed pair of two
    good nodes (the nodes are fine, the path between them is not).
    """
    runs = {**results1, **results2}
    nodes = {n for pair in runs for n in pair}
    good = set(known_good(runs))
    bad = sorted(n for n in nodes - good
                 if any(not ok and n in p and (set(p) - {n}) <= good for p, ok in runs.items()))
    links = sorted(sorted(p) for p, ok in runs.items() if not ok and set(p) <= good)
    return {
        "bad": bad,
        "good": sorted(good),
        "suspect_links": links,
        "inconclusive": sorted(nodes - good - set(bad)),
    }


def waves(pairs: Sequence[tuple[Hashable, Hashable]]) -> list[list[tuple[Hashable, Hashable]]]:
    """Pairs grouped so that no node is in two pairs of one wave (first fit, order kept)."""
    out: list[list[tuple[Hashable, Hashable]]] = []
    used: list[set] = []
    for pair in pairs:
        for wave, nodes in zip(out, used):
            if not (set(pair) & nodes):
                wave.append(pair)
                nodes.update(pair)
                break
        else:
            out.append([pair])
            used.append(set(pair))
    return out


def reference(measured: Sequence[Mapping[str, Any]]) -> float | None:
    """The median bus bandwidth of the pairs that ran and summed right (None: nothing to compare)."""
    values = [float(m["busbw_GBps"]) for m in measured
              if not m.get("error") and not m.get("wrong") and isinstance(m.get("busbw_GBps"), (int, float))]
    return statistics.median(values) if len(values) >= 2 else None


def judge(measured: Mapping[str, Any], ref: float | None, threshold: float) -> tuple[bool, str]:
    """(passed, why not) for one pair's all-reduce: ``{"busbw_GBps", "wrong", "error"}``."""
    if measured.get("error"):
        return False, f"all-reduce failed: {measured['error']}"
    if measured.get("wrong"):
        return False, f"{measured['wrong']} wrong element(s) in the sums"
    bw = measured.get("busbw_GBps")
    if ref and isinstance(bw, (int, float)) and bw < (1 - threshold) * ref:
        return False, (f"busbw {bw:.3g} GB/s is {1 - bw / ref:.0%} below the pairs' median {ref:.3g} GB/s")
    return True, ""


RunRound = Callable[[list[tuple[Any, Any]], str], list[dict[str, Any]]]


def run(node_ids: Sequence[Any], run_round: RunRound, threshold: float) -> dict[str, Any]:
    """Both rounds and the blame. ``run_round(pairs, label)`` measures pairs and returns one
    ``{"pair": [a, b], "busbw_GBps", "wrong", "error", ...}`` per pair that ran (the torch part,
    in envcheck/validate/distributed/rank.py; every rank must get the same answers)."""
    if len(node_ids) < 2:
        return {"skipped": "one node: --pairwise needs two or more", "rounds": [], "blame": None}
    r1 = run_round(round1(node_ids), "pairwise round 1")
    ref = reference(r1)
    for m in r1:
        m["passed"], m["why"] = judge(m, ref, threshold)
    ok1 = {tuple(m["pair"]): m["passed"] for m in r1}
    r2 = run_round(round2(ok1), "pairwise round 2")
    for m in r2:
        m["passed"], m["why"] = judge(m, ref, threshold)
    ok2 = {tuple(m["pair"]): m["passed"] for m in r2}
    return {"threshold": threshold, "reference_busbw_GBps": ref, "rounds": [r1, r2], "blame": blame(ok1, ok2)}
