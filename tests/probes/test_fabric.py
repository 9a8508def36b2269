"""The NVSwitch / fabric-manager probe on fixture sysfs trees and canned systemd answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envcheck.probes import fabric
from envcheck.snapshot import is_na

SYSFS = Path(__file__).resolve().parents[1] / "fixtures" / "sysfs"

# `systemctl show nvidia-fabricmanager -p LoadState,ActiveState,SubState` answers (systemd
# prints the properties in its own order) and `nv-fabricmanager --version` output.
SYSTEMD = {
    "running": (0, "LoadState=loaded\nActiveState=active\nSubState=running\n", ""),
    "dead": (0, "LoadState=loaded\nActiveState=inactive\nSubState=dead\n", ""),
    "failed": (0, "LoadState=loaded\nActiveState=failed\nSubState=failed\n", ""),
    "not_found": (0, "LoadState=not-found\nActiveState=inactive\nSubState=dead\n", ""),
    "no_bus": (1, "", "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
                      "Failed to connect to bus: Host is down\n"),
}


def runner(unit: str | None, version: str | None):
    calls = []

    def run(argv):
        calls.append(argv[0])
        if argv[0] == "systemctl":
            return None if unit is None else SYSTEMD[unit]
        if argv[0] == "nv-fabricmanager":
            return None if version is None else (0, f"Fabric Manager version is : {version}\n", "")
        if argv[0] == "dpkg-query":
            return None
        raise AssertionError(argv)

    run.calls = calls
    return run


def test_nvswitches_are_found_by_pci_class_and_dev_nodes():
    out = fabric.probe(SYSFS / "hgx_h100", run=runner("running", "550.90.07"))
    assert out["nvswitches"] == ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
    assert out["nvswitch_dev_nodes"] == 4  # nvidia-nvswitchctl is not a switch
    assert out["fabric_manager"] == {"installed": True, "active_state": "active",
                                     "sub_state": "running", "version": "550.90.07"}
    json.dumps(out)


@pytest.mark.parametrize(("unit", "version", "installed", "state"), [
    ("dead", "550.90.07", True, "inactive"),
    ("failed", "550.54.15", True, "failed"),
    ("not_found", None, False, "inactive"),
])
def test_fabric_manager_states(unit, version, installed, state):
    fm = fabric.probe(SYSFS / "hgx_h100", run=runner(unit, version))["fabric_manager"]
    assert (fm["installed"], fm["active_state"]) == (installed, state)
    assert fm["version"] == version or is_na(fm["version"])


def test_without_systemd_the_state_is_na_with_the_reason():
    fm = fabric.probe(SYSFS / "hgx_h100", run=runner("no_bus", "550.90.07"))["fabric_manager"]
    assert fm["active_state"]["unavailable"].startswith("systemctl show nvidia-fabricmanager failed: ")
    fm = fabric.probe(SYSFS / "hgx_h100", run=runner(None, None))["fabric_manager"]
    assert "systemctl is not available" in fm["active_state"]["unavailable"]
    assert is_na(fm["installed"])


def test_no_nvswitch_runs_no_command():
    run = runner("running", "550.90.07")
    out = fabric.probe(SYSFS / "pcie_h100", run=run)
    assert out["nvswitches"] == [] and out["nvswitch_dev_nodes"] == 0
    assert is_na(out["fabric_manager"]) and run.calls == []


def test_a_missing_sysfs_is_no_nvswitch(tmp_path):
    out = fabric.probe(tmp_path, run=runner("running", None))
    assert out["nvswitches"] == [] and is_na(out["fabric_manager"])


def test_this_machine_never_raises():
    json.dumps(fabric.probe())


def test_the_package_version_when_the_binary_is_not_on_path():
    def run(argv):
        if argv[0] == "systemctl":
            return SYSTEMD["dead"]
        if argv[0] == "dpkg-query":
            assert argv[-1] == "nvidia-fabricmanager*"
            return (0, "unknown ok not-installed \ninstall ok installed 550.90.07-1\n", "")
        return None

    fm = fabric.probe(SYSFS / "hgx_h100", run=run)["fabric_manager"]
    assert (fm["installed"], fm["version"], fm["active_state"]) == (True, "550.90.07", "inactive")
