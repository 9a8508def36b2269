"""--pairwise: even/odd pairs, re-pairing with known-good nodes, blaming the node, and the report."""

from __future__ import annotations

import itertools

import pytest

from envcheck.report import cluster as render
from envcheck.validate.distributed import pairwise
from envcheck.validate.distributed.aggregate import cluster_report
from envcheck.validate.distributed.pairwise import blame, known_good, round1, round2


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


# ---- waves, judging, and the two rounds with a fake measurement ----------------------------



def test_waves_never_put_a_node_in_two_pairs_at_once():
    assert pairwise.waves([(0, 1), (2, 3), (4, 0)]) == [[(0, 1), (2, 3)], [(4, 0)]]
    assert pairwise.waves([(0, 2), (1, 2), (3, 4)]) == [[(0, 2), (3, 4)], [(1, 2)]]
    assert pairwise.waves([]) == []
    for n in range(2, 10):
        pairs = pairwise.round1(list(range(n)))
        for wave in pairwise.waves(pairs):
            nodes = [x for p in wave for x in p]
            assert len(nodes) == len(set(nodes))


def test_judge_and_reference():
    runs = [{"busbw_GBps": 10.0}, {"busbw_GBps": 12.0}, {"busbw_GBps": 2.0, "wrong": 3}, {"error": "boom"}]
    assert pairwise.reference(runs) == 11.0  # only the pairs that summed right
    assert pairwise.reference(runs[:1]) is None  # one figure: nothing to compare with
    assert pairwise.judge({"busbw_GBps": 10.0}, 11.0, 0.10) == (True, "")  # 9 % below
    ok, why = pairwise.judge({"busbw_GBps": 5.0}, 11.0, 0.10)
    assert not ok and why == "busbw 5 GB/s is 55% below the pairs' median 11 GB/s"
    assert pairwise.judge({"busbw_GBps": 5.0}, None, 0.10) == (True, "")  # no reference: not judged
    assert pairwise.judge({"wrong": 2}, 11.0, 0.1) == (False, "2 wrong element(s) in the sums")
    assert pairwise.judge({"error": "DistBackendError: timeout"}, 11.0, 0.1) == (
        False, "all-reduce failed: DistBackendError: timeout")


def fake_round(bad=(), slow=(), broken_links=()):
    """A run_round that measures 10 GB/s per pair, 3 GB/s with a slow node, wrong sums with a bad one."""
    calls = []

    def run_round(pairs, label):
        calls.append((label, list(pairs)))
        out = []
        for a, b in pairs:
            m = {"pair": [a, b], "busbw_GBps": 10.0, "wrong": 0, "error": None, "bytes": 1 << 20}
            if {a, b} & set(slow):
                m["busbw_GBps"] = 3.0
            if {a, b} & set(bad):
                m["wrong"] = 7
            if frozenset((a, b)) in {frozenset(x) for x in broken_links}:
                m.update(busbw_GBps=None, error="DistBackendError: connection reset")
            out.append(m)
        return out
    return run_round, calls


def test_run_names_a_slow_node():
    run_round, calls = fake_round(slow=[3])
    res = pairwise.run([0, 1, 2, 3, 4], run_round, 0.10)
    assert calls[0] == ("pairwise round 1", [(0, 1), (2, 3), (4, 0)])
    assert calls[1][1] == [(2, 0), (3, 1)]  # the failed pair's nodes, each with a known-good one
    assert res["blame"]["bad"] == [3] and res["reference_busbw_GBps"] == 10.0
    assert [m["passed"] for m in res["rounds"][1]] == [True, False]


def test_run_with_one_node_is_skipped():
    run_round, calls = fake_round()
    assert pairwise.run([0], run_round, 0.1)["skipped"].startswith("one node") and calls == []


def _entries(result, nnodes):
    """One rank per node whose all-reduce carries the --pairwise result (as cluster_rank sends it)."""
    return [{"rank": n, "local_rank": 0, "node_rank": n, "hostname": f"gpu{n:02d}", "error": None,
             "report": {"verdict": "passed", "figures": [],
                        "checks": [{"name": "allreduce", "status": "pass", "message": "",
                                    "details": {"pairwise": result}}]}} for n in range(nnodes)]


@pytest.mark.parametrize("kw, verdict, node_verdicts", [
    ({"bad": [2]}, "failed", ["passed", "passed", "failed", "passed"]),
    ({"slow": [1]}, "degraded", ["passed", "degraded", "passed", "passed"]),
    ({}, "passed", ["passed"] * 4),
])
def test_cluster_report_blames_the_node(kw, verdict, node_verdicts):
    run_round, _ = fake_round(**kw)
    rep = cluster_report(_entries(pairwise.run([0, 1, 2, 3], run_round, 0.10), 4), world_size=4)
    assert rep["verdict"] == verdict
    assert [n["verdict"] for n in rep["nodes"]] == node_verdicts
    pw = rep["pairwise"]
    if kw:
        (b,) = pw["bad_nodes"]
        assert b["hostname"] == f"gpu{next(iter(kw.values()))[0]:02d}"
        assert any(r.startswith(f"pairwise: node {b['node_rank']} ({b['hostname']}) is bad: with node ")
                   for r in rep["reasons"])
    else:
        assert pw["bad_nodes"] == [] and pw["failed_pairs"] == 0


def test_a_broken_link_is_reported_not_blamed_on_a_node():
    run_round, _ = fake_round(broken_links=[(0, 1)])
    rep = cluster_report(_entries(pairwise.run([0, 1, 2, 3], run_round, 0.10), 4), world_size=4)
    pw = rep["pairwise"]
    assert pw["bad_nodes"] == [] and pw["suspect_links"] == [["gpu00", "gpu01"]]
    assert rep["verdict"] == "degraded" and all(n["verdict"] == "passed" for n in rep["nodes"])
    assert "pairwise: the link between gpu00 and gpu01 is suspect (both nodes pass with others)" in rep["reasons"]


def test_two_nodes_failing_their_only_pair_is_degraded_and_inconclusive():
    run_round, _ = fake_round(bad=[1])
    rep = cluster_report(_entries(pairwise.run([0, 1], run_round, 0.10), 2), world_size=2)
    assert rep["verdict"] == "degraded" and [n["verdict"] for n in rep["nodes"]] == ["passed", "passed"]
    assert rep["pairwise"]["inconclusive_nodes"] == [0, 1]
    assert "pairwise: no known-good partner to tell apart node(s) 0, 1 after 1 failed pair(s)" in rep["reasons"]


def test_pairwise_text_and_junit():
    import xml.etree.ElementTree as ET

    run_round, _ = fake_round(bad=[2])
    rep = cluster_report(_entries(pairwise.run([0, 1, 2, 3], run_round, 0.10), 4), world_size=4)
    text = render.to_text(rep)
    assert ("pairwise all-reduce (fail: error, wrong sums, or busbw more than 10% below the round-1 median):"
            in text.splitlines())
    assert "  round 1  node 0+1 (gpu00, gpu01)  10 GB/s  pass" in text.splitlines()
    assert "  round 1  node 2+3 (gpu02, gpu03)  10 GB/s  FAIL" in text.splitlines()
    assert "  round 2  node 2+0 (gpu02, gpu00)  10 GB/s  FAIL" in text.splitlines()
    root = ET.fromstring(render.to_junit(rep).split("\n", 1)[1])
    cases = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert cases[("gpu02.node", "pairwise")].find("failure").get("message") == (
        "with node 3 (gpu03): 7 wrong element(s) in the sums; with node 0 (gpu00): 7 wrong element(s) in the sums")
    assert cases[("gpu03.node", "pairwise")].find("failure") is None


def test_pairwise_prometheus_gauge():
    from prometheus_client.parser import text_string_to_metric_families

    from envcheck.cluster import prom

    run_round, _ = fake_round(bad=[2])
    rep = cluster_report(_entries(pairwise.run([0, 1, 2, 3], run_round, 0.10), 4), world_size=4)
    fams = {f.name: f for f in text_string_to_metric_families(prom.validate_text(rep, 0.0))}
    values = {s.labels["node"]: s.value for s in fams["envcheck_node_pairwise_bad"].samples}
    assert values == {"gpu00": 0, "gpu01": 0, "gpu02": 1, "gpu03": 0}
