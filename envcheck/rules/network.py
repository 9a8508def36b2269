"""Rules about the node's fabric (issue 14): RDMA ports and HCAs against the node profile,
link error counters, GPUDirect RDMA, NCCL's network variables, GPU peer-to-peer blockers
(ACS, IOMMU) and GPU/NIC NUMA placement. Facts come from the ``network`` section
(envcheck/probes/network.py); expectations and thresholds from recipes/network_profiles.json.

Every id starts with ``net.`` so ``doctor --scope node`` includes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import rule
from envcheck.rules._util import as_dict, dicts, emits, gpus, num, nvml_status
from envcheck.snapshot import get, is_na

_NET = recipes.load("network_profiles")
_SPECS = recipes.load("gpu_specs")
NCCL_ENV_DOCS = "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html"
NCCL_TROUBLESHOOTING = "https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html"
# operstate values (Documentation/ABI/testing/sysfs-class-net) under which a link carries no
# traffic; "unknown" is what lo and many virtual/IPoIB devices report while working.
DOWN_OPERSTATES = {"down", "lowerlayerdown", "notpresent", "dormant", "testing"}


# ---------------------------------------------------------------------------- node profile


def node_profile_id(snapshot: dict) -> str | None:
    """The node-profile id (recipes/node_profiles.json, issue 13) this node is judged against.

    Repoint here: issue 13's ``envcheck.rules.node.node_profile(snapshot)`` (doctor
    --node-profile ID|none, else detected from NVML's GPU names) is used when present; without
    it the profile is detected the same way from this file's ``gpu`` ids."""
    try:
        from envcheck.rules.node import node_profile  # type: ignore[import-not-found]
    except ImportError:
        return _detect_profile(snapshot)
    return node_profile(snapshot)[0]


def _detect_profile(snapshot: dict) -> str | None:
    ids = set()
    for g in gpus(snapshot):
        name = g.get("name")
        if not isinstance(name, str):
            continue
        spec = next((s.get("id") for s in _SPECS.get("gpus", [])
                     if any(re.fullmatch(p, name.strip(), re.IGNORECASE) for p in s.get("match", []))),
                    None)
        ids.add(spec)
    if len(ids) != 1:
        return None
    spec_id = ids.pop()
    return next((pid for pid, p in as_dict(_NET.get("profiles")).items() if p.get("gpu") == spec_id), None)


def network_profile(snapshot: dict) -> tuple[str | None, dict]:
    pid = node_profile_id(snapshot)
    prof = as_dict(as_dict(_NET.get("profiles")).get(pid)) if pid else {}
    return (pid, prof) if prof else (None, {})


# ---------------------------------------------------------------------------- facts


@dataclass
class RdmaPort:
    device: str
    port: int | str
    state: str | None
    phys_state: str | None
    rate_gbps: float | None
    link_layer: str | None
    counters: dict
    gids: list | None
    numa_node: int | None

    @property
    def label(self) -> str:
        return f"{self.device}:{self.port}"

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def rdma_devices(snapshot: dict) -> list[dict] | None:
    devs = get(snapshot, "network.rdma_devices")
    return dicts(devs) if isinstance(devs, list) else None


def rdma_ports(snapshot: dict) -> list[RdmaPort]:
    out = []
    for dev in rdma_devices(snapshot) or []:
        name = _s(dev.get("name")) or "?"
        numa = num(dev.get("numa_node"))
        for p in dicts(dev.get("ports")):
            gid_list = p.get("gids")
            out.append(RdmaPort(
                device=name, port=p.get("port") if isinstance(p.get("port"), (int, str)) else "?",
                state=_s(p.get("state")), phys_state=_s(p.get("phys_state")),
                rate_gbps=num(p.get("rate_gbps")), link_layer=_s(p.get("link_layer")),
                counters=as_dict(p.get("counters")),
                gids=dicts(gid_list) if isinstance(gid_list, list) else None,
                numa_node=int(numa) if numa is not None else None))
    return out


def _port_slots(snapshot: dict) -> float:
    """Ports present, counting an entry whose facts are unreadable as present (and a device
    whose port list is unreadable as uncountable: infinity), so a missing fact never reads as
    a missing HCA."""
    devs = get(snapshot, "network.rdma_devices")
    total = 0.0
    for dev in devs if isinstance(devs, list) else []:
        ports = dev.get("ports") if isinstance(dev, dict) and not is_na(dev) else None
        if not isinstance(ports, list):
            return float("inf")
        total += len(ports)
    return total


def interfaces(snapshot: dict) -> list[dict] | None:
    value = get(snapshot, "network.interfaces")
    return [i for i in dicts(value) if isinstance(i.get("name"), str)] if isinstance(value, list) else None


def env_var(snapshot: dict, name: str) -> str | None:
    value = get(snapshot, f"env.vars.{name}")
    return value if isinstance(value, str) else None


def _gpu_count(snapshot: dict) -> int:
    listed = get(snapshot, "network.gpus")
    n = len(dicts(listed)) if isinstance(listed, list) else 0
    return max(n, len(gpus(snapshot)))


# ---------------------------------------------------------------------------- NCCL syntax


@dataclass(frozen=True)
class NcclList:
    """A parsed NCCL interface/HCA list (NCCL_SOCKET_IFNAME, NCCL_IB_HCA).

    NCCL's syntax (NCCL docs "Environment Variables"; src/misc/utils.cc parseStringList /
    matchIfList, src/transport/net_ib.cc): a leading ``^`` excludes what matches; then a
    leading ``=`` makes every entry an exact name instead of a prefix; entries are separated by
    ``,``; an entry may end in ``:<port>`` (HCAs), port -1 (absent) matching any port."""

    exclude: bool
    exact: bool
    entries: tuple[tuple[str, int], ...]  # (name or prefix, port or -1)

    def matches(self, name: str, port: int = -1) -> bool:
        """matchIfList: an empty list matches everything."""
        if not self.entries:
            return True
        return any(self._entry_matches(e, name, port) for e in self.entries)

    def _entry_matches(self, entry: tuple[str, int], name: str, port: int) -> bool:
        ref, eport = entry
        name_ok = name == ref if self.exact else name.startswith(ref)
        port_ok = port == -1 or eport == -1 or port == eport
        return name_ok and port_ok

    def selects(self, name: str, port: int = -1) -> bool:
        """What NCCL keeps: ``matches`` XOR exclusion."""
        return self.matches(name, port) != self.exclude

    def unmatched(self, candidates: list[tuple[str, int]]) -> list[str]:
        """Entries that match none of ``candidates`` ((name, port) pairs), as written."""
        out = []
        for e in self.entries:
            if not any(self._entry_matches(e, n, p) for n, p in candidates):
                out.append(e[0] if e[1] == -1 else f"{e[0]}:{e[1]}")
        return out


def parse_nccl_list(value: str) -> NcclList:
    text = value.strip()
    exclude = text.startswith("^")
    if exclude:
        text = text[1:]
    exact = text.startswith("=")
    if exact:
        text = text[1:]
    entries = []
    for item in text.split(","):
        name, _, port = item.strip().partition(":")
        if not name:
            continue
        entries.append((name, int(port) if port.strip().lstrip("-").isdigit() else -1))
    return NcclList(exclude=exclude, exact=exact, entries=tuple(entries))


# ---------------------------------------------------------------------------- ports and HCAs


def _rate(v: float | None) -> str:
    return "?" if v is None else f"{v:g} Gb/s"


@rule
@emits("net.hca-missing")
def hca_missing(snapshot: dict):
    """Fewer RDMA ports than the node profile expects (AzNHC check_hw_ib on mlx5_ib0..7, gpud
    AtLeastPorts 8, GCM check_hca --expected-count: node-health-anchors.md A11, U6, G8). A node
    with no RDMA device at all is not judged: the same GPUs ship in cloud nodes whose fabric is
    not InfiniBand/RoCE (recipes/network_profiles.json _about)."""
    pid, prof = network_profile(snapshot)
    want = num(prof.get("rdma_ports"))
    ports = rdma_ports(snapshot)
    if want is None or not ports or _port_slots(snapshot) >= want:
        return
    yield Finding(
        id="net.hca-missing", severity=Severity.ERROR,
        title=f"{len(ports)} RDMA port(s) found; node profile {pid} expects {int(want)}",
        evidence={"profile": pid, "expected_ports": int(want), "found": [p.label for p in ports],
                  "source": prof.get("source")},
        detail="An HCA that is absent from /sys/class/infiniband is dead, unseated, or its driver "
               "(mlx5_core/mlx5_ib) did not bind; NCCL then runs with fewer rails.",
        fix="check `lspci -d 15b3:` for the missing adapter and `dmesg | grep mlx5` for a driver error; "
            "reseat or replace it. If this node has another fabric, give `--node-profile none`.",
    )


@rule
@emits("net.rdma-port-down")
def rdma_port_down(snapshot: dict):
    """RDMA ports that are not ACTIVE. With a node profile every missing ACTIVE port is an error
    (AzNHC/NHC check_hw_ib requires an active link: A11, H3). Without one only InfiniBand ports
    are judged: a port whose physical link is up but whose state is INIT/ARMED has no subnet
    manager configuring it (warn); an IB port without a link may be unused (info). Ethernet
    (RoCE) ports without a profile are not judged: an unused port of a dual-port NIC is normal."""
    pid, prof = network_profile(snapshot)
    ports = rdma_ports(snapshot)
    down = [p for p in ports if p.state and not p.active]
    if not down:
        return
    want = num(prof.get("rdma_ports"))
    active = sum(1 for p in ports if p.active)
    if want is not None:
        unknown = _port_slots(snapshot) - len([p for p in ports if p.state])
        if active + unknown >= want:
            return
        groups = [(Severity.ERROR, down)]
    else:
        ib = [p for p in down if p.link_layer == "InfiniBand"]
        groups = [(Severity.WARN, [p for p in ib if p.phys_state == "LinkUp"]),
                  (Severity.INFO, [p for p in ib if p.phys_state != "LinkUp"])]
    for severity, judged in groups:
        if not judged:
            continue
        no_sm = [p.label for p in judged if p.phys_state == "LinkUp"]
        fix = ("check the cable and the switch port of each listed port (`ibstat`, `mlxlink -d <hca>`); "
               "a port stuck in Polling has no link partner, Disabled was turned off")
        if no_sm:
            fix = (f"{', '.join(no_sm)}: the physical link is up but no subnet manager configured it: start "
                   "opensm or the fabric's UFM/subnet manager; " + fix)
        elif severity is Severity.INFO:
            fix = "nothing to do if the port is unused; otherwise " + fix
        yield Finding(
            id="net.rdma-port-down", severity=severity,
            title=f"{len(judged)} RDMA port(s) not ACTIVE: " + ", ".join(p.label for p in judged[:8]),
            evidence={"ports": {p.label: f"{p.state} ({p.phys_state})" for p in judged},
                      "active_ports": active, "profile": pid,
                      "expected_ports": int(want) if want is not None else None},
            fix=fix,
        )


@rule
@emits("net.rdma-rate-low")
def rdma_rate_low(snapshot: dict):
    """ACTIVE ports below the profile's rate (AzNHC check_hw_ib 400/200, gpud AtLeastRate:
    A11, U6). Without a profile, InfiniBand ports slower than the fastest InfiniBand port of the
    same node (a cable or transceiver that trained down)."""
    pid, prof = network_profile(snapshot)
    want = num(prof.get("rate_gbps"))
    active = [p for p in rdma_ports(snapshot) if p.active and p.rate_gbps is not None]
    if want is not None:
        # The profile's N fastest ports are the compute rails; extra (storage, frontend) NICs
        # beyond them are not judged.
        n = int(num(prof.get("rdma_ports")) or len(active))
        rails = sorted(active, key=lambda p: -(p.rate_gbps or 0))[:n]
        slow = [p for p in rails if p.rate_gbps < want]
        basis = f"node profile {pid}"
    else:
        ib = [p for p in active if p.link_layer == "InfiniBand"]
        want = max((p.rate_gbps for p in ib), default=None)
        slow = [p for p in ib if want is not None and p.rate_gbps < want]
        basis = "the fastest InfiniBand port of this node"
    if not slow:
        return
    yield Finding(
        id="net.rdma-rate-low", severity=Severity.WARN,
        title=f"{len(slow)} RDMA port(s) below {_rate(want)}: "
              + ", ".join(f"{p.label} at {_rate(p.rate_gbps)}" for p in slow[:8]),
        evidence={"ports": {p.label: p.rate_gbps for p in slow}, "expected_gbps": want, "basis": basis,
                  "source": prof.get("source")},
        detail="A link that trained below its rate (cable, transceiver, switch port, or a width "
               "down from 4X) slows every collective that crosses it to its speed.",
        fix="inspect the listed ports with `ibstat` / `mlxlink -d <hca> -p 1` (speed, width, FEC, "
            "cable info); reseat or replace the cable or transceiver",
    )


@rule
@emits("net.rdma-link-errors")
def rdma_link_errors(snapshot: dict):
    """Port error counters at or above recipes/network_profiles.json counter_thresholds
    (link_downed >= 1 is a flap: GCM G9; bit errors cf. DCGM D8). sysfs counters are totals
    since the last reset, so the finding asks for a reset to tell old from growing."""
    limits = {k: v for k, v in as_dict(_NET.get("counter_thresholds")).items() if num(v) is not None}
    bad: dict[str, dict[str, int]] = {}
    for p in rdma_ports(snapshot):
        over = {k: int(v) for k, v in p.counters.items() if k in limits and num(v) is not None
                and v >= limits[k]}
        if over:
            bad[p.label] = over
    if not bad:
        return
    yield Finding(
        id="net.rdma-link-errors", severity=Severity.WARN,
        title=f"RDMA link error counters high on {len(bad)} port(s): " + ", ".join(list(bad)[:8]),
        evidence={"counters": bad, "thresholds": {k: limits[k] for k in sorted(limits)},
                  "note": "totals since the counters were last reset (driver load or perfquery -R)"},
        detail="link_downed counts link losses (flaps); symbol and receive errors point to a bad cable "
               "or transceiver. A flapping link stalls NCCL until it retrains.",
        fix="reset the counters (`perfquery -x -R -C <hca> -P <port>`), run a job, read them again; if they "
            "grow, replace the cable/transceiver of that port and check the switch side",
    )


@rule
@emits("net.hca-pcie-degraded")
def hca_pcie_degraded(snapshot: dict):
    """An RDMA NIC whose PCIe link trained below its maximum width or speed caps that rail
    below line rate (Imbue _DmesgLimitedPcieHealthCheck flags 'PCIe ... limited' on mlx devices:
    node-health-anchors.md I6)."""
    bad = {}
    for dev in rdma_devices(snapshot) or []:
        link = as_dict(dev.get("pcie"))
        width, max_width = num(link.get("width")), num(link.get("max_width"))
        speed, max_speed = _gts(link.get("speed")), _gts(link.get("max_speed"))
        if (width is not None and max_width is not None and width < max_width) or \
                (speed is not None and max_speed is not None and speed < max_speed):
            bad[_s(dev.get("name")) or "?"] = (f"x{link.get('width')} {link.get('speed')} of "
                                               f"x{link.get('max_width')} {link.get('max_speed')}")
    if not bad:
        return
    yield Finding(
        id="net.hca-pcie-degraded", severity=Severity.WARN,
        title=f"RDMA NIC PCIe link below its maximum on {', '.join(bad)}",
        evidence={"links": bad},
        fix="reseat the adapter or its riser; check BIOS PCIe bifurcation/speed settings for that slot",
    )


def _gts(value: Any) -> float | None:
    m = re.match(r"\s*([0-9.]+)\s*GT/s", value) if isinstance(value, str) else None
    return float(m.group(1)) if m else None


# ---------------------------------------------------------------------------- GPUDirect RDMA


@rule
@emits("net.gpudirect-rdma-unavailable")
def gpudirect_rdma_unavailable(snapshot: dict):
    """GPUs and ACTIVE RDMA ports, but no GPUDirect RDMA: nvidia_peermem not loaded, or loaded
    without a peer-memory client registered in /sys/kernel/mm/memory_peers. NCCL then stages
    every inter-node transfer through host memory ("GPU Direct RDMA Disabled for HCA"):
    NVIDIA/nccl#1676 measured 180 -> 10 GB/s; #1939 shows the loaded-but-unregistered case.
    NCCL's troubleshooting guide (GPU-to-NIC communication) asks for `modprobe nvidia-peermem`
    on each boot, or DMA-BUF with the open GPU kernel modules."""
    if _gpu_count(snapshot) == 0 or not any(p.active for p in rdma_ports(snapshot)):
        return
    pm = get(snapshot, "network.peermem")
    if not isinstance(pm, dict) or is_na(pm):
        return
    module = pm.get("module")
    peers = pm.get("memory_peers")
    open_modules = get(snapshot, "network.nvidia_open_modules") is True
    if module and (not isinstance(peers, list) or peers):
        return  # loaded and registered (or the registry is unreadable: cannot tell)
    if not module:
        severity = Severity.INFO if open_modules else Severity.WARN
        title = "GPUDirect RDMA: nvidia_peermem is not loaded"
        detail = ("Without it NCCL cannot register GPU memory with the NICs and copies through host "
                  "memory; inter-node bandwidth drops several-fold."
                  + (" The open GPU kernel modules are loaded, so NCCL may use DMA-BUF instead: "
                     "check for 'DMA-BUF' vs 'GPU Direct RDMA Disabled' in NCCL_DEBUG=INFO output."
                     if open_modules else ""))
        fix = ("`sudo modprobe nvidia-peermem` and make it permanent (`echo nvidia-peermem | sudo tee "
               "/etc/modules-load.d/nvidia-peermem.conf`); on Kubernetes set the GPU Operator's "
               "driver.rdma.enabled=true")
    else:
        severity = Severity.WARN
        title = f"GPUDirect RDMA: {module} is loaded but registered no peer-memory client"
        detail = ("/sys/kernel/mm/memory_peers has no nv_mem entry: the module was built without the "
                  "RDMA stack's peer-memory API (e.g. the GPU driver installed before MLNX_OFED/DOCA), so "
                  "NCCL reports 'GPU Direct RDMA Disabled' (NVIDIA/nccl#1939).")
        fix = ("reinstall or rebuild the NVIDIA driver after MLNX_OFED/DOCA-OFED (so nvidia-peermem is built "
               "against its ib_core), then `sudo rmmod nvidia_peermem && sudo modprobe nvidia-peermem`")
    yield Finding(
        id="net.gpudirect-rdma-unavailable", severity=severity, title=title, detail=detail,
        evidence={"peermem_module": module, "memory_peers": peers,
                  "active_rdma_ports": [p.label for p in rdma_ports(snapshot) if p.active],
                  "nvidia_open_modules": get(snapshot, "network.nvidia_open_modules")},
        fix=fix,
    )


# ---------------------------------------------------------------------------- NCCL variables


def _is_down(iface: dict) -> bool:
    return str(iface.get("operstate") or "").lower() in DOWN_OPERSTATES


@rule
@emits("net.nccl-socket-ifname-invalid")
def nccl_socket_ifname_invalid(snapshot: dict):
    """NCCL_SOCKET_IFNAME naming interfaces that do not exist or are down: NCCL's bootstrap and
    socket transport then find no interface ("no socket interface found") or hang
    (NVIDIA/nccl#1837, #913, #286; node-health-anchors.md §3 row 9). Syntax: parse_nccl_list."""
    value = env_var(snapshot, "NCCL_SOCKET_IFNAME")
    ifaces = interfaces(snapshot)
    if value is None or ifaces is None:
        return
    spec = parse_nccl_list(value)
    names = [i["name"] for i in ifaces]
    selected = [i for i in ifaces if spec.selects(i["name"])]
    usable = [i for i in selected if not _is_down(i)]
    missing = [] if spec.exclude else spec.unmatched([(n, -1) for n in names])
    if usable and not missing:
        return
    if not selected:
        title = (f"NCCL_SOCKET_IFNAME={value} excludes every network interface" if spec.exclude
                 else f"NCCL_SOCKET_IFNAME={value} matches no network interface")
    elif not usable:
        title = f"NCCL_SOCKET_IFNAME={value} selects only interfaces that are down: " + \
            ", ".join(i["name"] for i in selected)
    else:
        title = f"NCCL_SOCKET_IFNAME={value}: {', '.join(missing)} matches no interface"
    yield Finding(
        id="net.nccl-socket-ifname-invalid", severity=Severity.ERROR if not usable else Severity.WARN,
        title=title,
        evidence={"NCCL_SOCKET_IFNAME": value, "interfaces": {i["name"]: i.get("operstate") for i in ifaces},
                  "selected": [i["name"] for i in selected], "unmatched_entries": missing,
                  "syntax": f"{'exclude' if spec.exclude else 'include'}, "
                            f"{'exact names' if spec.exact else 'prefixes'} ({NCCL_ENV_DOCS})"},
        fix="set NCCL_SOCKET_IFNAME to this node's interface(s): prefix (`eth`), exact (`=eth0`), "
            "list (`=eth0,eth1`), exclusion (`^docker,lo`); see `ip -br link`",
    )


@rule
@emits("net.nccl-ib-hca-invalid")
def nccl_ib_hca_invalid(snapshot: dict):
    """NCCL_IB_HCA naming HCAs or ports that do not exist, or selecting only ports that are not
    ACTIVE: NCCL then finds no IB device and falls back to TCP sockets without an error (NCCL
    docs, NCCL_IB_HCA; net_ib.cc keeps only ACTIVE ports)."""
    value = env_var(snapshot, "NCCL_IB_HCA")
    devs = rdma_devices(snapshot)
    if value is None or devs is None:
        return
    if str(env_var(snapshot, "NCCL_IB_DISABLE") or "").strip() == "1":
        return
    spec = parse_nccl_list(value)
    ports = rdma_ports(snapshot)
    cands = [(p.device, p.port if isinstance(p.port, int) else -1) for p in ports]
    selected = [p for p in ports if spec.selects(p.device, p.port if isinstance(p.port, int) else -1)]
    active = [p for p in selected if p.active]
    missing = [] if spec.exclude else spec.unmatched(cands)
    if active and not missing:
        return
    if not selected:
        title = (f"NCCL_IB_HCA={value} excludes every RDMA port" if spec.exclude
                 else f"NCCL_IB_HCA={value} matches no RDMA device/port")
    elif not active:
        title = f"NCCL_IB_HCA={value} selects only ports that are not ACTIVE: " + \
            ", ".join(p.label for p in selected)
    else:
        title = f"NCCL_IB_HCA={value}: {', '.join(missing)} matches no RDMA device/port"
    yield Finding(
        id="net.nccl-ib-hca-invalid", severity=Severity.ERROR if not active else Severity.WARN,
        title=title,
        detail=None if active else "NCCL falls back to its socket transport: inter-node traffic over TCP.",
        evidence={"NCCL_IB_HCA": value, "ports": {p.label: p.state for p in ports},
                  "selected": [p.label for p in selected], "unmatched_entries": missing,
                  "syntax": f"{'exclude' if spec.exclude else 'include'}, "
                            f"{'exact names' if spec.exact else 'prefixes'}, optional :port ({NCCL_ENV_DOCS})"},
        fix="list this node's HCAs with `ls /sys/class/infiniband` (or `ibv_devices`) and set e.g. "
            "`NCCL_IB_HCA==mlx5_0:1,mlx5_1:1` (exact) or `NCCL_IB_HCA=mlx5` (prefix)",
    )


@rule
@emits("net.nccl-ib-gid-index-invalid")
def nccl_ib_gid_index_invalid(snapshot: dict):
    """NCCL_IB_GID_INDEX on RoCE: the index must exist (non-zero GID) on every RoCE port NCCL
    uses, else queue-pair setup fails (ibv_modify_qp). InfiniBand ports ignore it (NCCL docs,
    NCCL_IB_GID_INDEX)."""
    value = env_var(snapshot, "NCCL_IB_GID_INDEX")
    if value is None or rdma_devices(snapshot) is None:
        return
    hca = env_var(snapshot, "NCCL_IB_HCA")
    spec = parse_nccl_list(hca) if hca else parse_nccl_list("")
    roce = [p for p in rdma_ports(snapshot) if p.active and p.link_layer == "Ethernet"
            and spec.selects(p.device, p.port if isinstance(p.port, int) else -1)]
    if not roce:
        return
    try:
        index = int(value.strip(), 0)
    except ValueError:
        index = None
    if index is not None and index < 0:
        return  # negative: NCCL picks the GID itself
    bad = [p for p in roce if p.gids is not None
           and (index is None or index not in {num(g.get("index")) for g in p.gids})]
    if not bad:
        return
    yield Finding(
        id="net.nccl-ib-gid-index-invalid", severity=Severity.ERROR,
        title=(f"NCCL_IB_GID_INDEX={value} is not a number" if index is None else
               f"NCCL_IB_GID_INDEX={index} has no GID on RoCE port(s) " + ", ".join(p.label for p in bad[:8])),
        evidence={"NCCL_IB_GID_INDEX": value,
                  "gids": {p.label: {str(g.get("index")): g.get("type") for g in p.gids or []} for p in bad}},
        fix="pick an index listed for every port (usually the 'RoCE v2' entry holding the IPv4 address: "
            "`show_gids`, or /sys/class/infiniband/<hca>/ports/1/gid_attrs/types/<n>), or unset it",
    )


# ---------------------------------------------------------------------------- P2P and NUMA


def _has_nvlink(snapshot: dict) -> bool | None:
    """True when some GPU has an active NVLink; None when NVML did not answer."""
    if nvml_status(snapshot) != "ok":
        return None
    return any((num(as_dict(g.get("nvlink")).get("up")) or 0) > 0 for g in gpus(snapshot))


@rule
@emits("net.p2p-blocked")
def p2p_blocked(snapshot: dict):
    """Several GPUs, no NVLink, and something that sends PCIe peer-to-peer traffic through the
    root complex: ACS request/completion redirect on a bridge above a GPU, or an IOMMU
    translating the GPUs' DMA (iommu group type DMA/DMA-FQ). NCCL's troubleshooting guide ("PCI
    Access Control Services (ACS)") lists both as causes of poor performance or hangs. With
    NCCL_P2P_DISABLE=1 set the workaround is already in place: info that explains it."""
    net_gpus = dicts(get(snapshot, "network.gpus")) if isinstance(get(snapshot, "network.gpus"), list) else []
    if len(net_gpus) < 2 or _has_nvlink(snapshot) is not False:
        return
    # bridges[0] is the root port: traffic between root ports crosses the root complex anyway,
    # and Linux turns ACS on there whenever an IOMMU driver is active. The switch ports below it
    # are where redirection costs GPU peer-to-peer (and GPU-NIC) traffic its direct path.
    acs = sorted({b.get("address") for g in net_gpus for b in dicts(g.get("bridges"))[1:]
                  if isinstance(b.get("acs_redirect"), list) and b.get("acs_redirect")})
    translated = sorted({g.get("iommu_group_type") for g in net_gpus
                         if g.get("iommu_group_type") in ("DMA", "DMA-FQ")})
    if not acs and not translated:
        return
    workaround = str(env_var(snapshot, "NCCL_P2P_DISABLE") or "").strip() == "1"
    causes, fixes = [], []
    if acs:
        causes.append(f"ACS redirect enabled on {len(acs)} PCIe bridge(s) above the GPUs")
        fixes.append("disable ACS in the BIOS (PCIe ACS / 'IO virtualization' / VT-d settings), or after each "
                     "boot: " + "; ".join(f"`sudo setpci -s {a} ECAP_ACS+0x6.w=0000`" for a in acs[:4])
                     + ("; …" if len(acs) > 4 else ""))
    if translated:
        causes.append(f"the IOMMU translates GPU DMA (iommu group type {', '.join(translated)})")
        fixes.append("boot with `iommu=pt` (add it to GRUB_CMDLINE_LINUX in /etc/default/grub, "
                     "`sudo update-grub`, reboot), or disable the IOMMU in the BIOS if nothing needs it")
    yield Finding(
        id="net.p2p-blocked",
        severity=Severity.INFO if workaround else Severity.WARN,
        title=("GPU peer-to-peer over PCIe is blocked: " + "; ".join(causes)
               + (" (NCCL_P2P_DISABLE=1 works around it)" if workaround else "")),
        detail=("These GPUs have no NVLink, so NCCL's peer-to-peer traffic crosses PCIe; redirected to the "
                "root complex it is slow or hangs. "
                + ("NCCL_P2P_DISABLE=1 avoids the hang by copying through host memory, at a cost in "
                   "bandwidth; fixing the cause lets you remove it." if workaround else "")),
        evidence={"acs_redirect_bridges": acs, "iommu_group_types": translated,
                  "iommu_cmdline": get(snapshot, "network.iommu.cmdline"),
                  "NCCL_P2P_DISABLE": env_var(snapshot, "NCCL_P2P_DISABLE"), "source": NCCL_TROUBLESHOOTING},
        fix="; ".join(fixes) + "; then check with `nvidia-smi topo -p2p r`",
    )


@rule
@emits("net.gdr-acs-redirect")
def gdr_acs_redirect(snapshot: dict):
    """A GPU and an RDMA NIC behind the same PCIe switch, with ACS redirect on a switch port
    between them: GPUDirect RDMA reads and writes then detour through the root complex instead
    of staying in the switch (NCCL troubleshooting guide, "PCI Access Control Services (ACS)":
    ACS redirects point-to-point traffic to the CPU root complex, causing a significant
    performance reduction or a hang). Judged on NVLink boards too: NVLink carries GPU-to-GPU
    traffic, not GPU-to-NIC."""
    net_gpus = dicts(get(snapshot, "network.gpus")) if isinstance(get(snapshot, "network.gpus"), list) else []
    nics = [(d["name"], [a for a in d["pci_path"] if isinstance(a, str)])
            for d in rdma_devices(snapshot) or []
            if isinstance(d.get("pci_path"), list) and isinstance(d.get("name"), str)]
    active = {p.device for p in rdma_ports(snapshot) if p.active}
    pairs, ports = [], set()
    for g in net_gpus:
        bridges = dicts(g.get("bridges"))
        path = [b.get("address") for b in bridges]
        for name, npath in nics:
            if name not in active:
                continue
            shared = 0
            while shared < min(len(path), len(npath)) and path[shared] == npath[shared]:
                shared += 1
            if shared < 2:  # only the root port (or nothing) in common: not the same switch
                continue
            # the switch ports below the common upstream port, on the GPU's side
            redirect = [b.get("address") for b in bridges[shared:]
                        if isinstance(b.get("acs_redirect"), list) and b.get("acs_redirect")]
            if redirect:
                pairs.append(f"{g.get('address')} <-> {name}")
                ports.update(redirect)
    if not pairs:
        return
    bdfs = sorted(ports)
    yield Finding(
        id="net.gdr-acs-redirect", severity=Severity.WARN,
        title=f"ACS redirect on the PCIe switch ports between {len(pairs)} GPU/NIC pair(s): "
              "GPUDirect RDMA detours through the CPU",
        evidence={"pairs": pairs[:16], "acs_redirect_ports": bdfs, "source": NCCL_TROUBLESHOOTING},
        fix="disable ACS in the BIOS (PCIe ACS / 'IO virtualization' / VT-d settings), or after each boot: "
            + "; ".join(f"`sudo setpci -s {a} ECAP_ACS+0x6.w=0000`" for a in bdfs[:4])
            + ("; …" if len(bdfs) > 4 else "") + " (on a bare-metal node with an IOMMU, boot with `iommu=pt`)",
    )


@rule
@emits("net.gpu-nic-numa-mismatch")
def gpu_nic_numa_mismatch(snapshot: dict):
    """GPUs on a NUMA node with no active RDMA NIC: their inter-node traffic crosses the CPU
    interconnect (AzNHC check_hw_topology and sichek pcie_topo compare GPU/NIC NUMA placement:
    node-health-anchors.md A10, K5). Info: often the board's design, sometimes a NIC in the
    wrong slot."""
    nic_numa = {p.numa_node for p in rdma_ports(snapshot) if p.active and p.numa_node is not None
                and p.numa_node >= 0}
    if not nic_numa:
        return
    bad = {}
    for g in dicts(get(snapshot, "network.gpus")) if isinstance(get(snapshot, "network.gpus"), list) else []:
        node = num(g.get("numa_node"))
        if node is not None and node >= 0 and node not in nic_numa:
            bad[str(g.get("address"))] = int(node)
    if not bad:
        return
    yield Finding(
        id="net.gpu-nic-numa-mismatch", severity=Severity.INFO,
        title=f"{len(bad)} GPU(s) on a NUMA node without an active RDMA NIC",
        evidence={"gpus": bad, "nic_numa_nodes": sorted(nic_numa)},
        fix="check `nvidia-smi topo -m`; if the board intends a NIC per GPU pair, move the NIC to a slot on "
            "that NUMA node; bind ranks to the GPU's NUMA node (`numactl --cpunodebind`)",
    )
