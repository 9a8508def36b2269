"""Node-shape rules (rules/node.py, rules/nvidia.py::nvlink_down) and their doctor options."""

from __future__ import annotations

import doctor_scenarios
import pytest

from envcheck import recipes, rules
from envcheck.rules import node


def ids(snapshot, **options):
    return {(f.id, f.severity.value) for f in rules.evaluate(snapshot, options)}


def test_profile_is_detected_from_the_gpu_name_and_can_be_forced_or_switched_off():
    s = doctor_scenarios.build("healthy_8xh100")
    rules.evaluate(s)  # loads the modules
    with_options = rules._OPTIONS.set({})
    try:
        assert node.node_profile(s)[0] == "hgx-h100"
        rules._OPTIONS.set({"node_profile": "hgx-a100-80"})
        assert node.node_profile(s)[0] == "hgx-a100-80"
        rules._OPTIONS.set({"node_profile": "none"})
        assert node.node_profile(s) == (None, {})
    finally:
        rules._OPTIONS.reset(with_options)


def test_a100_profile_expects_12_links_on_an_h100_board_it_is_wrong_about_nothing():
    # forcing the A100 profile on an H100 board: 18 up >= 12 expected, no finding
    assert ids(doctor_scenarios.build("healthy_8xh100"), node_profile="hgx-a100-80") == set()


def test_fewer_links_up_than_the_profile_is_flagged():
    s = doctor_scenarios.build("healthy_8xh100")
    s["nvidia"]["gpus"][1]["nvlink"] = {"up": 12, "down": 0, "total": 12,
                                        "errors": s["nvidia"]["gpus"][1]["nvlink"]["errors"]}
    assert ("nvidia.nvlink-down", "warn") in ids(s)
    assert ("nvidia.nvlink-down", "warn") not in ids(s, node_profile="none")


def test_all_links_down_on_a_pcie_card_is_not_flagged():
    s = doctor_scenarios.build("nvlink_all_down")
    for g in s["nvidia"]["gpus"]:
        g["name"] = "NVIDIA H100 PCIe"
    assert not {i for i in ids(s) if i[0] == "nvidia.nvlink-down"}


@pytest.mark.parametrize(("count", "expect", "want"), [
    (8, None, set()), (7, None, {("nvidia.gpu-count-unexpected", "warn")}),
    (4, None, set()), (2, None, set()),  # 2: maybe a cloud VM slice; only --expect-gpus judges it
    (2, 8, {("nvidia.gpu-count-unexpected", "error")}), (8, 4, {("nvidia.gpu-count-unexpected", "warn")}),
])
def test_gpu_count_against_profile_and_expect_gpus(count, expect, want):
    s = doctor_scenarios.build("healthy_8xh100")
    s["nvidia"]["gpus"] = s["nvidia"]["gpus"][:count]
    s["nvidia"]["gpu_count"] = count
    s["host"]["pci_nvidia_devices"] = s["host"]["pci_nvidia_devices"][:count]
    opts = {} if expect is None else {"expect_gpus": expect}
    assert {i for i in ids(s, **opts) if i[0] == "nvidia.gpu-count-unexpected"} == want


def test_in_a_container_only_expect_gpus_judges_the_count():
    s = doctor_scenarios.build("docker_small_shm")
    s["nvidia"]["gpus"] = s["nvidia"]["gpus"][:7]
    s["nvidia"]["gpu_count"] = 7
    assert not {i for i in ids(s) if i[0] == "nvidia.gpu-count-unexpected"}
    assert ("nvidia.gpu-count-unexpected", "error") in ids(s, expect_gpus=8)


def test_every_profile_names_a_known_gpu_and_sources_its_values():
    specs = {g["id"] for g in recipes.load("gpu_specs")["gpus"]}
    profiles = recipes.load("node_profiles")["profiles"]
    keys = recipes.load("node_profiles")["source_keys"]
    for pid, p in profiles.items():
        assert p["gpu"] in specs, pid
        for field in ("gpu_count", "nvlink_links_per_gpu", "pcie"):
            if p[field] is not None:
                assert p["sources"][field].split(" ")[0].rstrip(",") in keys, (pid, field)
        assert "nvswitch_count" in p  # judged when a source is found; null until then
    # the network a profile should have lives in network_profiles.json, keyed by the same ids
    network = recipes.load("network_profiles")["profiles"]
    assert set(network) <= set(profiles), sorted(set(network) - set(profiles))
    assert node.profile_ids() == sorted(profiles)
