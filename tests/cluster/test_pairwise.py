"""--pairwise: even/odd pairs, re-pairing with known-good nodes, and blaming the node."""

from __future__ import annotations

import itertools

import pytest

from envcheck.cluster.pairwise import blame, known_good, round1, round2


def simulate(nodes, bad, bad_links=()):
    """Run both rounds against a ground truth: a pair fails if it holds a bad node or a bad link."""
    def run(pairs):
        return {p: not (set(p) & set(bad) or frozenset(p) in {frozenset(x) for x in bad_links}) for p in pairs}
    r1 = run(round1(nodes))
    r2 = run(round2(r1))
    return r1, r2, blame(r1, r2)


@pytest.mark.parametrize("n, pairs", [
    (0, []), (1, []), (2, [("n0", "n1")]), (3, [("n0", "n1"), ("n2", "n0")]),
    (4, [("n0", "n1"), ("n2", "n3")]),
])
def test_round1(n, pairs):
    assert round1([f"n{i}" for i in range(n)]) == pairs


def test_round1_covers_every_node():
    for n in range(2, 12):
        nodes = [f"n{i}" for i in range(n)]
        assert {x for p in round1(nodes) for x in p} == set(nodes)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_every_single_bad_node_is_named(n):
    nodes = [f"n{i}" for i in range(n)]
    for b in nodes:
        if n == 2:
            continue  # two nodes, one pair: no known-good node to tell them apart
        r1, r2, verdict = simulate(nodes, [b])
        assert verdict["bad"] == [b], (n, b, r1, r2)
        assert set(verdict["good"]) == set(nodes) - {b}


def test_two_bad_nodes_in_different_pairs():
    nodes = [f"n{i}" for i in range(8)]
    for a, b in itertools.combinations(nodes, 2):
        _, _, verdict = simulate(nodes, [a, b])
        assert verdict["bad"] == sorted([a, b])


def test_a_bad_link_is_not_blamed_on_either_node():
    nodes = [f"n{i}" for i in range(6)]
    _, _, verdict = simulate(nodes, [], bad_links=[("n2", "n3")])
    assert verdict["bad"] == [] and verdict["suspect_links"] == [["n2", "n3"]]


def test_no_pair_ever_passes_leaves_everything_inconclusive():
    nodes = ["n0", "n1", "n2", "n3"]
    r1, r2, verdict = simulate(nodes, ["n0", "n1", "n2", "n3"])
    assert known_good(r1) == [] and r2 and not any(r2.values())
    assert verdict == {"bad": [], "good": [], "suspect_links": [], "inconclusive": nodes}


def test_two_bad_nodes_that_break_every_round1_pair_are_still_named_when_a_new_pair_passes():
    nodes = ["n0", "n1", "n2", "n3"]
    r1, r2, verdict = simulate(nodes, ["n0", "n3"])
    assert known_good(r1) == []
    assert verdict["bad"] == ["n0", "n3"] and verdict["good"] == ["n1", "n2"]


def test_two_nodes_cannot_be_told_apart():
    r1, r2, verdict = simulate(["n0", "n1"], ["n0"])
    assert r2 == {} and verdict["inconclusive"] == ["n0", "n1"] and verdict["bad"] == []


def test_round2_spreads_suspects_over_good_nodes():
    r1 = {("a", "b"): False, ("c", "d"): True, ("e", "f"): True}
    assert round2(r1) == [("a", "c"), ("b", "d")]


def test_round2_without_good_nodes_makes_new_pairs_only():
    r1 = {("a", "b"): False, ("c", "a"): False}
    assert round2(r1) == [("b", "c")]
