"""Which transport NCCL used, per node, in the cluster report (issue 14 point 3): the rank side
(NCCL_DEBUG set for the child, its stderr parsed) and the aggregation, with canned NCCL lines."""

from __future__ import annotations

from envcheck.report.cluster import to_text
from envcheck.validate import nccl_transport as nt
from envcheck.validate.distributed import rank as rank_child
from envcheck.validate.distributed.aggregate import cluster_report
from envcheck.validate.distributed.mode import transport_record

P = "gpu01:2228637:2230195 [0] NCCL INFO "
IB_LOG = "\n".join([P + "NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.1.2<0>",
                    P + "Using network IB",
                    P + "Channel 00/0 : 0[0] -> 2[0] [send] via NET/IB/0/GDRDMA",
                    "some other library line on stderr"])
SOCKET_LOG = "\n".join([P + "NET/IB : No device found.",
                        P + "NET/Socket : Using [0]eth0:10.0.0.1<0>",
                        P + "Using network Socket",
                        P + "Channel 00/0 : 0[0] -> 2[0] [send] via NET/Socket/0"])


def _devices(state="ACTIVE"):
    return [{"name": f"mlx5_{i}", "ports": [{"port": 1, "state": state, "link_layer": "InfiniBand"}]}
            for i in range(2)]


RDMA = nt.rdma_ports(_devices(), {"module": "nvidia_peermem", "memory_peers": ["nv_mem"]})


def test_rank_child_asks_nccl_for_init_and_net_lines():
    env: dict[str, str] = {}
    assert rank_child.nccl_debug_env(env) == "envcheck"
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET"}
    user = {"NCCL_DEBUG": "WARN"}
    assert rank_child.nccl_debug_env(user) == "user" and user == {"NCCL_DEBUG": "WARN"}


def test_rdma_ports_counts_active_ports_only():
    got = nt.rdma_ports(_devices("DOWN") + _devices(), None)
    assert got["active_ports"] == 2 and len(got["ports"]) == 4 and got["peermem"] is None
    assert nt.rdma_ports({"na": "no /sys/class/infiniband"}, {})["active_ports"] == 0


def test_transport_record_from_canned_lines():
    rec = transport_record("nccl", IB_LOG, {"PATH": "/bin"}, RDMA)
    assert rec["transport"] == "infiniband" and not rec["socket_fallback"]
    assert rec["summary"]["gdr"] is True and rec["env"] == {}
    assert rec["nccl_debug"].startswith("envcheck")
    sock = transport_record("nccl", SOCKET_LOG, {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1"}, RDMA)
    assert sock["transport"] == "socket" and sock["socket_fallback"]
    assert sock["env"] == {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1"}
    assert sock["nccl_debug"] == "user's NCCL_DEBUG=INFO"
    # Sockets on a node without RDMA ports is no fallback.
    assert not transport_record("nccl", SOCKET_LOG, {}, nt.rdma_ports([], {}))["socket_fallback"]
    assert transport_record("gloo", "", {}, None) == {"transport": "not applicable (gloo)"}


def _entry(r, node, record):
    checks = [{"name": "allreduce", "status": "pass", "metrics": {}, "message": "",
               "details": {"nccl_transport": record}}]
    return {"rank": r, "local_rank": 0, "node_rank": node, "hostname": f"gpu{node:02d}",
            "report": {"verdict": "certified", "checks": checks, "figures": []}, "error": None}


def test_ib_node_and_socket_fallback_node():
    ib = transport_record("nccl", IB_LOG, {}, RDMA)
    sock = transport_record("nccl", SOCKET_LOG, {"NCCL_IB_HCA": "=mlx4_0"},
                            nt.rdma_ports(_devices(), {"module": None, "memory_peers": []}))
    rep = cluster_report([_entry(0, 0, ib), _entry(1, 1, sock)], world_size=2)
    n0, n1 = rep["nodes"]
    assert n0["verdict"] == "certified" and n0["nccl_transport"]["transport"] == "infiniband"
    assert n0["nccl_transport"]["socket_fallback"] is False and n0["nccl_transport"]["gdr"] is True
    t1 = n1["nccl_transport"]
    assert t1["transport"] == "socket" and t1["socket_fallback"] and t1["active_rdma_ports"] == 2
    assert n1["verdict"] == "degraded" and rep["verdict"] == "degraded"
    assert any("NCCL_IB_HCA==mlx4_0 selects none" in c for c in t1["causes"])
    assert any("nvidia_peermem is not loaded" in c for c in t1["causes"])
    (why,) = [r for r in rep["reasons"] if "TCP sockets" in r]
    assert why.startswith("node 1 (gpu01): NCCL used TCP sockets although 2 RDMA port(s) are ACTIVE")
    text = to_text(rep)
    assert "  node 0 (gpu00): infiniband, GPUDirect RDMA on (mlx5_0:1, mlx5_1:1)" in text
    assert "  node 1 (gpu01): socket  SOCKET FALLBACK: 2 RDMA port(s) ACTIVE" in text


def test_fallback_causes():
    assert nt.fallback_causes({}, RDMA, {"NCCL_IB_DISABLE": "1"})[0].startswith("NCCL_IB_DISABLE=1")
    assert nt.fallback_causes({}, RDMA, {"NCCL_NET": "Socket"})[0].startswith("NCCL_NET=Socket")
    # A matching NCCL_IB_HCA is no cause; NCCL's own "no device" line is then the lead.
    got = nt.fallback_causes({"ib_no_device": True}, RDMA, {"NCCL_IB_HCA": "mlx5"})
    assert got[0].startswith("NCCL's IB transport found no device")
    assert nt.fallback_causes({}, RDMA, {})[0].startswith("no cause found")


def test_gloo_nodes_say_not_applicable():
    rec = transport_record("gloo", "", {}, None)
    rep = cluster_report([_entry(0, 0, rec), _entry(1, 1, rec)], world_size=2)
    assert [n["nccl_transport"] for n in rep["nodes"]] == [
        {"transport": "not applicable (gloo)", "ranks": {"0": "not applicable (gloo)"}},
        {"transport": "not applicable (gloo)", "ranks": {"1": "not applicable (gloo)"}}]
    assert rep["verdict"] == "certified"
    assert "  node 0 (gpu00): not applicable (gloo)" in to_text(rep)
