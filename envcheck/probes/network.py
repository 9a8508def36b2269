"""Probe: the node's fabric as the kernel shows it (issue 14). sysfs and procfs only: no
ibstat, lspci or setpci needed, so it runs in any container that sees /sys.

Section shape (``network``; see tests/fixtures/snapshots/example_8xh100.json)::

    rdma_devices: [{name, pci_address, pci_path[], numa_node, pcie{speed, width, max_speed, max_width},
                    netdevs[], ports[{port, state, phys_state, rate, rate_gbps, link_layer,
                                      counters{link_downed, ...}, gids[{index, type}]}]}]
    interfaces:   [{name, operstate, pci_address}]          # /sys/class/net
    peermem:      {module, memory_peers[]}                  # GPUDirect RDMA
    iommu:        {cmdline{...}, units[], groups}           # kernel parameters, /sys/class/iommu
    gpus:         [{address, numa_node, iommu_group_type, bridges[{address, acs_ctrl, acs_redirect}]}]
    nvidia_open_modules: bool                               # /proc/driver/nvidia/version

Sources for the files read:
- /sys/class/infiniband/<hca>/ports/<n>/{state, phys_state, rate, link_layer, counters/*,
  gids/*, gid_attrs/types/*}: Linux Documentation/ABI/stable/sysfs-class-infiniband
  (drivers/infiniband/core/sysfs.c writes "4: ACTIVE", "5: LinkUp", "400 Gb/sec (4X NDR)").
- /sys/bus/pci/devices/<bdf>/{numa_node, current_link_speed, current_link_width,
  max_link_speed, max_link_width, config, iommu_group/type}: Documentation/ABI/testing/
  sysfs-bus-pci and sysfs-kernel-iommu_groups ("type": identity = passthrough, DMA/DMA-FQ =
  translated).
- /sys/kernel/mm/memory_peers/<client>/version: the peer-memory registration that NCCL's IB
  transport tests for GPUDirect RDMA (NVIDIA/nccl#1676, #1939; nv_mem and nv_mem_nc are
  nvidia_peermem's clients).
- ACS: PCIe extended capability 0x000D, control register at +6 (Linux
  include/uapi/linux/pci_regs.h PCI_EXT_CAP_ID_ACS, PCI_ACS_CTRL, PCI_ACS_RR/CR/EC); NCCL's
  troubleshooting guide ("PCI Access Control Services (ACS)",
  https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html) explains why
  redirection hurts GPU peer-to-peer. The kernel gives the extended config space (offset
  >= 256) to root only; other users read 64 bytes, so ACS is then na() with that reason.

Every function takes ``root`` (the filesystem root) so tests point it at fixture trees
(tests/fixtures/sysfs_network.py); any failure is ``na("why")`` for that fact only.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

# one fact's reader -> its value or na(why), and a path under the probe's root: host.py's helpers
from envcheck.probes.host import _field
from envcheck.probes.host import _path as _p
from envcheck.snapshot import na

NVIDIA_PCI_VENDOR = "0x10de"
DISPLAY_CLASS_PREFIX = "0x03"
# Error counters of /sys/class/infiniband/*/ports/*/counters (IBTA PortCounters, as named by
# the kernel): link_downed counts links lost (flaps), the others bit errors and recoveries.
COUNTERS = ("link_downed", "link_error_recovery", "symbol_error", "port_rcv_errors",
            "port_rcv_remote_physical_errors", "local_link_integrity_errors",
            "excessive_buffer_overrun_errors", "port_xmit_discards")
PEERMEM_MODULES = ("nvidia_peermem", "nv_peer_mem")
IOMMU_PARAMS = ("intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict")
ACS_CAP_ID = 0x000D
# PCI_ACS_RR (P2P Request Redirect), PCI_ACS_CR (P2P Completion Redirect), PCI_ACS_EC (P2P
# Egress Control): with these set a switch sends peer-to-peer traffic up to the root complex.
ACS_REDIRECT_BITS = {"ReqRedir": 0x0004, "CmpltRedir": 0x0008, "EgressCtrl": 0x0020}
MAX_GIDS = 256      # gid_tbl_len on ConnectX; a bound on what is read per port
MAX_INTERFACES = 256
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")




def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _int(path: Path) -> Any:
    text = _read(path)
    try:
        return int(text, 0)
    except ValueError:
        return na(f"not a number in {path.name}: {text[:40]!r}")


def _state_name(text: str) -> str:
    """'4: ACTIVE' -> 'ACTIVE'; '5: LinkUp' -> 'LinkUp' (sysfs.c prints '<code>: <name>')."""
    return text.split(":", 1)[1].strip() if ":" in text else text.strip()


def rate_gbps(text: str) -> float | None:
    """'400 Gb/sec (4X NDR)' -> 400.0; '2.5 Gb/sec (1X SDR)' -> 2.5; None when unparseable."""
    m = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)\s*Gb/sec", text)
    return float(m.group(1)) if m else None


def pci_address_of(dev: Path) -> str | None:
    """The PCI address a sysfs device sits at: the last BDF component of its resolved path."""
    try:
        parts = dev.resolve().parts
    except OSError:
        return None
    bdfs = [p for p in parts if _BDF.match(p)]
    return bdfs[-1] if bdfs else None


def pci_link(root: str | os.PathLike, address: str) -> dict:
    d = _p(root, f"/sys/bus/pci/devices/{address}")
    out = {}
    for key, name in (("speed", "current_link_speed"), ("width", "current_link_width"),
                      ("max_speed", "max_link_speed"), ("max_width", "max_link_width")):
        out[key] = _field(lambda n=name: _read(d / n))
    for key in ("width", "max_width"):
        if isinstance(out[key], str):
            out[key] = int(out[key]) if out[key].isdigit() else out[key]
    return out


def numa_node(root: str | os.PathLike, address: str) -> Any:
    return _field(lambda: _int(_p(root, f"/sys/bus/pci/devices/{address}/numa_node")))


def _port(port_dir: Path) -> dict:
    rate = _field(lambda: _read(port_dir / "rate"))
    link_layer = _field(lambda: _read(port_dir / "link_layer"))
    out: dict[str, Any] = {
        "port": int(port_dir.name) if port_dir.name.isdigit() else port_dir.name,
        "state": _field(lambda: _state_name(_read(port_dir / "state"))),
        "phys_state": _field(lambda: _state_name(_read(port_dir / "phys_state"))),
        "rate": rate,
        "rate_gbps": (rate_gbps(rate) if isinstance(rate, str) else None)
        if not isinstance(rate, dict) else rate,
        "link_layer": link_layer,
    }

    def counters() -> dict:
        cdir = port_dir / "counters"
        if not cdir.is_dir():
            raise FileNotFoundError(2, "no counters directory", str(cdir))
        return {c: _field(lambda c=c: _int(cdir / c)) for c in COUNTERS if (cdir / c).exists()}

    out["counters"] = _field(counters)
    out["gids"] = _field(lambda: gids(port_dir)) if link_layer == "Ethernet" else \
        na("GID index applies to RoCE (Ethernet link layer) ports only")
    return out


def gids(port_dir: Path) -> list[dict]:
    """Non-zero GID table entries of a RoCE port: [{index, type}] ("RoCE v2", "IB/RoCE v1").
    The GID values themselves (IP addresses) are not recorded."""
    gdir = port_dir / "gids"
    if not gdir.is_dir():
        raise FileNotFoundError(2, "no gids directory", str(gdir))
    out = []
    names = sorted((n for n in os.listdir(gdir) if n.isdigit()), key=int)[:MAX_GIDS]
    for name in names:
        try:
            gid = _read(gdir / name)
        except OSError:
            continue  # unpopulated entries may refuse reads (EINVAL)
        if not gid or set(gid.replace(":", "")) <= {"0"}:
            continue
        try:
            gtype = _read(port_dir / "gid_attrs" / "types" / name)
        except OSError:
            gtype = None
        out.append({"index": int(name), "type": gtype})
    return out


def rdma_devices(root: str | os.PathLike = "/") -> Any:
    base = _p(root, "/sys/class/infiniband")
    if not base.is_dir():
        return na("no /sys/class/infiniband: no RDMA (InfiniBand/RoCE) device or driver")
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: p.name):
        address = pci_address_of(dev / "device") if (dev / "device").exists() else None
        entry: dict[str, Any] = {"name": dev.name, "pci_address": address}
        # root port ... device: which PCIe switch the NIC shares with a GPU (GPUDirect RDMA path)
        entry["pci_path"] = _field(lambda a=address: bridges_above(root, a) + [a]) if address else []
        entry["numa_node"] = numa_node(root, address) if address else na("no PCI device")
        entry["pcie"] = pci_link(root, address) if address else na("no PCI device")
        entry["netdevs"] = _field(lambda d=dev: sorted(os.listdir(d / "device" / "net"))
                                  if (d / "device" / "net").is_dir() else [])
        pdir = dev / "ports"
        entry["ports"] = _field(lambda p=pdir: [_port(x) for x in sorted(
            p.iterdir(), key=lambda x: int(x.name) if x.name.isdigit() else 0)])
        out.append(entry)
    return out


def interfaces(root: str | os.PathLike = "/") -> Any:
    base = _p(root, "/sys/class/net")
    if not base.is_dir():
        return na("no /sys/class/net")
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: p.name)[:MAX_INTERFACES]:
        if not (dev / "operstate").exists():
            continue  # bonding_masters and other plain files
        out.append({
            "name": dev.name,
            "operstate": _field(lambda d=dev: _read(d / "operstate")),
            "pci_address": pci_address_of(dev / "device") if (dev / "device").exists() else None,
        })
    return out


def loaded_modules(root: str | os.PathLike = "/") -> set[str]:
    mods = set()
    proc = _p(root, "/proc/modules")
    if proc.is_file():
        mods.update(line.split(" ", 1)[0] for line in _read(proc).splitlines() if line)
    return mods


def peermem(root: str | os.PathLike = "/") -> dict:
    """Which GPUDirect RDMA peer-memory module is loaded, and which peer-memory clients are
    registered with the RDMA core (/sys/kernel/mm/memory_peers/<client>/version)."""
    mods = loaded_modules(root)
    module = next((m for m in PEERMEM_MODULES
                   if m in mods or _p(root, f"/sys/module/{m}").is_dir()), None)

    def peers() -> list[str]:
        base = _p(root, "/sys/kernel/mm/memory_peers")
        if not base.is_dir():
            return []
        return sorted(d.name for d in base.iterdir() if (d / "version").exists())

    return {"module": module, "memory_peers": _field(peers)}


def parse_cmdline(text: str) -> dict:
    """The IOMMU-related kernel parameters: {name: value} (value "" for a bare flag)."""
    out: dict[str, str] = {}
    for tok in text.split():
        key, _, value = tok.partition("=")
        if key in IOMMU_PARAMS:
            out[key] = value
    return out


def iommu(root: str | os.PathLike = "/") -> dict:
    def units() -> list[str]:
        base = _p(root, "/sys/class/iommu")
        return sorted(os.listdir(base)) if base.is_dir() else []

    def groups() -> int:
        base = _p(root, "/sys/kernel/iommu_groups")
        return len(os.listdir(base)) if base.is_dir() else 0

    return {"cmdline": _field(lambda: parse_cmdline(_read(_p(root, "/proc/cmdline")))),
            "units": _field(units), "groups": _field(groups)}


def acs_control(config: bytes) -> Any:
    """The ACS control register from a PCI config-space dump, walking the extended capability
    list from offset 0x100 (header: id bits 0-15, next offset bits 20-31). None when the device
    has no ACS capability; na() when the extended space is not in ``config``."""
    if len(config) < 0x104:
        return na("extended PCI config space not readable (the kernel shows it to root only)")
    offset, seen = 0x100, 0
    while offset and seen < 256 and offset + 8 <= len(config):
        header = struct.unpack_from("<I", config, offset)[0]
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == ACS_CAP_ID:
            return struct.unpack_from("<H", config, offset + 6)[0]
        offset = (header >> 20) & 0xFFC
        seen += 1
    return None


def bridges_above(root: str | os.PathLike, address: str) -> list[str]:
    """PCI addresses between the root complex and the device (nearest last)."""
    dev = _p(root, f"/sys/bus/pci/devices/{address}")
    parts = [p for p in dev.resolve().parts if _BDF.match(p)]
    return parts[:-1]


def _bridge(root: str | os.PathLike, address: str) -> dict:
    def ctrl() -> Any:
        data = _p(root, f"/sys/bus/pci/devices/{address}/config").read_bytes()
        return acs_control(data)

    value = _field(ctrl)
    redirect = ([n for n, bit in ACS_REDIRECT_BITS.items() if value & bit]
                if isinstance(value, int) else value if isinstance(value, dict) else [])
    return {"address": address, "acs_ctrl": value, "acs_redirect": redirect}


def gpus(root: str | os.PathLike = "/") -> Any:
    base = _p(root, "/sys/bus/pci/devices")
    if not base.is_dir():
        return na("no /sys/bus/pci/devices")
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: p.name):
        try:
            if _read(dev / "vendor").lower() != NVIDIA_PCI_VENDOR or \
                    not _read(dev / "class").lower().startswith(DISPLAY_CLASS_PREFIX):
                continue
        except OSError:
            continue
        addr = dev.name
        group_type = _field(lambda d=dev: _read(d / "iommu_group" / "type")
                            if (d / "iommu_group").exists() else None)
        out.append({
            "address": addr,
            "numa_node": numa_node(root, addr),
            "iommu_group_type": group_type,
            "bridges": _field(lambda a=addr: [_bridge(root, b) for b in bridges_above(root, a)]),
        })
    return out


def nvidia_open_modules(root: str | os.PathLike = "/") -> Any:
    """True when the loaded driver is NVIDIA's open kernel modules (its version line says
    "Open Kernel Module"): with them GPUDirect RDMA can also go through DMA-BUF."""
    p = _p(root, "/proc/driver/nvidia/version")
    if not p.is_file():
        return na("no /proc/driver/nvidia/version (NVIDIA driver not loaded)")
    return "open kernel module" in _read(p).lower()


def probe(root: str | os.PathLike = "/") -> dict:
    return {
        "rdma_devices": _field(lambda: rdma_devices(root)),
        "interfaces": _field(lambda: interfaces(root)),
        "peermem": _field(lambda: peermem(root)),
        "iommu": _field(lambda: iommu(root)),
        "gpus": _field(lambda: gpus(root)),
        "nvidia_open_modules": _field(lambda: nvidia_open_modules(root)),
    }
