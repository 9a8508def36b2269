"""Rules about the NVSwitch fabric of HGX/DGX boards (``host.fabric``, probes/fabric.py, and
NVML's per-GPU ``fabric`` state).

On an NVSwitch system CUDA cannot start until nvidia-fabricmanager, at exactly the driver's
version, has configured the fabric; until then cudaGetDeviceCount fails with error 802 "system
not yet initialized" and torch says CUDA is unavailable (NVIDIA Fabric Manager User Guide;
one of the most reported problems: pytorch/pytorch#35710, huggingface_hub#4128,
wilicc/gpu-burn#92, aws-deep-learning-ami#33; node-health-anchors.md §3 row 7). One cause, one
finding: when a rule here names it, torch.cuda-unavailable stays quiet (rules/torch.py).
"""

from __future__ import annotations

from envcheck.findings import Finding, Severity
from envcheck.rules import rule
from envcheck.rules._util import as_dict, as_list, emits, gpu_label, gpus, version_tuple
from envcheck.snapshot import get, is_na

UNIT = "nvidia-fabricmanager"
_ATTACHED = ("not_started", "in_progress", "completed")  # NVML_GPU_FABRIC_STATE_* on NVSwitch GPUs


def _said_802(snapshot: dict) -> bool:
    reason = get(snapshot, "torch.cuda_unavailable_reason")
    text = reason.lower() if isinstance(reason, str) else ""
    return "error 802" in text or "system not yet initialized" in text


def nvswitch_system(snapshot: dict) -> bool:
    """NVSwitch PCI functions or /dev/nvidia-nvswitch* nodes, or a GPU NVML reports as part of
    an NVSwitch fabric."""
    fabric = as_dict(get(snapshot, "host.fabric"))
    nodes = fabric.get("nvswitch_dev_nodes")
    if as_list(fabric.get("nvswitches")) or (isinstance(nodes, int) and not isinstance(nodes, bool) and nodes > 0):
        return True
    return any(get(g, "fabric.state") in _ATTACHED for g in gpus(snapshot))


def _manager(snapshot: dict) -> dict:
    return as_dict(get(snapshot, "host.fabric.fabric_manager"))


def _evidence(snapshot: dict, **extra) -> dict:
    fabric = as_dict(get(snapshot, "host.fabric"))
    fm = _manager(snapshot)
    ev = {"nvswitches": len(as_list(fabric.get("nvswitches"))),
          "fabric_manager": {k: fm.get(k) for k in ("installed", "active_state", "sub_state", "version")},
          "driver_version": get(snapshot, "nvidia.driver_version")}
    states = {f"gpu{g.get('index')}": get(g, "fabric.state") for g in gpus(snapshot)
              if isinstance(get(g, "fabric.state"), str)}
    if states:
        ev["gpu_fabric_state"] = states
    if _said_802(snapshot):
        ev["torch_warning"] = get(snapshot, "torch.cuda_unavailable_reason")
    ev.update(extra)
    return ev


def _because_802(snapshot: dict) -> str:
    return " (this is why CUDA reports error 802 'system not yet initialized')" if _said_802(snapshot) else ""


def _mismatch(snapshot: dict) -> tuple[str, str] | None:
    version, driver = _manager(snapshot).get("version"), get(snapshot, "nvidia.driver_version")
    if not isinstance(version, str) or not isinstance(driver, str):
        return None
    if version_tuple(version) is None or version_tuple(driver) is None:
        return None
    return None if version_tuple(version) == version_tuple(driver) else (version, driver)


def _branch(driver: object) -> str:
    v = version_tuple(driver)
    return str(v[0]) if v else "<branch>"


@rule
@emits("fabric.manager-missing", "fabric.manager-version-mismatch", "fabric.manager-not-running")
def fabric_manager(snapshot: dict):
    """nvidia-fabricmanager on an NVSwitch system: installed, at the driver's version, running
    (the DCGM software check checkFabricManager, Imbue's NvidiaFabricManagerHealthCheck and
    sichek's nv_fabricmanager: active). A version mismatch is reported instead of "not
    running": fabric manager refuses to start against another driver version, so it is the
    cause."""
    if not nvswitch_system(snapshot):
        return
    fm = _manager(snapshot)
    if not fm:
        return
    driver = get(snapshot, "nvidia.driver_version")
    enable = f"sudo systemctl enable --now {UNIT}"
    if fm.get("installed") is False:
        yield Finding(
            id="fabric.manager-missing", severity=Severity.ERROR,
            title="NVSwitch system without nvidia-fabricmanager: the GPUs cannot use the "
                  f"fabric{_because_802(snapshot)}",
            evidence=_evidence(snapshot),
            fix=f"install the fabric manager of driver branch {_branch(driver)} at exactly the "
                f"driver's version {driver} (package nvidia-fabricmanager-{_branch(driver)} from "
                f"NVIDIA's CUDA repository), then `{enable}`",
        )
        return
    mismatch = _mismatch(snapshot)
    if mismatch:
        yield Finding(
            id="fabric.manager-version-mismatch", severity=Severity.ERROR,
            title=f"nvidia-fabricmanager {mismatch[0]} does not match the driver {mismatch[1]}"
                  f"{_because_802(snapshot)}",
            evidence=_evidence(snapshot),
            fix=f"install nvidia-fabricmanager {mismatch[1]} (the driver's exact version; hold both "
                f"packages so they upgrade together), then `sudo systemctl restart {UNIT}`",
        )
        return
    state = fm.get("active_state")
    if isinstance(state, str) and state != "active":
        yield Finding(
            id="fabric.manager-not-running", severity=Severity.ERROR,
            title=f"nvidia-fabricmanager is not running ({state}/{fm.get('sub_state')}) on an "
                  f"NVSwitch system{_because_802(snapshot)}",
            evidence=_evidence(snapshot),
            fix=f"`{enable}`; if it fails, `journalctl -u {UNIT} -b` and "
                "/var/log/fabricmanager.log say why",
        )


@rule
@emits("fabric.not-initialized")
def fabric_not_initialized(snapshot: dict):
    """NVML's per-GPU fabric state (nvmlDeviceGetGpuFabricInfo): a GPU whose registration is
    not "completed", or completed with an error status, cannot use NVLink through the switches,
    although nvidia-fabricmanager looks fine (or could not be checked)."""
    if any(True for _ in fabric_manager(snapshot)):
        return  # the manager itself is the cause
    hit = []
    for g in gpus(snapshot):
        state, status = get(g, "fabric.state"), get(g, "fabric.status")
        if state in ("not_started", "in_progress") or (state == "completed" and isinstance(status, str)
                                                        and status != "success"):
            hit.append((g, state, status))
    if not hit:
        return
    yield Finding(
        id="fabric.not-initialized", severity=Severity.ERROR,
        title=f"{', '.join(gpu_label(g) for g, *_ in hit)}: NVSwitch fabric not initialised"
              f"{_because_802(snapshot)}",
        evidence=_evidence(snapshot, gpus={f"gpu{g.get('index')}": f"{st} ({su})" for g, st, su in hit}),
        fix=f"`sudo systemctl restart {UNIT}` and check `journalctl -u {UNIT} -b`; if the GPUs "
            "stay uninitialised, reboot the node (an NVSwitch or NVLink fault shows as SXid "
            "errors in `sudo dmesg`)",
    )


@rule
@emits("fabric.cuda-error-802")
def cuda_error_802(snapshot: dict):
    """torch reports CUDA error 802 "system not yet initialized" but no fabric fact explains
    it (no NVSwitch seen, or the fabric manager could not be checked): say what 802 means."""
    if not _said_802(snapshot) or _explained(snapshot):
        return
    switch = nvswitch_system(snapshot)
    fm = _manager(snapshot)
    unknown = not fm or is_na(get(snapshot, "host.fabric.fabric_manager")) or not isinstance(fm.get("active_state"), str)
    if switch and unknown:
        why = ("this is an NVSwitch system and nvidia-fabricmanager's state could not be read "
               "here (a container?): check it on the host")
    else:
        why = ("error 802 means the GPUs' fabric is not initialised: on HGX/DGX boards "
               "nvidia-fabricmanager must run at the driver's version; no NVSwitch was seen here, "
               "so check whether this is a partitioned or virtualised NVSwitch system")
    yield Finding(
        id="fabric.cuda-error-802", severity=Severity.ERROR,
        title="CUDA error 802 'system not yet initialized': the GPU fabric is not ready",
        evidence=_evidence(snapshot, explanation=why),
        fix=f"on the host: `systemctl status {UNIT}` (start it, at the driver's exact version); "
            "`nvidia-smi -q | grep -i -A2 fabric` shows each GPU's fabric state",
    )


def _explained(snapshot: dict) -> bool:
    return any(True for _ in fabric_manager(snapshot)) or any(True for _ in fabric_not_initialized(snapshot))


def explains_cuda_unavailable(snapshot: dict) -> bool:
    """A fabric rule names why torch has no CUDA (torch.cuda-unavailable stays quiet)."""
    return _explained(snapshot) or any(True for _ in cuda_error_802(snapshot))
