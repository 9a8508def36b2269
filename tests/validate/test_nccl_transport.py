"""NCCL debug output -> transport summary (issue 14 point 3): a table of real line forms."""

from __future__ import annotations

import pytest

from envcheck.validate import nccl_transport as nt

P = "node1:2228637:2230195 [3] NCCL INFO "

IB = [P + "NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.1.2<0>",
      P + "Using network IB",
      P + "Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA"]
ROCE_NO_GDR = [P + "NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE [RO]; OOB primaryip:10.10.10.10<0>",
               P + "Using non-device net plugin version 0",
               P + "Using network IB",
               P + "NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0'",
               P + "NET/IB : GPU Direct RDMA Disabled for HCA 1 'mlx5_1'"]
SOCKET = [P + "NET/IB : No device found.",
          P + "NET/Socket : Using [0]eth0:10.0.0.1<0> [1]eth1:10.0.1.1<0>",
          P + "Using network Socket",
          P + "Channel 00/0 : 0[0] -> 8[0] [send] via NET/Socket/0"]
SHARP = [P + "NET/IB : Using [0]mlx5_0:1/IB/SHARP [1]mlx5_1:1/IB/SHARP ; OOB eth0:10.0.1.2<0>",
         P + "Using network IBext"]
PLUGIN = [P + "Using network AWS Libfabric"]


@pytest.mark.parametrize("lines, network, transport, devices, gdr", [
    (IB, "IB", "infiniband", ["mlx5_0:1/IB", "mlx5_1:1/IB"], True),
    (ROCE_NO_GDR, "IB", "roce", ["mlx5_0:1/RoCE", "mlx5_1:1/RoCE"], False),
    (SOCKET, "Socket", "socket", [], None),
    (SHARP, "IBext", "infiniband", ["mlx5_0:1/IB", "mlx5_1:1/IB"], None),
    (PLUGIN, "AWS Libfabric", "plugin", [], None),
    ([P + "NCCL version 2.21.5+cuda12.4"], None, None, [], None),
])
def test_table(lines, network, transport, devices, gdr):
    got = nt.parse(lines)
    assert got["network"] == network
    assert got["transport"] == transport
    assert [f"{d['name']}:{d['port']}/{d['link_layer']}" for d in got["devices"]] == devices
    assert got["gdr"] is gdr


def test_socket_details_and_fallback():
    got = nt.parse("\n".join(SOCKET))
    assert got["socket_ifaces"] == ["eth0", "eth1"] and got["ib_no_device"] is True
    assert got["channels_via"] == {"Socket": 1}
    assert nt.socket_fallback(got, active_rdma_ports=8) is True
    assert nt.socket_fallback(got, active_rdma_ports=0) is False
    assert nt.socket_fallback(nt.parse(IB), active_rdma_ports=8) is False


def test_gdr_disabled_hcas_listed_once():
    got = nt.parse(ROCE_NO_GDR + ROCE_NO_GDR)
    assert got["gdr_disabled_hcas"] == ["mlx5_0", "mlx5_1"]
