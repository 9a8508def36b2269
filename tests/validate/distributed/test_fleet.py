"""Issue 17 parts 2 and 3 in the cluster report: drift (node summaries) and consensus (digests)."""

from __future__ import annotations

import pytest

from envcheck.validate.distributed import consensus, drift
from envcheck.validate.distributed.aggregate import cluster_report

MACHINE = {"driver_version": "550.54.15", "cuda_driver_version": "12.4", "kernel": "6.1.0", "python": "3.12.3",
           "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 85899345920,
                     "compute_capability": "9.0"}]}
VERSIONS = {"torch": "2.5.1+cu124", "cuda": "12.4", "nccl": "2.21.5", "cudnn": "90100", "python": "3.12.3"}
KEY = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.5.1+cu124", "cuda": "12.4"}


def _entry(rank, node, *, local_rank=0, digest="a" * 64, env=None, machine=None, key=None):
    rep = {"verdict": "certified", "machine": machine or MACHINE, "versions": VERSIONS,
           "checks": [{"name": "allreduce", "status": "pass", "message": "",
                       "details": {"consensus": {"digest": digest, "key": key or KEY}} if digest else {}}],
           "figures": []}
    if local_rank == 0:
        rep["node_summary"] = drift.node_summary(rep["machine"], VERSIONS, env or {"NCCL_DEBUG": "WARN"})
    return {"rank": rank, "local_rank": local_rank, "node_rank": node, "hostname": f"gpu{node:02d}",
            "error": None, "report": rep}


def test_node_summary_keeps_compared_env_and_drops_per_task_and_secrets():
    s = drift.node_summary(MACHINE, VERSIONS, {"NCCL_IB_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "3",
                                               "HF_TOKEN": "hf_x", "HOME": "/root", "TORCH_NCCL_TRACE": "0"})
    f = s["facts"]
    assert f["driver.version"] == "550.54.15" and f["nccl.version"] == "2.21.5" and f["gpus.count"] == 1
    assert f["env.NCCL_IB_DISABLE"] == "1" and f["env.TORCH_NCCL_TRACE"] == "0"
    assert not any(k in f for k in ("env.CUDA_VISIBLE_DEVICES", "env.HF_TOKEN", "env.HOME"))


def test_three_nodes_one_with_ib_disabled_is_the_odd_node_and_degraded():
    entries = [_entry(0, 0), _entry(1, 0, local_rank=1), _entry(2, 1, env={"NCCL_IB_DISABLE": "1"}), _entry(3, 2)]
    rep = cluster_report(entries, world_size=4)
    d = rep["drift"]
    assert d["mode"] == "fleet" and d["nodes_compared"] == 3
    assert [o["node_rank"] for o in d["odd_nodes"]] == [1]
    assert [n["verdict"] for n in rep["nodes"]] == ["certified", "degraded", "certified"]
    assert rep["verdict"] == "degraded"
    assert "drift: node 1 (gpu01): NCCL_IB_DISABLE differs: 1 vs majority unset" in rep["reasons"]
    assert rep["consensus"]["groups"][0]["status"] == "agree"


def test_another_driver_on_one_node_is_named():
    other = {**MACHINE, "driver_version": "535.161.08"}
    rep = cluster_report([_entry(0, 0), _entry(1, 1, machine=other), _entry(2, 2)], world_size=3)
    assert [o["node_rank"] for o in rep["drift"]["odd_nodes"]] == [1]
    assert any(r.startswith("drift: node 1 (gpu01): NVIDIA driver differs: 535.161.08 vs majority 550.54.15")
               for r in rep["reasons"])


def test_two_nodes_drift_is_shown_and_no_node_blamed():
    rep = cluster_report([_entry(0, 0), _entry(1, 1, env={"NCCL_IB_DISABLE": "1"})], world_size=2)
    assert rep["drift"]["mode"] == "pair" and rep["drift"]["odd_nodes"] == []
    assert rep["drift"]["unresolved"] == ["NCCL_IB_DISABLE"]
    assert [n["verdict"] for n in rep["nodes"]] == ["certified", "certified"]
    assert rep["verdict"] == "degraded"


def test_identical_nodes_have_no_drift_reasons():
    rep = cluster_report([_entry(0, 0), _entry(1, 1), _entry(2, 2)], world_size=3)
    assert rep["drift"]["fields"] == [] and rep["verdict"] == "certified"
    assert not [r for r in rep["reasons"] if r.startswith(("drift", "consensus"))]


def test_three_nodes_one_digest_differs_that_node_fails():
    rep = cluster_report([_entry(0, 0), _entry(1, 1, digest="b" * 64), _entry(2, 2)], world_size=3)
    g = rep["consensus"]["groups"][0]
    assert g["status"] == "outliers" and [o["rank"] for o in g["outliers"]] == [1]
    assert [n["verdict"] for n in rep["nodes"]] == ["certified", "failed", "certified"]
    assert rep["nodes"][1]["consensus_suspect"] is True and rep["verdict"] == "failed"
    why = [r for r in rep["reasons"] if r.startswith("consensus")]
    assert why == ["consensus: node 1 (gpu01) rank 1 on NVIDIA H100 80GB HBM3, driver 550.54.15, torch 2.5.1+cu124 "
                   "CUDA 12.4 computed digest bbbbbbbbbbbb where 2 of 3 ranks computed aaaaaaaaaaaa: "
                   "silent data corruption suspect"]


def test_two_nodes_differing_is_inconclusive_no_node_blamed():
    rep = cluster_report([_entry(0, 0), _entry(1, 1, digest="b" * 64)], world_size=2)
    assert rep["consensus"]["groups"][0]["status"] == "inconclusive"
    assert [n["verdict"] for n in rep["nodes"]] == ["certified", "certified"]
    assert rep["verdict"] == "degraded"
    assert any("no majority: inconclusive, no node blamed" in r for r in rep["reasons"])


def test_digests_are_compared_only_within_a_device_model():
    a100 = {**KEY, "device": "NVIDIA A100-SXM4-80GB"}
    rep = cluster_report([_entry(0, 0), _entry(1, 1), _entry(2, 2, digest="c" * 64, key=a100)], world_size=3)
    st = {g["label"].split(",")[0]: g["status"] for g in rep["consensus"]["groups"]}
    assert st == {"NVIDIA A100-SXM4-80GB": "alone", "NVIDIA H100 80GB HBM3": "agree"}
    assert rep["verdict"] == "certified"


def test_no_digests_no_section():
    assert consensus.consensus_section([_entry(0, 0, digest=None)]) is None
    assert "consensus" not in cluster_report([_entry(0, 0, digest=None)], world_size=1)
    assert "drift" not in cluster_report([_entry(0, 0, digest=None)], world_size=1)


def test_compute_is_reproducible_and_the_fault_flips_one_rank(monkeypatch):
    import torch

    cpu = torch.device("cpu")
    a = consensus.compute(cpu, 0)
    assert a == consensus.compute(cpu, 1) and len(a["digest"]) == 64
    monkeypatch.setenv("ENVCHECK_FAULT", "consensus.flip:rank=1")
    assert consensus.compute(cpu, 0)["digest"] == a["digest"]
    assert consensus.compute(cpu, 1)["digest"] != a["digest"]


def test_text_report_shows_drift_and_consensus_blocks():
    from envcheck.report.cluster import to_text

    rep = cluster_report([_entry(0, 0), _entry(1, 1, digest="b" * 64, env={"NCCL_IB_DISABLE": "1"}), _entry(2, 2)],
                         world_size=3)
    text = to_text(rep)
    assert "drift (3 nodes compared, majority per field): 2 field(s) differ\n" in text
    assert "  NCCL_IB_DISABLE: majority: unset (2); gpu01: 1 (1)\n" in text
    assert "  NCCL_DEBUG (not weighed): majority: WARN (2); gpu01: unset (1)\n" in text
    assert ("  NVIDIA H100 80GB HBM3, driver 550.54.15, torch 2.5.1+cu124 CUDA 12.4: 2 of 3 ranks agree; "
            "rank 1 (gpu01) differs\n") in text
    assert text.endswith("FAILED: 3 ranks on 3 nodes\n")


def test_html_cluster_page_draws_the_drift_table_and_the_consensus_groups():
    """Issue 18 point 4: the drift table (issue 17) in the cluster picture; hostile names escaped."""
    from envcheck.report.html import render_html

    bad = _entry(1, 1, digest="b" * 64, env={"NCCL_IB_DISABLE": "1"})
    bad["hostname"] = "<script>alert(1)</script>"
    page = render_html(cluster_report([_entry(0, 0), bad, _entry(2, 2)], world_size=3))
    assert "<h2>Drift between nodes</h2>" in page and "<h2>Cross-node consensus</h2>" in page
    assert "NCCL_IB_DISABLE" in page and "unset (2)" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---- end to end: two torchrun agents on loopback (gloo) -----------------------------------------

def _agents(tmp_path, agent_env: list[dict], *args, nproc=2, timeout_s=240):
    """Two torchrun agents, each with an environment of its own: (outputs, leftover processes)."""
    from test_validate_distributed import torchrun_validate

    outs, _elapsed, left = torchrun_validate(tmp_path, *args, timeout_s=timeout_s, nproc=nproc,
                                             agent_env=agent_env)
    return outs, left


@pytest.mark.slow
def test_two_torchrun_agents_show_drift_and_fail_the_node_with_the_mismatching_digest(tmp_path):
    """Issue 17 "Done when". Two agents x 2 ranks: with two nodes a node-level digest split has no
    majority, so the fault flips the digest of rank 3 only (node 1's second rank): ranks 0-2 agree
    (3 of 4 in the one CPU group) and rank 3 is the outlier, which fails node 1. The planted software
    difference is NCCL_IB_DISABLE=1 on agent 1 only: with two nodes the drift is shown (and the
    cluster degraded) without blaming either node, so node 0 stays passed."""
    import json

    fault = {"ENVCHECK_FAULT": "consensus.flip:rank=3"}
    outs, left = _agents(tmp_path, [fault, {**fault, "NCCL_IB_DISABLE": "1"}], "--format", "json", "--timeout", "60",
                         "--straggler-threshold", "0.99")
    docs = [o for o, _, _ in outs if o.strip().startswith("{")]
    assert len(docs) == 1, [(o[-300:], e[-1500:]) for o, e, _ in outs]
    rep = json.loads(docs[0])
    assert rep["drift"]["mode"] == "pair" and rep["drift"]["unresolved"] == ["NCCL_IB_DISABLE"]
    assert [r["key"] for r in rep["drift"]["fields"]] == ["env.NCCL_IB_DISABLE"]
    (group,) = rep["consensus"]["groups"]
    assert group["status"] == "outliers" and group["ranks"] == 4
    assert [(o["rank"], o["node_rank"]) for o in group["outliers"]] == [(3, 1)]
    assert [n["verdict"] for n in rep["nodes"]] == ["passed", "failed"]
    assert rep["verdict"] == "failed"
    assert any(r.startswith("consensus: node 1 (") and "rank 3 on cpu" in r for r in rep["reasons"])
    assert any(r.startswith("drift: NCCL_IB_DISABLE differs between nodes with no majority") for r in rep["reasons"])
    assert not left, left
