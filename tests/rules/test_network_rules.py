"""Network rules (issue 14): NCCL's list syntax as a table, the node-profile accessor, and
robustness (na() anywhere in the network section neither crashes a rule nor invents a finding)."""

from __future__ import annotations

import copy

import doctor_scenarios
import pytest
import sysfs_network as sn

from envcheck import rules
from envcheck.rules import network as net
from envcheck.snapshot import na

IFACES = ["eth0", "eth1", "ens1f0", "ib0", "lo", "docker0"]
HCAS = [("mlx5_0", 1), ("mlx5_1", 1), ("mlx5_10", 1), ("mlx5_bond_0", 1), ("mlx4_0", 1), ("mlx4_0", 2)]


@pytest.mark.parametrize("value, exclude, exact, entries", [
    ("eth", False, False, (("eth", -1),)),
    ("=eth0", False, True, (("eth0", -1),)),
    ("=eth0,eth1", False, True, (("eth0", -1), ("eth1", -1))),
    ("^docker", True, False, (("docker", -1),)),
    ("^=docker0", True, True, (("docker0", -1),)),
    ("mlx5_0:1,mlx5_1:1", False, False, (("mlx5_0", 1), ("mlx5_1", 1))),
    ("=mlx5_0:1,mlx5_1", False, True, (("mlx5_0", 1), ("mlx5_1", -1))),
    ("^=mlx5_1,mlx5_4", True, True, (("mlx5_1", -1), ("mlx5_4", -1))),
    (" eth , ,ib ", False, False, (("eth", -1), ("ib", -1))),
    ("", False, False, ()),
])
def test_parse(value, exclude, exact, entries):
    got = net.parse_nccl_list(value)
    assert (got.exclude, got.exact, got.entries) == (exclude, exact, entries)


@pytest.mark.parametrize("value, selected", [
    ("eth", ["eth0", "eth1"]),                              # prefix
    ("e", ["eth0", "eth1", "ens1f0"]),
    ("=eth0", ["eth0"]),                                    # exact
    ("=eth", []),                                           # exact: no interface is called "eth"
    ("=eth0,ib0", ["eth0", "ib0"]),                         # exact list
    ("eth,ib", ["eth0", "eth1", "ib0"]),                    # prefix list
    ("^docker,lo", ["eth0", "eth1", "ens1f0", "ib0"]),      # exclusion by prefix
    ("^=docker0", ["eth0", "eth1", "ens1f0", "ib0", "lo"]),  # exclusion, exact
    ("^=docker", IFACES),                                   # exact exclusion of a name that is not there
    ("^e,i,l,d", []),                                       # excludes everything
    ("", IFACES),                                           # empty list: everything (matchIfList)
])
def test_socket_ifname_selection(value, selected):
    spec = net.parse_nccl_list(value)
    assert [i for i in IFACES if spec.selects(i)] == selected


@pytest.mark.parametrize("value, selected", [
    ("mlx5", ["mlx5_0:1", "mlx5_1:1", "mlx5_10:1", "mlx5_bond_0:1"]),
    ("mlx5_1", ["mlx5_1:1", "mlx5_10:1"]),                  # a prefix also matches mlx5_10
    ("=mlx5_1", ["mlx5_1:1"]),                              # '=' fixes that
    ("mlx5_0:1,mlx5_1:1", ["mlx5_0:1", "mlx5_1:1", "mlx5_10:1"]),
    ("=mlx5_0:1,mlx5_1:1", ["mlx5_0:1", "mlx5_1:1"]),
    ("=mlx4_0:2", ["mlx4_0:2"]),                            # port suffix
    ("=mlx4_0", ["mlx4_0:1", "mlx4_0:2"]),                  # no port: every port
    ("^mlx4", ["mlx5_0:1", "mlx5_1:1", "mlx5_10:1", "mlx5_bond_0:1"]),
    ("^=mlx5_1,mlx5_10", ["mlx5_0:1", "mlx5_bond_0:1", "mlx4_0:1", "mlx4_0:2"]),
    ("^=mlx4_0:2", ["mlx5_0:1", "mlx5_1:1", "mlx5_10:1", "mlx5_bond_0:1", "mlx4_0:1"]),
])
def test_ib_hca_selection(value, selected):
    spec = net.parse_nccl_list(value)
    assert [f"{n}:{p}" for n, p in HCAS if spec.selects(n, p)] == selected


@pytest.mark.parametrize("value, unmatched", [
    ("=eth0,eth9", ["eth9"]), ("ens,wlan", ["wlan"]), ("=mlx5_0:2", ["mlx5_0:2"]),
    ("=mlx5_0:1", []), ("mlx5_9", ["mlx5_9"]),
])
def test_unmatched_entries(value, unmatched):
    cands = [(i, -1) for i in IFACES] + list(HCAS)
    assert net.parse_nccl_list(value).unmatched(cands) == unmatched


# ---- rules on scenarios -------------------------------------------------------------------


def _with(node: sn.Node | None = None, env: dict | None = None) -> dict:
    return doctor_scenarios._net(node, env=env)


def _one(snapshot: dict, fid: str):
    found = [f for f in rules.evaluate(snapshot) if f.id == fid]
    assert len(found) == 1, [f.id for f in rules.evaluate(snapshot)]
    return found[0]


def test_profile_accessor_detects_hgx_h100():
    assert net.node_profile_id(doctor_scenarios.build("healthy_8xh100")) == "hgx-h100"
    assert net.network_profile(doctor_scenarios.build("net_p2p_blocked")) == (None, {})  # L40S: none


def test_no_rdma_device_at_all_is_not_judged_against_the_profile():
    s = _with(sn.Node(hcas=0))
    assert not [f for f in rules.evaluate(s) if f.id.startswith("net.")]


def test_port_down_names_the_port_and_the_subnet_manager_case():
    f = _one(_with(sn.Node(ports={0: sn.Port(state="2: INIT")})), "net.rdma-port-down")
    assert f.evidence["ports"] == {"mlx5_0:1": "INIT (LinkUp)"}
    assert "subnet manager" in f.fix


def _l40s(s: dict) -> dict:
    s["nvidia"]["gpus"] = [dict(g, name="NVIDIA L40S") for g in s["nvidia"]["gpus"]]
    return s


def test_without_profile_no_subnet_manager_warns_and_unlinked_ib_port_is_info():
    s = _l40s(_with(sn.Node(ports={0: sn.Port(state="2: INIT"),
                                   1: sn.Port(state="1: DOWN", phys_state="2: Polling")})))
    got = {(f.severity.value, tuple(f.evidence["ports"])) for f in rules.evaluate(s) if f.id == "net.rdma-port-down"}
    assert got == {("warn", ("mlx5_0:1",)), ("info", ("mlx5_1:1",))}


def test_without_profile_only_infiniband_ports_are_judged():
    s = _with(sn.Node(ports={0: sn.Port(state="1: DOWN", phys_state="3: Disabled", link_layer="Ethernet")}))
    s["nvidia"]["gpus"] = [dict(g, name="NVIDIA L40S") for g in s["nvidia"]["gpus"]]
    assert "net.rdma-port-down" not in {f.id for f in rules.evaluate(s)}


def test_extra_slow_storage_nic_is_not_a_rail():
    node = sn.Node(hcas=9, gpus=8, ports={8: sn.Port(rate=sn.HDR, link_layer="Ethernet")})
    assert "net.rdma-rate-low" not in {f.id for f in rules.evaluate(_with(node))}


def test_counters_below_thresholds_are_quiet():
    node = sn.Node(ports={1: sn.Port(counters={"symbol_error": 99, "link_error_recovery": 9})})
    assert "net.rdma-link-errors" not in {f.id for f in rules.evaluate(_with(node))}


def test_peermem_missing_with_open_modules_is_info():
    f = _one(_with(sn.Node(peermem_module=None, memory_peers=(), open_modules=True)),
             "net.gpudirect-rdma-unavailable")
    assert f.severity.value == "info" and "DMA-BUF" in f.detail


def test_p2p_fix_names_setpci_and_iommu_pt():
    f = _one(doctor_scenarios.build("net_p2p_blocked"), "net.p2p-blocked")
    assert "setpci -s 0000:17:00.0 ECAP_ACS+0x6.w=0000" in f.fix
    assert "iommu=pt" in f.fix and f.evidence["iommu_group_types"] == ["DMA-FQ"]


def test_gdr_acs_needs_a_shared_switch_and_an_active_nic():
    s = doctor_scenarios.build("net_gdr_acs_redirect")
    f = _one(s, "net.gdr-acs-redirect")
    assert "0000:18:00.0 <-> mlx5_0" in f.evidence["pairs"] and "setpci -s 0000:17:00.0" in f.fix
    for d in s["network"]["rdma_devices"]:  # each NIC moved under its own root port
        d["pci_path"] = [f"0000:00:1{d['name'][-1]}.0", d["pci_address"]]
    assert "net.gdr-acs-redirect" not in {x.id for x in rules.evaluate(s)}
    down = _with(sn.Node(acs_ctrl=0x1D, port=sn.Port(state="1: DOWN", phys_state="2: Polling")))
    assert "net.gdr-acs-redirect" not in {x.id for x in rules.evaluate(down)}


def test_p2p_on_nvlink_boards_is_not_judged():
    s = _with(sn.Node(acs_ctrl=0x1D, group_type="DMA"))
    assert "net.p2p-blocked" not in {f.id for f in rules.evaluate(s)}


def test_socket_ifname_down_interface():
    s = _with(env={"NCCL_SOCKET_IFNAME": "=eth0"})
    for i in s["network"]["interfaces"]:
        if i["name"] == "eth0":
            i["operstate"] = "down"
    f = _one(s, "net.nccl-socket-ifname-invalid")
    assert f.severity.value == "error" and "down" in f.title


def test_socket_ifname_ok_is_quiet():
    assert not [f for f in rules.evaluate(_with(env={"NCCL_SOCKET_IFNAME": "^docker,lo"}))
                if f.id.startswith("net.")]


def test_ib_hca_ignored_when_ib_disabled():
    s = _with(env={"NCCL_IB_HCA": "mlx4", "NCCL_IB_DISABLE": "1"})
    assert "net.nccl-ib-hca-invalid" not in {f.id for f in rules.evaluate(s)}


def test_gid_index_negative_means_auto():
    s = _with(sn.Node(port=sn.Port(link_layer="Ethernet")), env={"NCCL_IB_GID_INDEX": "-1"})
    assert "net.nccl-ib-gid-index-invalid" not in {f.id for f in rules.evaluate(s)}


def _paths(value, prefix):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):
            yield from _paths(v, (*prefix, i))


@pytest.mark.parametrize("name", ["net_port_down", "net_roce_bad_gid", "net_p2p_blocked", "net_gdr_acs_redirect",
                                  "net_socket_ifname_exact_list", "net_numa_mismatch", "net_link_flaps"])
def test_na_anywhere_in_network_never_crashes_nor_invents(name):
    base = doctor_scenarios.build(name)
    before = {f.id for f in rules.evaluate(base)}
    for path in _paths(base["network"], ("network",)):
        s = copy.deepcopy(base)
        node = s
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = na("simulated")
        after = {f.id for f in rules.evaluate(s)}
        assert "envcheck.rule-failed" not in after, path
        assert after <= before, (path, after - before)


def test_old_snapshot_without_network_section():
    s = doctor_scenarios.build("healthy_8xh100")
    del s["network"]
    assert not [f for f in rules.evaluate(s) if f.id.startswith("net.")]
