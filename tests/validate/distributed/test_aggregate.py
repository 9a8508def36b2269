"""Cluster report from per-rank validate reports: node verdicts, stragglers, missing ranks."""

from __future__ import annotations

import pytest

from envcheck.cluster import exitmodes, prom
from envcheck.validate.distributed.aggregate import cluster_report, stragglers, worst_verdict


def rank(r, node, verdict="certified", tflops=700.0, busbw=400.0, step_s=0.10, error=None, host=None):
    report = None if verdict is None else {
        "verdict": verdict,
        "checks": [{"name": "gemm", "status": "pass", "metrics": {}, "message": ""},
                   {"name": "allreduce", "status": "pass" if verdict != "failed" else "fail",
                    "metrics": {}, "message": "" if verdict != "failed" else "wrong sum"}],
        "figures": [
            {"check": "gemm", "metric": "bf16", "device": f"cuda:{r % 2}", "value": tflops, "unit": "TFLOPS"},
            {"check": "allreduce", "metric": "busbw", "device": "all", "value": busbw, "unit": "GB/s"},
            {"check": "memory", "metric": "copy_time", "device": f"cuda:{r % 2}", "value": step_s, "unit": "s"},
        ],
    }
    return {"rank": r, "local_rank": r % 2, "node_rank": node, "hostname": host or f"gpu{node:02d}",
            "report": report, "error": error}


def healthy(n_nodes=4):
    return [rank(2 * n + i, n) for n in range(n_nodes) for i in range(2)]


def test_all_healthy():
    rep = cluster_report(healthy(), world_size=8)
    assert rep["verdict"] == "certified" and rep["world_size"] == 8 and rep["num_nodes"] == 4
    assert [n["node_rank"] for n in rep["nodes"]] == [0, 1, 2, 3]
    assert all(not n["straggler"] and n["verdict"] == "certified" for n in rep["nodes"])
    assert [len(n["ranks"]) for n in rep["nodes"]] == [2, 2, 2, 2]
    assert rep["missing_ranks"] == [] and rep["reasons"] == []
    assert {c["name"]: c["status"] for c in rep["checks"]} == {"gemm": "pass", "allreduce": "pass"}


def test_one_slow_gpu_makes_its_node_a_straggler():
    entries = healthy()
    entries[5] = rank(5, 2, tflops=500.0)  # node 2, one GPU 29 % slow
    rep = cluster_report(entries, world_size=8)
    node2 = rep["nodes"][2]
    assert node2["straggler"] and node2["verdict"] == "degraded"
    (fig,) = node2["straggler_figures"]
    assert (fig["check"], fig["metric"], fig["value"], fig["median"]) == ("gemm", "bf16", 500.0, 700.0)
    assert "29% below the cluster median" in fig["message"]
    assert rep["verdict"] == "degraded"
    assert not any(n["straggler"] for i, n in enumerate(rep["nodes"]) if i != 2)
    assert any("node 2 (gpu02) is a straggler" in r for r in rep["reasons"])


def test_times_are_worse_when_higher():
    entries = healthy()
    entries[0] = rank(0, 0, step_s=0.2)
    rep = cluster_report(entries, world_size=8)
    assert rep["nodes"][0]["straggler"]
    assert rep["nodes"][0]["straggler_figures"][0]["message"].startswith("memory copy_time 0.2 s is 100% above")


def test_within_threshold_is_not_a_straggler_and_threshold_is_configurable():
    entries = healthy()
    entries[2] = rank(2, 1, tflops=650.0)  # 7 % below
    assert not cluster_report(entries, world_size=8)["nodes"][1]["straggler"]
    assert cluster_report(entries, world_size=8, threshold=0.05)["nodes"][1]["straggler"]


def test_two_nodes_the_slow_one_is_flagged():
    entries = [rank(0, 0), rank(1, 0), rank(2, 1, busbw=200.0), rank(3, 1, busbw=200.0)]
    rep = cluster_report(entries, world_size=4)
    assert [n["straggler"] for n in rep["nodes"]] == [False, True]


def test_failed_rank_and_missing_rank():
    entries = healthy()
    entries[3] = rank(3, 1, verdict="failed")
    del entries[7]  # rank 7 never reported
    rep = cluster_report(entries, world_size=8)
    assert rep["verdict"] == "failed"
    assert rep["nodes"][1]["verdict"] == "failed"
    assert rep["missing_ranks"] == [{"rank": 7, "hostname": None, "error": "no result from this rank"}]
    merged = {c["name"]: c for c in rep["checks"]}
    assert merged["allreduce"]["status"] == "fail" and merged["allreduce"]["ranks"]["fail"] == [3]
    assert merged["allreduce"]["message"] == "rank 3 (gpu01): wrong sum"


def test_rank_with_an_error_and_no_report():
    entries = healthy(2)
    entries[1] = rank(1, 0, verdict=None, error="timed out after 120 s in allreduce")
    rep = cluster_report(entries, world_size=4)
    assert rep["verdict"] == "failed" and rep["nodes"][0]["verdict"] == "failed"
    assert "rank 1 (gpu00): timed out after 120 s in allreduce" in rep["reasons"]


def test_passed_and_certified_mix_is_passed():
    entries = [rank(0, 0, verdict="passed"), rank(1, 1)]
    assert cluster_report(entries, world_size=2)["verdict"] == "passed"


@pytest.mark.parametrize("verdicts, worst", [
    ([], "failed"), (["certified"], "certified"), (["certified", "passed"], "passed"),
    (["passed", "degraded"], "degraded"), (["degraded", "failed", "certified"], "failed"), (["???"], "failed"),
])
def test_worst_verdict(verdicts, worst):
    assert worst_verdict(verdicts) == worst


def test_single_node_has_no_median_to_compare_with():
    assert stragglers({0: {("gemm", "bf16"): (1.0, "TFLOPS")}}) == {0: []}


def test_cluster_report_feeds_exit_codes_and_prometheus():
    from prometheus_client.parser import text_string_to_metric_families

    entries = healthy()
    entries[5] = rank(5, 2, tflops=500.0)
    rep = cluster_report(entries, world_size=8)
    d = exitmodes.decide(exitmodes.validate_outcome(rep), "npd")
    assert (d.code, d.line) == (1, "envcheck: WARN degraded on 1 node (gpu02)")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.validate_text(rep, 0.0)) for s in f.samples}
    assert samples[("envcheck_node_straggler", (("node", "gpu02"),))] == 1
    # per node (its worst rank's figure), not per rank (issue 10, class 11)
    key = ("envcheck_figure_tflops", (("check", "gemm"), ("metric", "bf16"), ("node", "gpu02")))
    assert samples[key] == 500.0


def test_ranks_that_never_joined_go_to_their_expected_node_or_are_listed_apart():
    entries = healthy(2)
    entries[3] = {"rank": 3, "local_rank": None, "node_rank": None, "hostname": "gpu01", "report": None,
                  "error": "never joined within 60 s"}
    entries.append({"rank": 4, "local_rank": None, "node_rank": None, "hostname": None, "report": None,
                    "error": "never joined within 60 s"})
    rep = cluster_report(entries, world_size=5)
    assert [r["rank"] for r in rep["nodes"][1]["ranks"]] == [2, 3]
    assert rep["nodes"][1]["verdict"] == "failed" and rep["nodes"][0]["verdict"] == "certified"
    assert rep["missing_ranks"] == [{"rank": 4, "hostname": None, "error": "never joined within 60 s"}]
    assert rep["verdict"] == "failed"
