"""Issue 10, class 11: what each rank sends (per-node facts once), and a cluster report, JSON,
JUnit and Prometheus file that grow linearly with the ranks (per-rank summaries, per-node series).
The timed figures are in bench/aggregate_bench.py; here only shapes and counts."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from envcheck.cluster import prom
from envcheck.cluster.launch import Launch
from envcheck.report import cluster as render
from envcheck.validate import nccl_transport as nt
from envcheck.validate.distributed import aggregate, mode
from envcheck.validate.distributed.rank import pairwise_summary

ROOT = Path(__file__).resolve().parents[3]
P = "gpu01:2228637:2230195 [0] NCCL INFO "
IB_LOG = "\n".join([P + "NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.1.2<0>",
                    P + "Using network IB", P + "Channel 00/0 : 0[0] -> 2[0] [send] via NET/IB/0/GDRDMA"])
SOCKET_LOG = "\n".join([P + "NET/IB : No device found.", P + "NET/Socket : Using [0]eth0:10.0.0.1<0>",
                        P + "Using network Socket", P + "Channel 00/0 : 0[0] -> 2[0] [send] via NET/Socket/0"])
RDMA = nt.rdma_ports([{"name": f"mlx5_{i}", "ports": [{"port": 1, "state": "ACTIVE", "link_layer": "InfiniBand"}]}
                      for i in range(2)], {"module": "nvidia_peermem", "memory_peers": ["nv_mem"]})
PW = {"threshold": 0.1, "reference_busbw_GBps": 45.0, "blame": {"good": [0, 1], "bad": [], "suspect_links": [],
                                                               "inconclusive": []},
      "rounds": [[{"pair": [0, 1], "busbw_GBps": 45.0, "wrong": 0, "error": None, "passed": True, "why": ""}], []]}


def _details():
    return {"rows": [{"bytes": 1024, "busbw_GBps": 1.0}], "intranode_rows": [{"bytes": 1024, "busbw_GBps": 9.0}],
            "pairwise": PW, "consensus": {"digest": "a" * 64, "key": {}},
            "nccl_transport": mode.transport_record("nccl", IB_LOG, {"NCCL_IB_HCA": "mlx5"}, RDMA)}


def test_rank_0_sends_the_world_rows_and_the_pairwise_table():
    got = mode.shared_once(_details(), rank=0, local_rank=0)
    assert got == _details()


def test_a_nodes_local_rank_0_sends_its_node_facts_once():
    got = mode.shared_once(_details(), rank=8, local_rank=0)
    assert "rows" not in got and "pairwise" not in got
    assert got["pairwise_summary"] == {"pairs": 1, "passed": 1, "skipped": None, "table": "sent by rank 0"}
    assert got["intranode_rows"] and set(got["nccl_transport"]) >= {"rdma", "summary", "env"}
    assert got["consensus"]  # per rank


def test_other_local_ranks_send_per_rank_data_only():
    got = mode.shared_once(_details(), rank=9, local_rank=1)
    assert set(got) == {"pairwise_summary", "consensus", "nccl_transport"}
    assert got["nccl_transport"] == {"transport": "infiniband", "socket_fallback": False}
    # a socket fallback keeps what explains it
    d = {"nccl_transport": mode.transport_record("nccl", SOCKET_LOG, {"NCCL_IB_DISABLE": "1"}, RDMA)}
    assert set(mode.shared_once(d, 9, 1)["nccl_transport"]) == {"transport", "socket_fallback", "summary", "env"}


def test_pairwise_summary_and_the_all_reduce_message_without_the_table():
    out = {"world": {"rows": [{"bytes": 1024, "busbw_GBps": 1.0}], "max_bytes": 1024}, "num_nodes": 2,
           "pairwise_summary": pairwise_summary(PW)}
    res = mode.allreduce_result(world=4, backend="gloo", timeout=10, out=out, error=None, exit_code=0, hung=False,
                                last_mark="done", marks=3)
    assert res.status == "pass" and res.message.endswith("pairwise: 1/1 node pairs passed")
    assert "pairwise" not in res.details and res.details["pairwise_summary"]["pairs"] == 1


def test_launch_options_and_machine_once_per_node():
    hosts = tuple(f"n{i}" for i in range(4))
    info = Launch("srun", 0, 8, 0, 2, 0, 4, "n0", 20000, hosts, "1", "n0")
    assert mode.launch_options(info)["hosts"] == list(hosts)
    other = Launch("srun", 3, 8, 1, 2, 1, 4, "n0", 20000, hosts, "1", "n1")
    assert mode.launch_options(other)["hosts"] == 4
    machine = {"hostname": "n1", "driver_version": "580.95.05", "cpu": "x", "gpus": [{"name": "H100"}] * 8}
    rep = mode.with_node_summary({"machine": dict(machine), "versions": {}}, other)
    assert rep["machine"] == {"hostname": "n1", "driver_version": "580.95.05"} and "node_summary" not in rep
    first = Launch("srun", 2, 8, 0, 2, 1, 4, "n0", 20000, hosts, "1", "n1")
    assert "node_summary" in mode.with_node_summary({"machine": dict(machine), "versions": {}}, first)


def _entry(rank, node, local, details, verdict="certified"):
    return {"rank": rank, "local_rank": local, "node_rank": node, "hostname": f"gpu{node:02d}", "error": None,
            "report": {"verdict": verdict, "reasons": ["memory d2d_GBps below its floor"] if verdict != "certified"
                       else [], "checks": [{"name": "allreduce", "status": "pass", "message": "ok", "seconds": 2.0,
                                            "details": details}],
                       "figures": [{"check": "gemm", "metric": "bf16", "device": "cuda:0", "value": 700.0 + rank,
                                    "unit": "TFLOPS", "floor": 500.0, "status": "ok"}]}}


def test_aggregate_reads_the_per_node_facts_from_local_rank_0():
    sock = mode.transport_record("nccl", SOCKET_LOG, {"NCCL_IB_HCA": "=mlx4_0"},
                                 nt.rdma_ports([{"name": "mlx5_0", "ports": [{"port": 1, "state": "ACTIVE"}]}], {}))
    entries = []
    for node in range(2):
        for local in range(2):
            r = node * 2 + local
            d = _details()
            if node == 1:
                d["nccl_transport"] = sock
            entries.append(_entry(r, node, local, mode.shared_once(d, r, local)))
    rep = aggregate.cluster_report(entries, world_size=4)
    assert rep["allreduce_rows"] == [{"bytes": 1024, "busbw_GBps": 1.0}]
    assert rep["pairwise"]["rounds"][0][0]["hosts"] == ["gpu00", "gpu01"]
    n0, n1 = rep["nodes"]
    assert n0["intranode_rows"] == [{"bytes": 1024, "busbw_GBps": 9.0}]
    assert n0["nccl_transport"]["transport"] == "infiniband" and n0["nccl_transport"]["active_rdma_ports"] == 2
    assert n1["nccl_transport"]["socket_fallback"] and n1["verdict"] == "degraded"
    assert any("NCCL_IB_HCA==mlx4_0" in c for c in n1["nccl_transport"]["causes"])
    assert n0["figures"] == [{"check": "gemm", "metric": "bf16", "device": "cuda:0", "value": 700.0, "unit": "TFLOPS",
                              "floor": 500.0, "status": "ok", "rank": 0}]  # the node's worst rank
    assert n0["checks"] == [{"name": "allreduce", "status": "pass", "seconds": 2.0}]


def test_rank_summaries_and_a_bounded_number_of_detailed_ranks():
    entries = [_entry(r, r // 8, r % 8, {}, verdict="failed" if r % 2 else "degraded") for r in range(64)]
    rep = aggregate.cluster_report(entries, world_size=64)
    assert rep["detailed_ranks"] == list(range(1, 33, 2))  # the first 16 failed ranks
    ranks = {r["rank"]: r for n in rep["nodes"] for r in n["ranks"]}
    assert ranks[1]["detailed"] and ranks[1]["checks"][0]["details"] == {}
    assert ranks[2] == {"rank": 2, "local_rank": 2, "verdict": "degraded", "error": None,
                        "reason": "memory d2d_GBps below its floor", "passed": ["allreduce"], "checks": [],
                        "values": {"gemm.bf16": 702.0}}
    listed = [r for r in rep["reasons"] if r.startswith("rank ")]
    assert len(listed) == aggregate.REASON_RANKS


def test_reasons_beyond_the_bound_are_counted():
    entries = [_entry(r, r // 8, r % 8, {}, verdict="degraded") for r in range(aggregate.REASON_RANKS + 10)]
    rep = aggregate.cluster_report(entries, world_size=len(entries))
    assert "10 more failed or degraded rank(s) with reasons" in rep["reasons"][aggregate.REASON_RANKS]


def _bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import aggregate_bench
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return aggregate_bench


def test_bench_core_runs_and_the_outputs_grow_linearly(tmp_path):
    """The bench's own code at 8, 16 and 32 nodes x 2 ranks: every file written, no series per
    rank, and each doubling adds about twice what the previous one added (linear growth; the
    whole checks of the 16 detailed ranks are a constant)."""
    bench = _bench()
    sizes = []
    for n in (8, 16, 32):
        entries, _ = bench._Ranks(n, 2).entries()
        out = tmp_path / str(n)
        out.mkdir()
        fig = bench.run(entries, n * 2, out)
        assert fig["verdict"] == "degraded" and fig["exit"] == 1 and not fig["errors"]
        assert set(fig["sizes"]) == {"cluster.json", "junit.xml", "envcheck.prom"}
        doc = json.loads((out / "cluster.json").read_text())
        assert doc["num_nodes"] == n and doc["pairwise"]["rounds"]
        assert ET.parse(out / "junit.xml").getroot().tag == "testsuites"
        assert 'rank="' not in (out / "envcheck.prom").read_text()
        sizes.append((fig["sizes"]["cluster.json"], fig["prom_series"]))
    (j1, p1), (j2, p2), (j3, p3) = sizes
    assert 1.6 < (j3 - j2) / (j2 - j1) < 2.4
    assert p3 - p2 == 2 * (p2 - p1)


def test_cluster_json_is_the_same_document_one_node_per_line():
    bench = _bench()
    entries, _ = bench._Ranks(4, 2).entries()
    rep = aggregate.cluster_report(entries, 8)
    text = render.to_json(rep)
    assert json.loads(text) == json.loads(json.dumps(rep))
    lines = text.splitlines()
    assert sum(1 for line in lines if line.startswith('    {"checks":')) == 4  # one line per node
    assert lines[0] == "{" and lines[-1] == "}"


def test_prometheus_series_per_node_not_per_rank():
    bench = _bench()
    counts = []
    for per in (2, 8):
        entries, _ = bench._Ranks(4, per).entries()
        text = prom.validate_text(aggregate.cluster_report(entries, 4 * per), 0.0)
        counts.append(sum(1 for line in text.splitlines() if line and not line.startswith("#")))
    assert counts[0] == counts[1]  # more ranks per node: not one series more
