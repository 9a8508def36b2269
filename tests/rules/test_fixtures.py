"""Every snapshot fixture against the exact findings it must give; every rule id is triggered by
at least one fixture; no rule emits an undeclared id; na() anywhere never crashes a rule nor
invents a finding."""

from __future__ import annotations

import copy
import json

import doctor_scenarios
import pytest

from envcheck import rules
from envcheck import snapshot as snap
from envcheck.findings import Severity
from envcheck.snapshot import na

SNAPSHOTS = doctor_scenarios.SNAPSHOTS

# fixture file -> the exact (id, severity) findings it gives. One line per machine story.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "example_8xh100": set(),
    "healthy_8xh100": set(),
    "cpu_only_vm": {("nvidia.no-gpu", "info")},          # recorded on the CPU development VM
    "cpu_only_laptop": {("nvidia.no-gpu", "info")},
    "all_unavailable": {("env.probe-failed", "warn"), ("host.probe-failed", "warn"),
                        ("nvidia.probe-failed", "warn"), ("torch.probe-failed", "warn")},
    "arch_ptx_only": {("torch.arch-ptx-only", "warn")},
    "big_node_small_host": {("env.debug-setting-left-on", "warn"), ("env.nccl-transport-disabled", "info"),
                            ("host.disk-low", "error"), ("host.disk-low", "warn"),
                            ("host.ram-smaller-than-gpu-memory", "warn")},
    "k8s_pod_limits": {("host.cpu-quota-below-torch-threads", "warn"),
                       ("host.memory-limit-smaller-than-gpu-memory", "warn")},
    "compile_prereqs_missing": {("torch.compile-prereqs-missing", "warn")},
    "compute_mode_restricted": {("nvidia.compute-mode-restricted", "error"),
                                ("nvidia.compute-mode-restricted", "info")},
    "cuda_unavailable_unexplained": {("torch.cuda-unavailable", "error")},
    "cvd_empty": {("env.cuda-visible-devices-hides-gpus", "warn")},
    "cvd_malformed": {("env.cuda-visible-devices-hides-gpus", "info"),
                      ("env.cuda-visible-devices-malformed", "warn")},
    "docker_small_shm": {("host.memlock-low", "warn"), ("host.nofile-low", "info"), ("host.shm-small", "warn")},
    "docker_without_gpus": {("host.container-without-gpu", "error")},
    "driver_library_mismatch": {("nvidia.driver-library-mismatch", "error")},
    "driver_too_old_cu130": {("torch.driver-too-old", "error")},
    "ecc_errors": {("nvidia.ecc-uncorrectable", "error"), ("nvidia.row-remap-failure", "error")},
    "gpu_unreadable": {("nvidia.gpu-unreadable", "warn"), ("torch.sees-fewer-gpus", "warn")},
    "gpus_missing_from_driver": {("nvidia.gpus-missing-from-driver", "warn"),
                                 ("nvidia.gpu-count-unexpected", "warn")},  # 7 on an 8-GPU board
    "gtx1080ti_function_not_supported": {("nvidia.persistence-mode-off", "info"), ("torch.driver-too-old", "error")},
    "memory_used_by_others": {("nvidia.memory-used-by-others", "warn")},
    "mig_enabled": {("nvidia.mig-enabled", "warn")},
    "multiple_installs": {("torch.multiple-installs", "warn")},
    "cwd_shadows_torch": {("env.cwd-shadows-module", "warn")},  # ./torch/ and ./json.py
    "no_driver_nouveau": {("host.nouveau-loaded", "error"), ("nvidia.no-driver-with-gpu", "error")},
    "nvlink_down": {("nvidia.nvlink-down", "warn")},
    "nvml_no_permission": {("nvidia.nvml-error", "warn")},
    "one_gpu_lost": {("nvidia.gpu-lost", "error"), ("torch.sees-fewer-gpus", "warn")},
    "pcie_degraded": {("nvidia.pcie-degraded", "warn")},
    "probe_failed": {("torch.probe-failed", "warn")},
    "row_remap_pending": {("nvidia.ecc-uncorrectable", "warn"), ("nvidia.row-remap-pending", "warn")},
    "retired_pages_v100": {("nvidia.ecc-uncorrectable", "warn"), ("nvidia.retired-pages-pending", "warn")},
    "rtx5090_old_wheel": {("torch.arch-unsupported", "error")},
    "throttled": {("nvidia.throttled-at-rest", "error")},
    "torch_import_crash": {("torch.import-crashed", "error")},
    "torch_import_error_ld_path": {("env.ld-library-path-shadows-cuda", "error"), ("torch.import-failed", "error")},
    "torch_import_hang": {("torch.import-hung", "error")},
    "torch_missing": {("torch.missing", "error")},
    "torch_missing_py38": {("torch.missing", "error"), ("torch.python-unsupported", "warn")},
    "torch_nightly_newer": {("torch.newer-than-known", "info")},
    "uvm_missing": {("host.nvidia-uvm-missing", "error")},
    "v100_cu13_wheel": {("torch.arch-unsupported", "error")},
    "windows_cpu_wheel": {("torch.cpu-build-on-gpu-host", "error")},
    "wsl_rtx4090": {("host.wsl", "info")},
    # issue 13 (5) / issue 10 class 7: NVML on real hardware
    "nvml_count_failed": {("nvidia.nvml-error", "error")},
    "nvml_count_no_permission": {("nvidia.nvml-error", "warn")},
    "slurm_one_of_eight": {("nvidia.gpus-not-allocated", "info")},
    "gpu_fatal": {("nvidia.gpu-fatal-error", "error")},
    "gpu_hung": {("nvidia.gpu-unresponsive", "error")},
    "gpu_slow": {("nvidia.gpu-unresponsive", "warn")},
    "driver_535_process_list": {("nvidia.process-list-unreliable", "warn")},
    # issue 13 (1): XIDs and SXids in the kernel log, triaged
    "xid_triage": {("xid.gpu-error", "error"), ("xid.gpu-error", "warn"), ("xid.application", "info"),
                   ("xid.nvswitch-error", "error"), ("xid.nvswitch-error", "warn")},
    "xid_earlier_in_boot": {("xid.earlier-in-boot", "info")},
    "kernel_log_unreadable": {("xid.log-unreadable", "info")},
    # issue 13 (2): NVSwitch fabric and CUDA error 802 (torch.cuda-unavailable stays quiet)
    "fabric_manager_dead": {("fabric.manager-not-running", "error")},
    "fabric_manager_missing": {("fabric.manager-missing", "error")},
    "fabric_manager_version_mismatch": {("fabric.manager-version-mismatch", "error")},
    "fabric_not_initialized": {("fabric.not-initialized", "error")},
    "cuda_error_802_unexplained": {("fabric.cuda-error-802", "error")},
    # issue 13 (3, 4): NVLink and the node profile
    "nvlink_all_down": {("nvidia.nvlink-down", "error")},
    "nvlink_errors": {("nvidia.nvlink-errors", "error"), ("nvidia.nvlink-errors", "warn")},
    "pcie_below_profile": {("nvidia.pcie-below-profile", "warn")},
    "six_of_eight_expected": {("nvidia.gpu-count-unexpected", "error")},
    # issue 13 (6): real failures doctor missed, and two false positives it no longer gives
    "nccl_too_old_rtx5090": {("torch.nccl-too-old-for-gpu", "error")},
    "wsl_libcuda_missing": {("torch.wsl-libcuda-unversioned-missing", "warn"), ("host.wsl", "info")},
    "windows_compile_no_triton": {("torch.compile-prereqs-missing", "warn")},
    "container_driver_in_image": {("nvidia.driver-library-mismatch", "error")},
    "torch1_compile_prereqs": {("torch.arch-unsupported", "error")},  # and no torch.compile finding
    "ld_path_wheel_libs": set(),
    "windows_py313_torch251": {("torch.python-unsupported", "warn")},
    # fabric and network (issue 14): network sections read by the real probe from sysfs_network.py trees
    "net_port_down": {("net.rdma-port-down", "error")},
    "net_port_200": {("net.rdma-rate-low", "warn")},
    "net_hca_missing": {("net.hca-missing", "error")},
    "net_link_flaps": {("net.rdma-link-errors", "warn")},
    "net_peermem_missing": {("net.gpudirect-rdma-unavailable", "warn")},
    "net_peermem_unregistered": {("net.gpudirect-rdma-unavailable", "warn")},
    "net_roce": set(),
    "net_roce_bad_gid": {("net.nccl-ib-gid-index-invalid", "error")},
    "net_p2p_blocked": {("net.p2p-blocked", "warn")},
    "net_p2p_disabled_workaround": {("env.nccl-transport-disabled", "info"), ("net.p2p-blocked", "info")},
    "net_gdr_acs_redirect": {("net.gdr-acs-redirect", "warn")},
    "net_socket_ifname_prefix": {("net.nccl-socket-ifname-invalid", "error")},
    "net_socket_ifname_exact_list": {("net.nccl-socket-ifname-invalid", "warn")},
    "net_socket_ifname_exclude_all": {("net.nccl-socket-ifname-invalid", "error")},
    "net_ib_hca_port": {("net.nccl-ib-hca-invalid", "warn")},
    "net_ib_hca_none": {("net.nccl-ib-hca-invalid", "error")},
    "net_numa_mismatch": {("net.gpu-nic-numa-mismatch", "info")},
    "net_hca_pcie_degraded": {("net.hca-pcie-degraded", "warn")},
}

# doctor options a fixture is evaluated with (rules.option); the rest use none
OPTIONS: dict[str, dict] = {
    "xid_earlier_in_boot": {"xid_window_s": 300.0},
    "six_of_eight_expected": {"expect_gpus": 8},
}


def _full_snapshot_files() -> list[str]:
    """Every complete snapshot in tests/fixtures/snapshots (nvidia_*.json are sections only)."""
    return sorted(p.stem for p in SNAPSHOTS.glob("*.json") if not p.name.startswith("nvidia_"))


def _findings(name: str):
    return rules.evaluate(snap.load(SNAPSHOTS / f"{name}.json"), OPTIONS.get(name))


def test_every_fixture_has_an_expectation():
    assert sorted(EXPECTED) == _full_snapshot_files()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_gives_exactly_its_findings(name):
    got = {(f.id, f.severity.value) for f in _findings(name)}
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(doctor_scenarios.SCENARIOS))
def test_written_fixture_matches_its_scenario(name):
    path = SNAPSHOTS / f"{name}.json"
    assert path.read_text(encoding="utf-8") == doctor_scenarios.render(doctor_scenarios.build(name)), (
        f"{path.name} is stale: run `python3 tests/fixtures/regen_doctor_snapshots.py`")


def _declared_ids() -> dict[str, str]:
    rules._load_rule_modules()
    out = {}
    for fn in rules.REGISTRY:
        ids = getattr(fn, "finding_ids", None)
        assert ids, f"{fn.__module__}.{fn.__name__} does not declare its ids with @emits"
        for fid in ids:
            assert fid not in out, f"{fid} declared by two rules"
            out[fid] = f"{fn.__module__}.{fn.__name__}"
    return out


def test_every_declared_id_is_triggered_by_a_fixture():
    triggered = {fid for name in EXPECTED for fid, _ in EXPECTED[name]}
    untested = sorted(set(_declared_ids()) - triggered)
    assert not untested, f"rule ids no fixture triggers: {untested}"


def test_at_least_the_issue_rules_exist():
    required = {
        "torch.missing", "torch.cpu-build-on-gpu-host", "torch.driver-too-old", "torch.arch-unsupported",
        "torch.python-unsupported", "torch.import-failed", "torch.import-crashed", "torch.import-hung",
        "torch.multiple-installs", "env.cuda-visible-devices-hides-gpus", "env.cuda-visible-devices-malformed",
        "env.ld-library-path-shadows-cuda", "nvidia.driver-library-mismatch", "host.nouveau-loaded",
        "nvidia.no-driver-with-gpu", "host.shm-small", "nvidia.ecc-uncorrectable",
        "nvidia.retired-pages-pending", "nvidia.row-remap-failure", "nvidia.pcie-degraded",
        "nvidia.throttled-at-rest", "nvidia.memory-used-by-others", "nvidia.mig-enabled", "host.disk-low",
        "host.ram-smaller-than-gpu-memory", "torch.compile-prereqs-missing", "torch.newer-than-known",
        "nvidia.gpu-lost", "nvidia.no-gpu", "torch.cuda-unavailable",
    }
    assert required <= set(_declared_ids())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rules_emit_only_declared_ids_with_complete_findings(name):
    declared = _declared_ids()
    for f in _findings(name):
        assert f.id in declared
        assert isinstance(f.severity, Severity)
        assert f.title and "\n" not in f.title
        assert isinstance(f.evidence, dict)
        json.dumps(f.to_dict())  # JSON-serialisable
        if f.severity in (Severity.ERROR, Severity.WARN):
            assert f.fix, f"{f.id} ({f.severity.value}) has no fix"


def test_all_sections_unavailable_gives_findings_and_no_rule_failure():
    s = doctor_scenarios.build("all_unavailable")
    found = rules.evaluate(s)
    assert found
    assert not [f for f in found if f.id == "envcheck.rule-failed"]
    assert {f.severity for f in found} == {Severity.WARN}


# ------------------------------------------------------------------ na() and odd values anywhere


def _paths(node, prefix=()):
    """Every path below the top-level sections (dict keys and list indexes)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _replace(s: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(s)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


# Findings that may legitimately *appear* when a fact goes missing, because they are the
# fallback when the more specific fact is unknown (all still true statements):
# - torch.cuda-unavailable: another rule named the cause; without its fact, torch's own
#   warning is reported instead.
# - nvidia.no-gpu ("no NVIDIA driver found"): without the PCI list, no-driver-with-gpu cannot
#   be concluded, but "no driver" still holds.
# - env.ld-library-path-shadows-cuda: only skipped for a build known to be CPU/ROCm.
# - nvidia.row-remap-pending: hidden behind row-remap-failure; with the failure flag unknown the
#   pending remap (a fact) is reported.
# - nvidia.no-driver-with-gpu: host.container-without-gpu needs the container fact; without
#   it the same situation is reported with both possible causes.
# - fabric.not-initialized / fabric.cuda-error-802: without the fabric manager's state, NVML's
#   per-GPU fabric state or torch's error 802 still say the fabric is not ready.
# - nvidia.gpu-unreadable: a GPU error whose class is unknown is reported as "could not be queried".
# - env.cuda-visible-devices-hides-gpus: without the GPU entries, GPUs outside the job's
#   allocation cannot be told apart, so CUDA_VISIBLE_DEVICES is judged against the whole count.
FALLBACK_IDS = {"torch.cuda-unavailable", "nvidia.no-gpu", "env.ld-library-path-shadows-cuda",
                "nvidia.row-remap-pending", "nvidia.no-driver-with-gpu", "fabric.not-initialized",
                "fabric.cuda-error-802", "nvidia.gpu-unreadable", "env.cuda-visible-devices-hides-gpus"}

NA_SCENARIOS = ["healthy_8xh100", "driver_too_old_cu130", "docker_small_shm", "docker_without_gpus",
                "torch_import_error_ld_path", "cvd_malformed", "ecc_errors", "throttled",
                "big_node_small_host", "no_driver_nouveau", "rtx5090_old_wheel", "one_gpu_lost",
                "retired_pages_v100", "compile_prereqs_missing", "uvm_missing", "multiple_installs",
                "pcie_degraded", "memory_used_by_others", "windows_cpu_wheel", "k8s_pod_limits",
                "xid_triage", "fabric_manager_dead", "nvlink_errors", "slurm_one_of_eight",
                "gpu_fatal"]


def _sections_paths(s: dict):
    for section in snap.SECTIONS:
        for p in _paths(s[section], (section,)):
            # identical GPUs 2..7 add time, not coverage
            if len(p) > 2 and p[1] == "gpus" and isinstance(p[2], int) and p[2] > 1:
                continue
            yield p


@pytest.mark.parametrize("name", NA_SCENARIOS)
def test_na_anywhere_never_crashes_nor_invents_a_finding(name):
    base = doctor_scenarios.build(name)
    before = {f.id for f in rules.evaluate(base)}
    for path in _sections_paths(base):
        mutated = _replace(base, path, na("simulated"))
        after = rules.evaluate(mutated)
        assert not [f for f in after if f.id == "envcheck.rule-failed"], (path, after)
        new = {f.id for f in after} - before - FALLBACK_IDS
        assert not new, f"na() at {'.'.join(map(str, path))} invented {new}"


@pytest.mark.parametrize("name", ["healthy_8xh100", "torch_import_crash", "docker_small_shm", "ecc_errors",
                                  "cvd_malformed", "windows_cpu_wheel", "big_node_small_host",
                                  "k8s_pod_limits", "xid_triage", "fabric_manager_dead", "nvlink_errors"])
@pytest.mark.parametrize("odd", [None, "garbage", -1, [], {}, True, 1.5e300])
def test_wrong_types_anywhere_never_crash_a_rule(name, odd):
    base = doctor_scenarios.build(name)
    for path in _sections_paths(base):
        after = rules.evaluate(_replace(base, path, odd))
        failed = [f for f in after if f.id == "envcheck.rule-failed"]
        assert not failed, (path, odd, failed[0].evidence if failed else None)
