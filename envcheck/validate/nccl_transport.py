"""Which transport NCCL used, read from its own debug output (issue 14 point 3). Pure.

Run the collective with ``NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET`` and pass the captured
lines to :func:`parse`. NCCL prints (src/transport/net_ib.cc, net_socket.cc, init.cc; the
forms below are quoted in NVIDIA/nccl#1537, #988, #1676):

    NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.0.1.2<0>
    NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE [RO]; OOB primaryip:10.10.10.10<0>
    NET/IB : Using [0]mlx5_0:1/IB/SHARP ...              (the SHARP plugin, "IBext")
    NET/Socket : Using [0]eth0:10.0.0.1<0> [1]eth1:10.0.1.1<0>
    Using network IB | Socket | IBext | <plugin name>
    NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0'
    NET/IB : GPU Direct RDMA (nvidia-peermem) enabled for HCA 0 'mlx5_0'
    Channel 00/0 : 0[0] -> 8[0] [send] via NET/IB/0/GDRDMA

A socket transport on a node whose RDMA ports are ACTIVE (snapshot ``network.rdma_devices``)
is the silent fallback the multi-node report should show next to the finding that explains it
(net.nccl-ib-hca-invalid, net.gpudirect-rdma-unavailable, NCCL_IB_DISABLE=1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NETWORK = re.compile(r"Using network (\S+(?: \S+)*?)\s*$")
_IB_USING = re.compile(r"NET/IB\w* : Using (.*)")
_IB_DEV = re.compile(r"\[(\d+)\]([\w.-]+):(\d+)/(IB|RoCE)")
_SOCK_USING = re.compile(r"NET/Socket : Using (.*)")
_SOCK_DEV = re.compile(r"\[(\d+)\]([\w.@-]+):")
_GDR_OFF = re.compile(r"GPU Direct RDMA Disabled for HCA \d+ '([^']+)'")
_GDR_ON = re.compile(r"GPU Direct RDMA .*enabled for HCA \d+ '([^']+)'", re.IGNORECASE)
_VIA = re.compile(r"via NET/(\w+)/\d+(/GDRDMA)?")
_NO_IB = re.compile(r"NET/IB : No device found")


def parse(output: str | Iterable[str]) -> dict:
    """Summary: {network, transport, devices[{index, name, port, link_layer}], socket_ifaces[],
    gdr (True / False / None), gdr_disabled_hcas[], ib_no_device, channels_via{NET name: count}}.

    ``transport``: "infiniband" | "roce" | "socket" | "plugin" | None (not in the output).
    ``gdr``: True when a channel went through GDRDMA or NCCL said enabled, False when NCCL said
    disabled for every HCA it uses (or channels went over NET without GDRDMA), None when unknown.
    """
    lines = output.splitlines() if isinstance(output, str) else list(output)
    network = None
    devices: list[dict] = []
    socket_ifaces: list[str] = []
    gdr_off: list[str] = []
    gdr_on: list[str] = []
    via: dict[str, int] = {}
    via_gdr = via_plain = 0
    no_ib = False
    for line in lines:
        m = _NETWORK.search(line)
        if m:
            network = m.group(1)
        m = _IB_USING.search(line)
        if m and not devices:
            devices = [{"index": int(i), "name": n, "port": int(p), "link_layer": ll}
                       for i, n, p, ll in _IB_DEV.findall(m.group(1).split(";")[0])]
        m = _SOCK_USING.search(line)
        if m and not socket_ifaces:
            socket_ifaces = [n for _, n in _SOCK_DEV.findall(m.group(1))]
        for rx, bucket in ((_GDR_OFF, gdr_off), (_GDR_ON, gdr_on)):
            m = rx.search(line)
            if m and m.group(1) not in bucket:
                bucket.append(m.group(1))
        m = _VIA.search(line)
        if m:
            via[m.group(1)] = via.get(m.group(1), 0) + 1
            if m.group(2):
                via_gdr += 1
            else:
                via_plain += 1
        no_ib = no_ib or bool(_NO_IB.search(line))
    transport = _transport(network, devices)
    if via_gdr or gdr_on:
        gdr = True
    elif (gdr_off and (not devices or {d["name"] for d in devices} <= set(gdr_off))) or \
            (via_plain and transport in ("infiniband", "roce")):
        gdr = False
    else:
        gdr = None
    return {"network": network, "transport": transport, "devices": devices, "socket_ifaces": socket_ifaces,
            "gdr": gdr, "gdr_disabled_hcas": gdr_off, "ib_no_device": no_ib, "channels_via": via}


def _transport(network: str | None, devices: list[dict]) -> str | None:
    if network is None:
        return None
    name = network.lower()
    if name == "socket":
        return "socket"
    if name in ("ib", "ibext") or name.startswith("ib"):
        layers = {d["link_layer"] for d in devices}
        return "roce" if layers == {"RoCE"} else "infiniband"
    return "plugin"


def socket_fallback(summary: dict, active_rdma_ports: int) -> bool:
    """True when NCCL used TCP sockets although this node has ACTIVE RDMA ports."""
    return summary.get("transport") == "socket" and active_rdma_ports > 0


NOT_APPLICABLE_GLOO = "not applicable (gloo)"
ENV_KEYS = ("NCCL_DEBUG", "NCCL_IB_DISABLE", "NCCL_IB_HCA", "NCCL_NET", "NCCL_SOCKET_IFNAME")


def rdma_ports(rdma_devices, peermem) -> dict:
    """This node's RDMA ports as the doctor's network probe reads them (``network.rdma_devices``,
    ``network.peermem``), reduced to what explains a fallback: ``active_ports`` (ACTIVE ports),
    ``ports`` [{name, port, state, link_layer}], ``peermem`` module or None, ``memory_peers``."""
    ports = []
    for dev in rdma_devices if isinstance(rdma_devices, list) else []:
        for p in dev.get("ports") if isinstance(dev.get("ports"), list) else []:
            ports.append({"name": dev.get("name"), "port": p.get("port"),
                          "state": p.get("state") if isinstance(p.get("state"), str) else None,
                          "link_layer": p.get("link_layer") if isinstance(p.get("link_layer"), str) else None})
    pm = peermem if isinstance(peermem, dict) else {}
    peers = pm.get("memory_peers")
    return {"active_ports": sum(1 for p in ports if p["state"] == "ACTIVE"), "ports": ports,
            "peermem": pm.get("module"), "memory_peers": peers if isinstance(peers, list) else None}


def fallback_causes(summary: dict, rdma: dict, env: dict) -> list[str]:
    """The likely reasons NCCL used sockets on a node with ACTIVE RDMA ports, from what the rank
    recorded (its NCCL_* variables, the node's ports, peermem). Pure; NCCL docs "Environment
    Variables" for NCCL_IB_DISABLE / NCCL_IB_HCA / NCCL_NET; net_ib.cc keeps only ACTIVE ports."""
    from envcheck.rules.network import parse_nccl_list

    causes = []
    if str(env.get("NCCL_IB_DISABLE") or "").strip() == "1":
        causes.append("NCCL_IB_DISABLE=1 is set: NCCL does not use InfiniBand/RoCE")
    net = str(env.get("NCCL_NET") or "").strip()
    if net and net.lower() == "socket":
        causes.append(f"NCCL_NET={net} forces the socket transport")
    hca = env.get("NCCL_IB_HCA")
    if hca:
        spec = parse_nccl_list(str(hca))
        ports = rdma.get("ports") or []
        kept = [p for p in ports if p.get("state") == "ACTIVE"
                and spec.selects(str(p.get("name")), p["port"] if isinstance(p.get("port"), int) else -1)]
        if not kept:
            causes.append(f"NCCL_IB_HCA={hca} selects none of this node's ACTIVE RDMA ports ("
                          + (", ".join(f"{p.get('name')}:{p.get('port')}" for p in ports
                                       if p.get("state") == "ACTIVE") or "none") + ")")
    if summary.get("ib_no_device") and not causes:
        causes.append("NCCL's IB transport found no device (NET/IB : No device found): libibverbs / "
                      "rdma-core missing in the container, or the /dev/infiniband devices not passed in")
    if not rdma.get("peermem"):
        causes.append("nvidia_peermem is not loaded: GPUDirect RDMA unavailable (modprobe nvidia_peermem)")
    if not causes:
        causes.append("no cause found in NCCL_* or the node's ports: run with NCCL_DEBUG=INFO "
                      "NCCL_DEBUG_SUBSYS=INIT,NET and read NCCL's NET/IB lines")
    return causes
