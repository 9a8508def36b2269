"""Rules about the NVIDIA driver and every GPU's health, from the NVML section of the snapshot.

Per-GPU conditions are reported once per rule with the affected GPUs listed in the evidence,
so an 8-GPU node with the same problem gives one finding, not eight.
"""

from __future__ import annotations

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import rule
from envcheck.rules._util import (
    as_dict,
    container_hides_gpu,
    dicts,
    emits,
    flag,
    fmt_bytes,
    gpu_key,
    gpu_label,
    gpu_present,
    gpus,
    host_os,
    in_container,
    num,
    nvidia_gpu_count,
    nvml_status,
    pci_nvidia_gpus,
    version_tuple,
)
from envcheck.snapshot import get, is_na

_NO_DRIVER = ("library_not_found", "driver_not_loaded")

# GPU memory held by others above this share: a job sized for the whole GPU will not fit.
MEMORY_BUSY_SHARE = 0.5


def _nvml_message(snapshot: dict) -> str | None:
    msg = get(snapshot, "nvidia.nvml.error.message")
    return msg if isinstance(msg, str) else None


def _each(template: str, hit: list) -> str:
    """A per-GPU command for exactly the affected GPUs: ``sudo nvidia-smi -r -i 3`` or a loop
    over ``0 3`` (nvidia-smi's -i takes one GPU for these operations)."""
    idx = [str(g.get("index")) for g in hit if isinstance(g.get("index"), int)]
    if len(idx) == 1:
        return template.format(i=idx[0])
    if idx:
        return f"for i in {' '.join(idx)}; do {template.format(i='$i')}; done"
    return template.format(i="<index>")


def _count(items: list | None) -> int | None:
    return None if items is None else len(items)


def _healthy(g: dict) -> bool:
    """A GPU whose metrics can be read (a lost GPU has its own finding)."""
    return not as_dict(g.get("error"))


# ---------------------------------------------------------------------------------- driver


@rule
@emits("nvidia.no-gpu")
def no_gpu(snapshot: dict):
    """No NVIDIA GPU (or no driver and no NVIDIA PCI device): torch runs on the CPU. Info, not an
    error: a laptop or CI runner without a GPU is a valid place to run envcheck."""
    status = nvml_status(snapshot)
    present = gpu_present(snapshot)
    if container_hides_gpu(snapshot) or present is True:
        return
    if present is None and status not in _NO_DRIVER:
        return  # nothing known about GPUs: no conclusion
    yield Finding(
        id="nvidia.no-gpu", severity=Severity.INFO,
        title=("no NVIDIA GPU on this machine" if present is False else "no NVIDIA driver found")
              + ": torch will run on the CPU",
        evidence={k: v for k, v in (("nvml", status), ("nvml_error", _nvml_message(snapshot)),
                                    ("nvidia_pci_devices", _count(pci_nvidia_gpus(snapshot))),
                                    ("gpu_count", nvidia_gpu_count(snapshot))) if v is not None},
        fix=None,
    )


@rule
@emits("nvidia.no-driver-with-gpu")
def no_driver_with_gpu(snapshot: dict):
    """An NVIDIA GPU is on the PCI bus but no driver answers (NVML library missing or kernel
    module not loaded): nothing can use the GPU. torch says "Found no NVIDIA driver on your
    system" (c10/cuda/CUDAFunctions.cpp)."""
    status = nvml_status(snapshot)
    pci = pci_nvidia_gpus(snapshot)
    if status not in _NO_DRIVER or not pci or container_hides_gpu(snapshot):
        return
    if get(snapshot, "host.wsl") is True:
        return  # WSL's driver is the Windows one (host.wsl explains)
    distro = str(get(snapshot, "host.os.distro_id") or "").lower()
    module = get(snapshot, "host.kernel_modules.nvidia")
    container = as_dict(get(snapshot, "host.container"))
    container_unknown = "kind" not in container or is_na(container["kind"])
    if module is True and container_unknown:
        # A loaded module without NVML: a broken driver install, or a container started
        # without GPU access (which cannot be told apart without the container fact).
        title = f"{len(pci)} NVIDIA GPU(s) present but the driver library (libnvidia-ml) cannot be loaded"
        fix = ("in a container: start it with `--gpus all` (NVIDIA Container Toolkit); on the host: "
               "reinstall the NVIDIA driver package matching the loaded kernel module and reboot")
    elif module is True:
        title = "the NVIDIA kernel module is loaded but its user-space library (libnvidia-ml) is missing"
        fix = "reinstall the NVIDIA driver package (same version as the kernel module) and reboot"
    else:
        title = f"{len(pci)} NVIDIA GPU(s) on the PCI bus but no NVIDIA driver is loaded"
        fix = ("sudo ubuntu-drivers install && sudo reboot" if distro == "ubuntu" else
               "install the NVIDIA driver (https://www.nvidia.com/Download/index.aspx or your distro's "
               "packages, https://docs.nvidia.com/datacenter/tesla/driver-installation-guide/) and reboot")
    yield Finding(
        id="nvidia.no-driver-with-gpu", severity=Severity.ERROR, title=title,
        evidence={"nvidia_pci_devices": [d.get("address") for d in pci], "nvml": status,
                  "nvml_error": _nvml_message(snapshot), "nvidia_module": module,
                  "nouveau_module": get(snapshot, "host.kernel_modules.nouveau")},
        fix=fix,
    )


@rule
@emits("nvidia.driver-library-mismatch")
def driver_library_mismatch(snapshot: dict):
    """The loaded kernel module and the user-space driver libraries differ, typically after a
    driver upgrade without a reboot: nvidia-smi says "Failed to initialize NVML: Driver/library
    version mismatch" and torch fails inside the caching allocator (pytorch/pytorch#45109)."""
    if nvml_status(snapshot) != "driver_library_mismatch":
        return
    packages = get(snapshot, "host.nvidia_driver_packages")
    packages = [p for p in packages if isinstance(p, str)] if isinstance(packages, list) else []
    evidence = {"nvml": "driver_library_mismatch", "nvml_error": _nvml_message(snapshot)}
    if in_container(snapshot) and packages:
        # The image installed its own driver libraries: they shadow the host's, which the
        # NVIDIA Container Toolkit mounts, and differ from the host's kernel module. Rebooting
        # the host changes nothing (k4yt3x/video2x#1226, E4S-Project/e4s#172, tensorflow/build#59).
        yield Finding(
            id="nvidia.driver-library-mismatch", severity=Severity.ERROR,
            title="NVIDIA driver/library version mismatch: this container image ships its own "
                  "NVIDIA driver libraries",
            evidence={**evidence, "driver_packages_in_image": packages},
            fix=f"remove the driver from the image (`apt-get purge -y {' '.join(packages)}` in the "
                "Dockerfile, and do not run installers that add it); the NVIDIA Container Toolkit "
                "mounts the host driver's libraries at run time",
        )
        return
    fix = ("the host's driver was upgraded: reboot the host (or restart the container after the "
           "host is consistent)" if in_container(snapshot) else
           "sudo reboot (or, with no process on the GPU: `sudo rmmod nvidia_uvm nvidia_drm "
           "nvidia_modeset nvidia && sudo modprobe nvidia`)")
    yield Finding(
        id="nvidia.driver-library-mismatch", severity=Severity.ERROR,
        title="NVIDIA driver/library version mismatch: the driver was updated without a reboot",
        evidence=evidence,
        fix=fix,
    )


@rule
@emits("nvidia.nvml-error")
def nvml_error(snapshot: dict):
    """NVML started but refused us (permissions), failed for an unknown reason, or could not
    even count the GPUs (nvmlDeviceGetCount failed: GPU_IS_LOST, UNKNOWN, NO_PERMISSION...).
    A count that fails is never "no GPU on this machine" (issue 10 class 7)."""
    status = nvml_status(snapshot)
    if status not in ("no_permission", "unknown_error", "gpu_lost", "gpu_fatal"):
        return
    message = _nvml_message(snapshot) or ""
    counting = message.startswith("nvmlDeviceGetCount failed")
    dmesg = "`sudo dmesg | grep -i -e NVRM -e xid` shows the driver's errors"
    if status == "no_permission":
        title = "no permission to use the NVIDIA devices"
        if counting:
            title = "NVML cannot count the GPUs: no permission to use the NVIDIA devices"
        fix = ("check `ls -l /dev/nvidia*`: add the user to the owning group (`sudo usermod -aG "
               "video $USER`, then log in again) or fix the container's device access")
    elif status == "gpu_lost":
        title = "NVML cannot count the GPUs: a GPU is lost (fell off the bus)"
        fix = f"drain the node; {dmesg} (Xid 79 = fallen off the bus); reboot, and reseat or replace the GPU if it recurs"
    elif status == "gpu_fatal":
        title = "NVML cannot count the GPUs: a GPU reports a fatal error"
        fix = f"drain the node; {dmesg}; reset the GPU (`sudo nvidia-smi -r`) or reboot"
    else:
        title = ("NVML cannot count the GPUs (unknown error)" if counting
                 else "NVML failed with an unknown error")
        fix = f"run `nvidia-smi`; {dmesg}; reboot if the driver is wedged"
    yield Finding(
        id="nvidia.nvml-error", severity=Severity.WARN if status == "no_permission" else Severity.ERROR,
        title=title, evidence={"nvml": status, "nvml_error": _nvml_message(snapshot)}, fix=fix,
    )


@rule
@emits("nvidia.gpus-missing-from-driver")
def gpus_missing_from_driver(snapshot: dict):
    """More NVIDIA GPUs on the PCI bus than the driver lists: a GPU failed to initialise (see
    `dmesg`, e.g. Xid 79 "GPU has fallen off the bus") or is bound to another driver (vfio-pci for
    VM passthrough). Not checked in containers, which see the host's whole PCI bus."""
    if nvml_status(snapshot) != "ok" or in_container(snapshot):
        return
    pci, count = pci_nvidia_gpus(snapshot), nvidia_gpu_count(snapshot)
    if pci is None or count is None or len(pci) <= count:
        return
    yield Finding(
        id="nvidia.gpus-missing-from-driver", severity=Severity.WARN,
        title=f"{len(pci)} NVIDIA GPUs on the PCI bus but the driver lists {count}",
        evidence={"pci_gpus": len(pci), "nvml_gpu_count": count,
                  "pci_addresses": [d.get("address") for d in pci]},
        fix="`sudo dmesg | grep -i -e NVRM -e xid` for the failing GPU; `lspci -k -d 10de:` shows "
            "which driver each one uses; reseat or reboot, and drain the node if it recurs",
    )


# ---------------------------------------------------------------------------------- GPU health


# Entry error classes with a rule of their own (not "unreadable").
_OWN_CLASS = ("gpu_lost", "gpu_fatal", "gpu_hung", "gpu_slow", "not_allocated")


@rule
@emits("nvidia.gpu-lost", "nvidia.gpu-unreadable")
def gpu_lost(snapshot: dict):
    """NVML answers NVML_ERROR_GPU_IS_LOST: the GPU fell off the bus (Xid 79) and needs a reset
    or a reboot; repeated, it is a hardware fault (NVIDIA Xid errors,
    https://docs.nvidia.com/deploy/xid-errors/)."""
    lost, other, unreadable = [], [], []
    for g in gpus(snapshot):
        err = as_dict(g.get("error"))
        if not err:
            continue
        entry = f"{gpu_label(g)}: {err.get('message', err.get('class', '?'))}"
        if err.get("class") == "gpu_lost":
            lost.append(entry)
        elif err.get("class") not in _OWN_CLASS:
            other.append(entry)
            unreadable.append(g)
    if lost:
        yield Finding(
            id="nvidia.gpu-lost", severity=Severity.ERROR,
            title=f"{len(lost)} GPU(s) lost: the driver cannot reach them",
            evidence={"gpus": lost},
            fix="drain the node; `sudo dmesg | grep -i xid` (Xid 79 = fallen off the bus); reboot, and "
                "reseat or replace the GPU if it happens again",
        )
    if other:
        yield Finding(
            id="nvidia.gpu-unreadable", severity=Severity.WARN,
            title=f"{len(other)} GPU(s) could not be queried",
            evidence={"gpus": other},
            fix=f"run `{_each('nvidia-smi -q -i {i}', unreadable)}`; check "
                "`sudo dmesg | grep -i -e NVRM -e xid`",
        )


def _with_class(snapshot: dict, cls: str) -> list[dict]:
    return [g for g in gpus(snapshot) if as_dict(g.get("error")).get("class") == cls]


# What to do per GPU-fatal NVML answer (nvmlReturn_t meanings, NVML API reference; nvidia-smi
# exit codes as NHC's check_nvsmi_healthmon maps them: 8 power cables, 10 interrupt, 14 infoROM).
_FATAL_FIX = {
    "NVML_ERROR_RESET_REQUIRED": "reset the GPU with no process on it (`sudo nvidia-smi -r -i {i}`) or reboot",
    "NVML_ERROR_CORRUPTED_INFOROM": "drain the GPU and contact the vendor: a corrupted infoROM is an RMA case",
    "NVML_ERROR_INSUFFICIENT_POWER": "power the node off and check the GPU's auxiliary power cables and PSU",
    "NVML_ERROR_IRQ_ISSUE": "reboot; if it recurs, check the kernel log and BIOS interrupt (MSI) settings, then the vendor",
}


@rule
@emits("nvidia.gpu-fatal-error")
def gpu_fatal_error(snapshot: dict):
    """A metric call answered with an error that makes the GPU unusable (RESET_REQUIRED,
    CORRUPTED_INFOROM, INSUFFICIENT_POWER, IRQ_ISSUE). gcm (facebookresearch/gcm) treats these
    as critical; before issue 13 envcheck showed them as a silent "unavailable"."""
    hit = _with_class(snapshot, "gpu_fatal")
    if not hit:
        return
    fixes = []
    for g in hit:
        code = str(as_dict(g.get("error")).get("message", "")).rsplit(": ", 1)[-1]
        template = _FATAL_FIX.get(code, "reset the GPU or reboot; contact the vendor if it recurs")
        fixes.append(f"{gpu_label(g)}: " + template.format(i=g.get("index", "<index>")))
    yield Finding(
        id="nvidia.gpu-fatal-error", severity=Severity.ERROR,
        title=f"{', '.join(gpu_label(g) for g in hit)}: NVML reports a fatal GPU error",
        evidence={gpu_key(g): as_dict(g.get("error")).get("message") for g in hit},
        fix="drain the node; " + "; ".join(fixes),
    )


@rule
@emits("nvidia.gpu-unresponsive")
def gpu_unresponsive(snapshot: dict):
    """An NVML call on a GPU did not answer within its deadline (hung: error), or the GPU
    answered so slowly that its time budget ran out (warning). The facts read before are kept
    and the other GPUs are complete (issue 10 class 7, issue 13)."""
    for cls, sev, what in (("gpu_hung", Severity.ERROR, "NVML calls hang"),
                           ("gpu_slow", Severity.WARN, "NVML answers very slowly")):
        hit = _with_class(snapshot, cls)
        if not hit:
            continue
        yield Finding(
            id="nvidia.gpu-unresponsive", severity=sev,
            title=f"{', '.join(gpu_label(g) for g in hit)}: {what}",
            evidence={gpu_key(g): as_dict(g.get("error")).get("message") for g in hit},
            fix=f"`{_each('timeout 30 nvidia-smi -q -i {i}', hit)}`; `sudo dmesg | grep -i -e NVRM -e xid`; "
                "drain the node and reset the GPU or reboot if it does not answer",
        )


@rule
@emits("nvidia.gpus-not-allocated")
def gpus_not_allocated(snapshot: dict):
    """NVML counts every GPU of the node but refuses the handles of those outside this job's
    device cgroup (Slurm ConstrainDevices, a container given some GPUs) with NO_PERMISSION.
    That is the allocation working, not a fault: say how many this job has."""
    hit = _with_class(snapshot, "not_allocated")
    if not hit:
        return
    total = nvidia_gpu_count(snapshot) or len(gpus(snapshot))
    mine = [g for g in gpus(snapshot) if as_dict(g.get("error")).get("class") != "not_allocated"]
    yield Finding(
        id="nvidia.gpus-not-allocated", severity=Severity.INFO,
        title=f"{len(mine)} of {total} GPUs are allocated to this job; the other {len(hit)} are "
              "not accessible here (the job's device allocation)",
        evidence={"allocated": [gpu_label(g) for g in mine],
                  "not_allocated": [g.get("index") for g in hit]},
        fix=None,
    )


_CAVEATS = recipes.load("nvml_caveats")


@rule
@emits("nvidia.process-list-unreliable")
def process_list_unreliable(snapshot: dict):
    """Drivers 535.43-535.85 return a process list that nvidia-ml-py >= 12.535.108 reads
    scrambled (wookayin/gpustat#161, XuehaiPan/nvitop#75): the listed pids and their memory are
    wrong. Data: recipes/nvml_caveats.json."""
    caveat = _CAVEATS["process_list"]
    driver = version_tuple(get(snapshot, "nvidia.driver_version"))
    low, high = version_tuple(caveat["driver_min"]), version_tuple(caveat["driver_below"])
    if driver is None or not (low <= driver < high):
        return
    yield Finding(
        id="nvidia.process-list-unreliable", severity=Severity.WARN,
        title=f"driver {get(snapshot, 'nvidia.driver_version')}: NVML's GPU process list is "
              "unreliable (pids and memory per process may be wrong)",
        evidence={"driver_version": get(snapshot, "nvidia.driver_version"),
                  "affected": f">= {caveat['driver_min']}, < {caveat['driver_below']}",
                  "source": caveat["source"]},
        fix=caveat["fix"],
    )


@rule
@emits("nvidia.ecc-uncorrectable")
def ecc_uncorrectable(snapshot: dict):
    """Uncorrectable (double-bit) ECC errors. Volatile ones happened since the driver loaded:
    results computed since may be corrupt and the GPU needs a reset (error). Aggregate-only ones
    are history that row remapping / page retirement should have contained (warning).
    NVIDIA GPU memory error management, https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/."""
    now, past = [], []
    for g in gpus(snapshot):
        ecc = as_dict(g.get("ecc"))
        vol, agg = num(ecc.get("volatile_uncorrected")), num(ecc.get("aggregate_uncorrected"))
        if vol:
            now.append((g, vol, agg))
        elif agg:
            past.append((g, vol, agg))
    reset = _each("sudo nvidia-smi -r -i {i}", [g for g, _, _ in now])
    for items, sev, title, fix in (
        (now, Severity.ERROR, "uncorrectable ECC errors since the driver loaded",
         f"drain the GPU, then reset it (`{reset}`, with no process on it) or reboot; "
         "if errors return, contact the vendor (RMA)"),
        (past, Severity.WARN, "uncorrectable ECC errors in the GPU's lifetime record",
         "watch `nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT`; RMA if new ones appear"),
    ):
        if items:
            yield Finding(
                id="nvidia.ecc-uncorrectable", severity=sev,
                title=f"{', '.join(gpu_label(g) for g, _, _ in items)}: {title}",
                evidence={gpu_key(g): {"volatile_uncorrected": v, "aggregate_uncorrected": a}
                          for g, v, a in items},
                fix=fix,
            )


@rule
@emits("nvidia.retired-pages-pending")
def retired_pages_pending(snapshot: dict):
    """Pre-Ampere GPUs retire memory pages after ECC errors, but a retirement only takes effect
    after the GPU is reset; until then the bad page can still be handed out (NVIDIA Dynamic Page
    Retirement, https://docs.nvidia.com/deploy/dynamic-page-retirement/)."""
    hit = [g for g in gpus(snapshot) if get(g, "retired_pages.pending") is True]
    if not hit:
        return
    yield Finding(
        id="nvidia.retired-pages-pending", severity=Severity.WARN,
        title=f"{', '.join(gpu_label(g) for g in hit)}: retired memory pages wait for a GPU reset",
        evidence={gpu_key(g): {"pending": True,
                                "retired_double_bit": get(g, "retired_pages.double_bit"),
                                "retired_single_bit": get(g, "retired_pages.single_bit")}
                  for g in hit},
        fix=f"drain the GPU and reset it (`{_each('sudo nvidia-smi -r -i {i}', hit)}`) or reboot",
    )


@rule
@emits("nvidia.row-remap-failure", "nvidia.row-remap-pending")
def row_remap(snapshot: dict):
    """Ampere and newer remap a bad memory row; a pending remap needs a GPU reset, and a remap
    failure means the GPU ran out of spare rows and should be replaced (NVIDIA GPU memory error
    management, "Row Remapping", https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/)."""
    failed = [g for g in gpus(snapshot) if get(g, "row_remap.failure") is True]
    pending = [g for g in gpus(snapshot) if get(g, "row_remap.pending") is True and g not in failed]
    if failed:
        yield Finding(
            id="nvidia.row-remap-failure", severity=Severity.ERROR,
            title=f"{', '.join(gpu_label(g) for g in failed)}: memory row remapping failed",
            evidence={gpu_key(g): as_dict(g.get("row_remap")) for g in failed},
            fix="drain the GPU and contact the vendor: a failed row remap is an RMA condition",
        )
    if pending:
        yield Finding(
            id="nvidia.row-remap-pending", severity=Severity.WARN,
            title=f"{', '.join(gpu_label(g) for g in pending)}: a memory row remap waits for a GPU reset",
            evidence={gpu_key(g): as_dict(g.get("row_remap")) for g in pending},
            fix=f"drain the GPU and reset it (`{_each('sudo nvidia-smi -r -i {i}', pending)}`) or reboot",
        )


@rule
@emits("nvidia.pcie-degraded")
def pcie_degraded(snapshot: dict):
    """The PCIe link trained below what the GPU and slot can do (NVML "max" is the device and
    system combined). A narrower link is a physical problem (slot, riser, seating). A lower
    generation is normal power saving on an idle GPU, so it is only flagged when the GPU is not
    idle (no gpu_idle clock reason)."""
    hit = []
    for g in gpus(snapshot):
        if not _healthy(g):
            continue
        pcie = as_dict(g.get("pcie"))
        gen, gen_max = num(pcie.get("gen_current")), num(pcie.get("gen_max"))
        w, w_max = num(pcie.get("width_current")), num(pcie.get("width_max"))
        reasons = g.get("throttle_reasons")
        idle = "gpu_idle" in reasons if isinstance(reasons, list) else None
        narrow = w is not None and w_max is not None and w < w_max
        slow = gen is not None and gen_max is not None and gen < gen_max and idle is False
        if narrow or slow:
            hit.append((g, pcie))
    if not hit:
        return
    yield Finding(
        id="nvidia.pcie-degraded", severity=Severity.WARN,
        title=f"{', '.join(gpu_label(g) for g, _ in hit)}: PCIe link below its maximum",
        evidence={gpu_key(g): f"Gen{p.get('gen_current')} x{p.get('width_current')} "
                                f"(max Gen{p.get('gen_max')} x{p.get('width_max')})" for g, p in hit},
        fix="check seating, risers and BIOS PCIe settings; `sudo lspci -vv -s <bus id> | grep LnkSta` "
            "shows the trained link",
    )


# NVML clock event reasons (nvmlClocksEventReasons docs, nvml.h). HW slowdown cuts clocks by
# half or more ("HW Slowdown ... reduces the clocks by a factor of 2 or more").
_HW_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


@rule
@emits("nvidia.throttled-at-rest")
def throttled_at_rest(snapshot: dict):
    """Clock slowdowns that should not happen on an idle GPU: hardware slowdown (thermal,
    external power brake), software thermal slowdown, or a power cap hit with nothing running
    (a power limit set far too low). A throttled GPU is a straggler for the whole job."""
    hard, soft = [], []
    for g in gpus(snapshot):
        reasons = g.get("throttle_reasons")
        if not _healthy(g) or not isinstance(reasons, list):
            continue
        procs = g.get("processes")
        at_rest = isinstance(procs, list) and not procs
        hw = [r for r in reasons if r in _HW_REASONS]
        sw = [r for r in reasons if r == "sw_thermal_slowdown" or (r == "sw_power_cap" and at_rest)]
        if hw:
            hard.append((g, hw + sw))
        elif sw:
            soft.append((g, sw))
    for items, sev in ((hard, Severity.ERROR), (soft, Severity.WARN)):
        if not items:
            continue
        yield Finding(
            id="nvidia.throttled-at-rest", severity=sev,
            title=f"{', '.join(gpu_label(g) for g, _ in items)}: clocks throttled "
                  f"({', '.join(sorted({r for _, rs in items for r in rs}))})",
            evidence={gpu_key(g): {"reasons": rs, "temperature_c": g.get("temperature_c"),
                                     "power_w": get(g, "power.draw_w"),
                                     "power_limit_w": get(g, "power.limit_w"),
                                     "sm_mhz": get(g, "clocks.sm_mhz"),
                                     "sm_max_mhz": get(g, "clocks.sm_max_mhz")}
                      for g, rs in items},
            fix=_throttle_fix(items),
        )


def _throttle_fix(items: list) -> str:
    reasons = {r for _, rs in items for r in rs}
    idx = [str(g.get("index")) for g, _ in items if isinstance(g.get("index"), int)]
    sel = f" -i {idx[0]}" if len(idx) == 1 else ""  # one GPU, or all of them
    parts = []
    if reasons & {"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown"}:
        parts.append(f"`nvidia-smi -q -d PERFORMANCE,TEMPERATURE{sel}` shows the cause; check fans, "
                     "airflow and inlet temperature")
    if reasons & {"hw_slowdown", "hw_power_brake_slowdown"}:
        parts.append("check PSU cabling and the chassis power-brake signal")
    if "sw_power_cap" in reasons:
        parts.append(f"`nvidia-smi -q -d POWER{sel}` shows the default power limit; restore it "
                     "with `sudo nvidia-smi -i <index> -pl <default W>`")
    return "; ".join(parts)


@rule
@emits("nvidia.memory-used-by-others")
def memory_used_by_others(snapshot: dict):
    """More than half of a GPU's memory is held by other processes: a job sized for the GPU
    will hit CUDA out-of-memory. (NVML memory v2 "used" excludes the driver's reservation.)"""
    hit = []
    for g in gpus(snapshot):
        mem = as_dict(g.get("memory"))
        used, total = num(mem.get("used_bytes")), num(mem.get("total_bytes"))
        if used is None or not total or used / total <= MEMORY_BUSY_SHARE:
            continue
        procs = dicts(g.get("processes"))
        top = sorted(procs, key=lambda p: num(p.get("used_bytes")) or 0, reverse=True)[:3]
        hit.append((g, used, total, [f"pid {p.get('pid')} {p.get('name') or '?'} "
                                     f"{fmt_bytes(p.get('used_bytes'))}" for p in top]))
    if not hit:
        return
    yield Finding(
        id="nvidia.memory-used-by-others", severity=Severity.WARN,
        title=f"{', '.join(gpu_label(g) for g, *_ in hit)}: most GPU memory is already in use",
        evidence={gpu_key(g): {"used": fmt_bytes(u), "total": fmt_bytes(t), "processes": p}
                  for g, u, t, p in hit},
        fix="stop the listed processes or pick a free GPU (CUDA_VISIBLE_DEVICES); "
            "`nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv` lists them",
    )


@rule
@emits("nvidia.mig-enabled")
def mig_enabled(snapshot: dict):
    """MIG splits a GPU into isolated instances: a process sees one instance (a fraction of the
    memory and SMs), and collectives between instances are not supported (NVIDIA MIG User Guide,
    https://docs.nvidia.com/datacenter/tesla/mig-user-guide/)."""
    hit = [g for g in gpus(snapshot) if get(g, "mig_mode.current") is True]
    if not hit:
        return
    yield Finding(
        id="nvidia.mig-enabled", severity=Severity.WARN,
        title=f"MIG is enabled on {', '.join(gpu_label(g) for g in hit)}: each process sees only a slice",
        evidence={"gpus": [gpu_label(g) for g in hit]},
        fix=f"if you need whole GPUs: `{_each('sudo nvidia-smi -i {i} -mig 0', hit)}` (no processes running), then "
            "reset the GPU or reboot",
    )


@rule
@emits("nvidia.persistence-mode-off")
def persistence_mode_off(snapshot: dict):
    """Without persistence the driver tears the GPU state down when the last client exits, so
    every CUDA start (and nvidia-smi) pays the initialisation again; NVIDIA recommends the
    persistence daemon on Linux (https://docs.nvidia.com/deploy/driver-persistence/)."""
    if host_os(snapshot) != "linux" or get(snapshot, "host.wsl") is True:
        return
    off = [g for g in gpus(snapshot) if flag(g.get("persistence_mode")) is False]
    if not off:
        return
    yield Finding(
        id="nvidia.persistence-mode-off", severity=Severity.INFO,
        title=f"persistence mode is off on {len(off)} GPU(s): every CUDA start re-initialises the GPU",
        evidence={"gpus": [gpu_label(g) for g in off]},
        fix="sudo systemctl enable --now nvidia-persistenced",
    )


@rule
@emits("nvidia.nvlink-down")
def nvlink_down(snapshot: dict):
    """NVLink links down. Some down while others are up: NCCL routes around them at lower
    bandwidth (warning). *Every* link down on an NVLink (SXM) part is the worst case, not
    "no NVLink": NVML answers SUCCESS with links inactive on SXM boards and NOT_SUPPORTED on
    PCIe cards (NVIDIA/NVSentinel#1481; the B200 case GPUd fixed, leptonai/gpud#1085), so an
    SXM GPU (recipes/gpu_specs.json nvlink.class NVLink*) with none up is an error. PCIe cards
    with a partial or no bridge are not flagged. With a node profile, fewer links up than the
    profile's count (18 on H100/H200 SXM, 12 on A100 SXM) is flagged too."""
    from envcheck.rules.node import node_profile, spec_for

    _, profile = node_profile(snapshot)
    expected = num(profile.get("nvlink_links_per_gpu"))
    dead, partial = [], []
    for g in gpus(snapshot):
        if not _healthy(g):
            continue
        nv = as_dict(g.get("nvlink"))
        up, down = num(nv.get("up")), num(nv.get("down"))
        if up is None or down is None:
            continue
        sxm = str(as_dict(spec_for(g.get("name")).get("nvlink")).get("class", "")).startswith("NVLink")
        if up == 0 and down > 0 and sxm:
            dead.append((g, int(up), int(down)))
        elif up and (down or (expected is not None and up < expected)):
            partial.append((g, int(up), int(down)))
    for items, sev, what in ((dead, Severity.ERROR, "every NVLink link is down"),
                             (partial, Severity.WARN, "NVLink links down")):
        if not items:
            continue
        yield Finding(
            id="nvidia.nvlink-down", severity=sev,
            title=f"{', '.join(gpu_label(g) for g, *_ in items)}: {what}",
            evidence={gpu_key(g): f"{d} down, {u} up" + (f" (profile: {int(expected)})" if expected else "")
                      for g, u, d in items},
            fix="`nvidia-smi nvlink -s` and `nvidia-smi nvlink -e` show which links and their errors; "
                "on NVSwitch systems check nvidia-fabricmanager (`systemctl status "
                "nvidia-fabricmanager`); reset the GPUs or reboot; a link that stays down needs the "
                "GPU or baseboard reseated or replaced",
        )


@rule
@emits("nvidia.compute-mode-restricted")
def compute_mode_restricted(snapshot: dict):
    """Compute mode "prohibited" lets no CUDA context be created; "exclusive_process" allows one
    process per GPU (fine for one rank per GPU, breaks tools that share a GPU). nvidia-smi -c."""
    prohibited = [g for g in gpus(snapshot) if g.get("compute_mode") == "prohibited"]
    exclusive = [g for g in gpus(snapshot) if g.get("compute_mode") in ("exclusive_process", "exclusive_thread")]
    if prohibited:
        yield Finding(
            id="nvidia.compute-mode-restricted", severity=Severity.ERROR,
            title=f"{', '.join(gpu_label(g) for g in prohibited)}: compute mode is 'prohibited'",
            evidence={"gpus": [gpu_label(g) for g in prohibited]},
            fix=_each("sudo nvidia-smi -i {i} -c DEFAULT", prohibited),
        )
    if exclusive:
        yield Finding(
            id="nvidia.compute-mode-restricted", severity=Severity.INFO,
            title=f"{', '.join(gpu_label(g) for g in exclusive)}: compute mode is exclusive "
                  "(one process per GPU)",
            evidence={gpu_key(g): g.get("compute_mode") for g in exclusive},
            fix="nothing to do for one process per GPU; otherwise "
                f"`{_each('sudo nvidia-smi -i {i} -c DEFAULT', exclusive)}`",
        )




@rule
@emits("nvidia.probe-failed")
def nvidia_probe_failed(snapshot: dict):
    """The whole nvidia section is missing (the probe itself failed): GPU health is unknown."""
    section = snapshot.get("nvidia")
    if not is_na(section) and isinstance(section, dict):
        return
    yield Finding(
        id="nvidia.probe-failed", severity=Severity.WARN,
        title="the NVIDIA probe failed: driver and GPU health are unknown",
        evidence={"reason": section.get("unavailable") if isinstance(section, dict) else repr(section)},
        fix="run `nvidia-smi -q`; please report the reason above as an envcheck bug",
    )
