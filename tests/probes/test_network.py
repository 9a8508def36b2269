"""Network probe: facts read from fixture sysfs/procfs trees (tests/fixtures/sysfs_network.py),
keys exactly as the snapshot contract, every failure na() with its reason."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import sysfs_network as sn

from envcheck import probes
from envcheck import snapshot as snap
from envcheck.probes import network
from envcheck.snapshot import is_na

CONTRACT = json.loads((Path(__file__).parents[1] / "fixtures" / "snapshots" / "example_8xh100.json")
                      .read_text())["network"]


def tree(tmp_path: Path, node: sn.Node | None = None) -> Path:
    return sn.write(node or sn.Node(), tmp_path)


def test_example_is_what_the_probe_reads_from_the_healthy_tree():
    assert sn.section(sn.Node()) == CONTRACT


def test_keys_match_the_contract(tmp_path):
    facts = network.probe(tree(tmp_path))
    assert set(facts) == set(CONTRACT)
    assert set(facts["rdma_devices"][0]) == set(CONTRACT["rdma_devices"][0])
    assert set(facts["rdma_devices"][0]["ports"][0]) == set(CONTRACT["rdma_devices"][0]["ports"][0])
    assert set(facts["gpus"][0]) == set(CONTRACT["gpus"][0])
    json.dumps(facts)


def test_healthy_ndr_node(tmp_path):
    facts = network.probe(tree(tmp_path))
    devs = facts["rdma_devices"]
    assert [d["name"] for d in devs] == [f"mlx5_{i}" for i in range(8)]
    port = devs[0]["ports"][0]
    assert (port["state"], port["phys_state"], port["rate_gbps"], port["link_layer"]) == \
        ("ACTIVE", "LinkUp", 400.0, "InfiniBand")
    assert port["counters"]["link_downed"] == 0
    assert devs[0]["pci_address"] == "0000:19:00.0" and devs[0]["netdevs"] == ["ib0"]
    assert devs[0]["pci_path"] == ["0000:00:01.0", "0000:16:00.0", "0000:17:01.0", "0000:19:00.0"]
    assert devs[4]["numa_node"] == 1
    assert devs[0]["pcie"] == {"speed": "32.0 GT/s PCIe", "width": 16, "max_speed": "32.0 GT/s PCIe",
                               "max_width": 16}
    assert facts["peermem"] == {"module": "nvidia_peermem", "memory_peers": ["nv_mem", "nv_mem_nc"]}
    assert facts["iommu"] == {"cmdline": {"iommu": "pt"}, "units": ["dmar0", "dmar1"], "groups": 8}
    gpu = facts["gpus"][0]
    assert gpu["address"] == "0000:18:00.0" and gpu["numa_node"] == 0
    assert gpu["iommu_group_type"] == "identity"
    assert [b["address"] for b in gpu["bridges"]] == ["0000:00:01.0", "0000:16:00.0", "0000:17:00.0"]
    assert all(b["acs_ctrl"] == 0 and b["acs_redirect"] == [] for b in gpu["bridges"])
    assert {i["name"]: i["operstate"] for i in facts["interfaces"]}["eth0"] == "up"
    assert facts["nvidia_open_modules"] is False


def test_roce_ports_record_gid_indexes_not_values(tmp_path):
    facts = network.probe(tree(tmp_path, sn.Node(port=sn.Port(link_layer="Ethernet"))))
    gids = facts["rdma_devices"][0]["ports"][0]["gids"]
    assert gids == [{"index": 0, "type": "IB/RoCE v1"}, {"index": 1, "type": "RoCE v2"},
                    {"index": 2, "type": "IB/RoCE v1"}, {"index": 3, "type": "RoCE v2"}]
    assert "ffff" not in json.dumps(facts)  # no addresses


def test_acs_redirect_bits_decoded(tmp_path):
    facts = network.probe(tree(tmp_path, sn.Node(acs_ctrl=0x001D)))
    downstream = facts["gpus"][0]["bridges"][-1]
    assert downstream["acs_ctrl"] == 0x1D
    assert downstream["acs_redirect"] == ["ReqRedir", "CmpltRedir"]


def test_acs_unreadable_without_root_says_so(tmp_path):
    facts = network.probe(tree(tmp_path, sn.Node(config_readable=False)))
    b = facts["gpus"][0]["bridges"][0]
    assert is_na(b["acs_ctrl"]) and "root" in b["acs_ctrl"]["unavailable"]


@pytest.mark.parametrize("data, expected", [
    (b"", None),  # handled as na below
    (bytes(4096), None),                                           # no extended capability
    (sn.config_space(0x0004, True), 0x0004),
])
def test_acs_control_parser(data, expected):
    got = network.acs_control(data)
    if not data:
        assert is_na(got)
    else:
        assert got == expected


def test_acs_capability_found_after_another_one():
    data = bytearray(4096)
    struct.pack_into("<I", data, 0x100, 0x0001 | (1 << 16) | (0x148 << 20))  # AER, next 0x148
    struct.pack_into("<I", data, 0x148, 0x000D | (1 << 16))
    struct.pack_into("<HH", data, 0x14C, 0x7F, 0x0008)
    assert network.acs_control(bytes(data)) == 0x0008


def test_capability_loop_terminates():
    data = bytearray(4096)
    struct.pack_into("<I", data, 0x100, 0x0001 | (0x100 << 20))  # points at itself
    assert network.acs_control(bytes(data)) is None


def test_peermem_loaded_not_registered(tmp_path):
    facts = network.probe(tree(tmp_path, sn.Node(memory_peers=())))
    assert facts["peermem"] == {"module": "nvidia_peermem", "memory_peers": []}


def test_legacy_nv_peer_mem(tmp_path):
    facts = network.probe(tree(tmp_path, sn.Node(peermem_module="nv_peer_mem", memory_peers=("nv_mem",))))
    assert facts["peermem"]["module"] == "nv_peer_mem"


def test_empty_root_gives_reasons_not_exceptions(tmp_path):
    facts = network.probe(tmp_path)
    assert "no RDMA" in facts["rdma_devices"]["unavailable"]
    assert is_na(facts["interfaces"]) and is_na(facts["gpus"])
    assert facts["peermem"] == {"module": None, "memory_peers": []}
    assert is_na(facts["iommu"]["cmdline"])
    assert facts["iommu"]["units"] == [] and facts["iommu"]["groups"] == 0
    assert is_na(facts["nvidia_open_modules"])


def test_unreadable_port_file_is_na_for_that_fact_only(tmp_path):
    root = tree(tmp_path)
    (root / "sys/class/infiniband/mlx5_0/ports/1/rate").unlink()
    port = network.probe(root)["rdma_devices"][0]["ports"][0]
    assert is_na(port["rate"]) and is_na(port["rate_gbps"])
    assert port["state"] == "ACTIVE"


@pytest.mark.parametrize("text, gbps", [("400 Gb/sec (4X NDR)", 400.0), ("2.5 Gb/sec (1X SDR)", 2.5),
                                        ("100 Gb/sec (2X HDR)", 100.0), ("garbage", None)])
def test_rate_parser(text, gbps):
    assert network.rate_gbps(text) == gbps


def test_cmdline_parser():
    assert network.parse_cmdline("ro quiet intel_iommu=on iommu=pt iommu.strict=1 amd_iommu") == \
        {"intel_iommu": "on", "iommu": "pt", "iommu.strict": "1", "amd_iommu": ""}


def test_this_machine():
    """The real probe here: plain JSON, never an exception."""
    facts = network.probe()
    assert set(facts) == set(CONTRACT)
    json.dumps(facts)


def test_collect_records_the_section():
    s = probes.collect(torch_timeout=20)
    snap.validate(s)
    assert set(s["network"]) == set(CONTRACT)
    assert "network" in s["probe_seconds"]


def test_snapshots_without_the_section_still_load():
    old = json.loads((Path(__file__).parents[1] / "fixtures" / "snapshots" / "example_8xh100.json").read_text())
    del old["network"]
    snap.validate(old)
