"""Probe: NVSwitch fabric (HGX/DGX boards) and nvidia-fabricmanager.

On boards whose GPUs talk through NVSwitch, CUDA does not start until nvidia-fabricmanager
(same version as the driver) has configured the fabric: until then cudaGetDeviceCount fails
with error 802 "system not yet initialized" (NVIDIA Fabric Manager User Guide). Shape
(``host.fabric``)::

    {nvswitches: [pci address, ...],        # NVIDIA (0x10de) PCI functions of class 0x0680
     nvswitch_dev_nodes: int,               # /dev/nvidia-nvswitch<N>
     fabric_manager: {installed, active_state, sub_state, version} | na(why)}

NVSwitch detection follows leptonai/gpud fabric-manager/detect_nvswitch.go (lspci: NVIDIA
"Bridge" functions) and node-health-anchors.md §4.1 item 4 (class 0x0680, which
probes/host.py deliberately skips as not a GPU). The fabric manager is only asked about on a
machine with NVSwitches (no subprocess elsewhere: doctor's start-up time).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

from envcheck.snapshot import na

NVIDIA_PCI_VENDOR = "0x10de"
NVSWITCH_CLASS_PREFIX = "0x0680"  # PCI class 06 (bridge), subclass 80 (other)
UNIT = "nvidia-fabricmanager"
TIMEOUT_S = 3.0

# argv -> (exit status, stdout, stderr); None when the program is not installed
Runner = Callable[[list], "tuple[int, str, str] | None"]


def probe(root: str | Path = "/", run: Runner | None = None) -> dict:
    """``root``: filesystem root (tests pass a fixture sysfs tree); ``run``: runs a command
    (tests pass canned systemctl / nv-fabricmanager answers; default: subprocess, only for the
    real root)."""
    root = Path(root)
    if run is None:
        run = _run if str(root) == "/" else (lambda argv: None)
    switches = nvswitches(root)
    nodes = _dev_nodes(root)
    if not switches and not nodes:
        manager = na("not checked: no NVSwitch on this machine")
    else:
        manager = fabric_manager(run)
    return {"nvswitches": switches, "nvswitch_dev_nodes": nodes, "fabric_manager": manager}


def nvswitches(root: Path) -> list[str]:
    base = root / "sys" / "bus" / "pci" / "devices"
    if not base.is_dir():
        return []
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: p.name):
        try:
            if (dev / "vendor").read_text().strip().lower() != NVIDIA_PCI_VENDOR:
                continue
            if not (dev / "class").read_text().strip().lower().startswith(NVSWITCH_CLASS_PREFIX):
                continue
        except OSError:
            continue
        out.append(dev.name)
    return out


def _dev_nodes(root: Path) -> int:
    try:
        return sum(1 for p in (root / "dev").iterdir()
                   if re.fullmatch(r"nvidia-nvswitch\d+", p.name))
    except OSError:
        return 0


def fabric_manager(run: Runner) -> dict:
    """Unit state from ``systemctl show`` and version from ``nv-fabricmanager --version``."""
    out: dict = {"installed": None, "active_state": None, "sub_state": None, "version": None}
    shown = run(["systemctl", "show", UNIT, "-p", "LoadState,ActiveState,SubState"])
    if shown is None:
        out["active_state"] = na("systemctl is not available (a container, or not systemd)")
        out["sub_state"] = out["active_state"]
    else:
        rc, text, err = shown
        props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if rc != 0 or "ActiveState" not in props:
            why = (err.strip().splitlines() or [f"exit status {rc}"])[-1][:200]
            out["active_state"] = out["sub_state"] = na(f"systemctl show {UNIT} failed: {why}")
        else:
            out["installed"] = props.get("LoadState") != "not-found"
            out["active_state"] = props.get("ActiveState")
            out["sub_state"] = props.get("SubState")
    version = run(["nv-fabricmanager", "--version"])
    if version is None:
        packaged = _package_version(run)
        if packaged is not None:
            out["version"], out["installed"] = packaged, True
            return out
        out["version"] = na("nv-fabricmanager is not installed (or not on PATH)")
        if out["installed"] is None:
            out["installed"] = False if shown is not None else na("cannot tell without systemctl")
    else:
        rc, text, err = version
        # "Fabric Manager version is : 550.90.07"
        m = re.search(r"version[^0-9]*(\d+\.\d+(?:\.\d+)?)", text + err, re.IGNORECASE)
        out["version"] = m.group(1) if m else na(f"no version in `nv-fabricmanager --version` (exit {rc})")
        out["installed"] = True
    return out


def _package_version(run: Runner) -> str | None:
    """The version of an installed nvidia-fabricmanager package (Debian/Ubuntu names it
    nvidia-fabricmanager-<branch>, e.g. version 550.90.07-1), when the binary is not on PATH."""
    answer = run(["dpkg-query", "-W", "-f", "${Status} ${Version}\\n", "nvidia-fabricmanager*"])
    if answer is None or answer[0] != 0:
        return None
    for line in answer[1].splitlines():
        if line.startswith("install ok installed "):
            m = re.match(r"(\d+\.\d+(?:\.\d+)?)", line.rsplit(" ", 1)[-1])
            if m:
                return m.group(1)
    return None


def _run(argv: list) -> tuple[int, str, str] | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    from envcheck import proc  # the one launcher (own session, tree killed, deadline)

    code, out, err = proc.run([exe, *argv[1:]], TIMEOUT_S, limit=65536)
    if code == 124:
        return (124, "", f"no answer within {TIMEOUT_S:g} s")
    return code, out, err[-4096:]
