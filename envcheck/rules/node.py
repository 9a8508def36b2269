"""Rules that judge the node's shape against its profile (recipes/node_profiles.json): GPU
count, PCIe link capability, NVLink error counters. The NVLink link-count check lives in
rules/nvidia.py::nvlink_down, which reads the same profile.

The profile is auto-detected from NVML's GPU names (recipes/gpu_specs.json ``match``), or
chosen with ``doctor --node-profile ID`` (``none`` switches the checks off); ``--expect-gpus N``
overrides the expected GPU count. Inside a container the GPU count is only judged against
``--expect-gpus``: a container given some GPUs sees only those.
"""

from __future__ import annotations

import re

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import option, rule
from envcheck.rules._util import (
    as_dict,
    emits,
    gpu_key,
    gpu_label,
    gpus,
    in_container,
    num,
    nvidia_gpu_count,
)
from envcheck.snapshot import get

_PROFILES = recipes.load("node_profiles")
_SPECS = recipes.load("gpu_specs")


def profile_ids() -> list[str]:
    return sorted(as_dict(_PROFILES.get("profiles")))


def _spec_id(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    for spec in _SPECS.get("gpus", []):
        if any(re.fullmatch(p, name.strip(), re.IGNORECASE) for p in spec.get("match", [])):
            return spec.get("id")
    return None


def spec_for(name: object) -> dict:
    sid = _spec_id(name)
    return next((s for s in _SPECS.get("gpus", []) if s.get("id") == sid), {})


def node_profile(snapshot: dict) -> tuple[str | None, dict]:
    """(profile id, profile) chosen by --node-profile or detected from the GPUs' names;
    (None, {}) when none applies (mixed or unknown GPUs, or --node-profile none)."""
    profiles = as_dict(_PROFILES.get("profiles"))
    chosen = option("node_profile")
    if chosen == "none":
        return None, {}
    if isinstance(chosen, str) and chosen in profiles:
        return chosen, profiles[chosen]
    ids = {_spec_id(g.get("name")) for g in gpus(snapshot) if isinstance(g.get("name"), str)}
    if len(ids) != 1:
        return None, {}
    spec_id = ids.pop()
    for pid, prof in profiles.items():
        if prof.get("gpu") == spec_id:
            return pid, prof
    return None, {}


def expected_gpus(snapshot: dict) -> tuple[list[int], str] | None:
    forced = num(option("expect_gpus"))
    if forced is not None:
        return [int(forced)], "--expect-gpus"
    pid, prof = node_profile(snapshot)
    counts = [int(c) for c in prof.get("gpu_count") or [] if num(c) is not None]
    if not counts or in_container(snapshot):
        return None
    return counts, f"node profile {pid}"


@rule
@emits("nvidia.gpu-count-unexpected")
def gpu_count_unexpected(snapshot: dict):
    """The driver lists a number of GPUs this node should not have (gcm check_gpu_num, AzNHC
    check_gpu_count, sichek gpu_nums, GPUd gpu-counts): a GPU fell off or failed to
    initialise. With ``--expect-gpus N``: fewer is an error, more a warning. From the profile
    alone only a count between its shapes is flagged (a warning: 7 on an 8-GPU board): fewer
    than its smallest shape may be a cloud VM given part of a board (GCP a3-highgpu-1g/2g/4g)."""
    expected = expected_gpus(snapshot)
    count = nvidia_gpu_count(snapshot)
    if expected is None or count is None or count in expected[0]:
        return
    options, why = expected
    explicit = why == "--expect-gpus"
    fewer = count < min(options)
    if not explicit and fewer:
        return
    want = " or ".join(str(c) for c in options)
    pci = get(snapshot, "host.pci_nvidia_devices")
    yield Finding(
        id="nvidia.gpu-count-unexpected",
        severity=Severity.ERROR if explicit and fewer else Severity.WARN,
        title=f"{count} GPUs where {want} are expected ({why})",
        evidence={"nvml_gpu_count": count, "expected": options, "from": why,
                  "pci_gpus": len(pci) if isinstance(pci, list) else None},
        fix=("check --expect-gpus / --node-profile (this node may be of another shape)"
             if explicit and not fewer else
             "`sudo dmesg | grep -i -e xid -e NVRM` for the missing GPU; `lspci -d 10de:` shows "
             "whether it is still on the bus; drain the node, reboot, reseat or replace; if this "
             "node has another shape, say so with --expect-gpus N"),
    )


@rule
@emits("nvidia.pcie-below-profile")
def pcie_below_profile(snapshot: dict):
    """NVML's maximum PCIe generation/width is what the GPU *and its slot* can reach: below the
    profile's (Gen5 x16 for H100/H200, Gen4 x16 for A100) the slot, riser or BIOS setting
    limits the GPU whatever it does (gcm check_pci_state, DCGM's PCIe plugin)."""
    pid, prof = node_profile(snapshot)
    want = as_dict(prof.get("pcie"))
    gen, width = num(want.get("gen")), num(want.get("width"))
    if gen is None and width is None:
        return
    hit = {}
    for g in gpus(snapshot):
        if as_dict(g.get("error")):
            continue
        gmax, wmax = num(get(g, "pcie.gen_max")), num(get(g, "pcie.width_max"))
        low = []
        if gen is not None and gmax is not None and gmax < gen:
            low.append(f"Gen{int(gmax)} (profile Gen{int(gen)})")
        if width is not None and wmax is not None and wmax < width:
            low.append(f"x{int(wmax)} (profile x{int(width)})")
        if low:
            hit[gpu_key(g)] = (g, low)
    if not hit:
        return
    yield Finding(
        id="nvidia.pcie-below-profile", severity=Severity.WARN,
        title=f"{', '.join(gpu_label(g) for g, _ in hit.values())}: PCIe link capability below "
              f"the {pid} profile",
        evidence={k: f"max {' '.join(low)}" for k, (_, low) in hit.items()},
        fix="check the slot, riser and BIOS PCIe settings (link speed forced to a lower "
            "generation?); `sudo lspci -vv -s <bus id> | grep -e LnkCap -e LnkSta`",
    )


_THRESHOLDS = as_dict(_PROFILES.get("nvlink_error_thresholds"))


@rule
@emits("nvidia.nvlink-errors")
def nvlink_errors(snapshot: dict):
    """NVLink data-link error counters (replay, recovery, CRC) since the driver loaded:
    >= 5 in all warns (Imbue), CRC errors >= 100 are an error (DCGM) -- recipes/
    node_profiles.json nvlink_error_thresholds. gcm and sichek default to 0 tolerated."""
    warn_total, error_crc = num(_THRESHOLDS.get("warn_total")), num(_THRESHOLDS.get("error_crc"))
    bad, noisy = [], []
    for g in gpus(snapshot):
        errors = as_dict(get(g, "nvlink.errors"))
        values = {k: num(v) for k, v in errors.items() if num(v) is not None}
        if not values:
            continue
        crc = values.get("crc_flit", 0) + values.get("crc_data", 0)
        total = sum(values.values())
        if error_crc is not None and crc >= error_crc:
            bad.append((g, values))
        elif warn_total is not None and total >= warn_total:
            noisy.append((g, values))
    for items, sev, what in ((bad, Severity.ERROR, f"NVLink CRC errors (>= {error_crc:g})"),
                             (noisy, Severity.WARN, f"NVLink errors (>= {warn_total:g} in all)")):
        if not items:
            continue
        yield Finding(
            id="nvidia.nvlink-errors", severity=sev,
            title=f"{', '.join(gpu_label(g) for g, _ in items)}: {what} since the driver loaded",
            evidence={gpu_key(g): v for g, v in items} | {"thresholds": _THRESHOLDS.get("source")},
            fix="`nvidia-smi nvlink -e` shows the counters per link; check whether they grow under "
                "load (`dcgmi diag -r 2`); a link that keeps counting needs the GPU or baseboard "
                "reseated or replaced",
        )
