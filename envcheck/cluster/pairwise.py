"""``--pairwise``: name the bad node, not the bad pair, from 2-node all-reduce results.

Pure planning and blame; the runs themselves belong to the distributed mode. The method is
the one of Google's cluster-health-scanner NCCL check (src/nccl_healthcheck, "second pass")
and Meta gcm's ``check-nccl --pairwise-quick`` (validation-anchors.md §5):

1. **Round 1**: pair nodes even/odd in order, (0,1), (2,3), ...; with an odd count the last
   node is paired with node 0, which then runs twice (sequentially, never two pairs at once).
2. **Round 2**: every node of a failed pair is paired again with a node from a passed pair
   (a known-good node), spreading the work over the known-good nodes; when no pair passed,
   the suspects are re-paired among themselves in new pairs.
3. **Blame**: a node that passed any pair is good (a bad node fails every pair); a node that
   passed none and failed with a good partner is bad. A failed pair of two good nodes is a
   suspect link. Nodes that never met a good partner are inconclusive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
