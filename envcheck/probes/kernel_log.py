"""Probe: NVIDIA XID and NVSwitch SXid errors in this boot's kernel log.

Sources, first readable wins: ``/dev/kmsg`` (non-blocking: every record since boot still in
the kernel's ring buffer), ``journalctl -k -b -o short-monotonic`` (this boot's kernel messages
from the journal), ``dmesg``. Reading is bounded in time and size; when no source is readable
(``kernel.dmesg_restrict=1`` needs root or CAP_SYSLOG; containers often have no /dev/kmsg) the
section says so instead of reporting "no XID". Shape (``host.kernel_log``)::

    {source: "/dev/kmsg" | "journalctl" | "dmesg" | null, readable: bool, error: str | null,
     uptime_s: float, truncated: bool, ring_buffer_wrapped: bool | null,
     xids: [{code, pci, count, first_s, last_s, sample}],          # per (PCI bus id, XID)
     sxids: [{code, pci, fatal, count, first_s, last_s, sample}]}  # per (NVSwitch, SXid)

Times are seconds since boot (the kernel's monotonic clock). Line formats:
``NVRM: Xid (PCI:0000:18:00): 79, pid=..., GPU has fallen off the bus.`` (NVIDIA driver) and
``nvidia-nvswitch3: SXid (PCI:0000:05:00.0): 20034, Fatal, Link 48 LTSSM Fault Up`` (NVIDIA
Fabric Manager User Guide; both as quoted in leptonai/gpud's xid and sxid components).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

# Bounds (envcheck's choices): the kernel ring buffer is 16 KiB-32 MiB (CONFIG_LOG_BUF_SHIFT,
# log_buf_len=); journalctl of one boot's kernel messages is usually a few MiB.
MAX_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 2.0
MAX_GROUPS = 256
SAMPLE_CHARS = 160

_XID = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})[^)]*\):\s*(\d+)")
# The first line of an SXid error carries Fatal / Non-fatal; the lines after it with the same
# code ("Severity 1 Engine instance ...", "Data {...}") continue it and are not counted again.
_SXID = re.compile(r"SXid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})[^)]*\):\s*(\d+),\s*"
                   r"(Fatal|Non-fatal|Nonfatal)\b", re.IGNORECASE)
_BRACKET_TIME = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def probe(root: str | Path = "/", max_bytes: int = MAX_BYTES,
          max_seconds: float = MAX_SECONDS, commands: bool = True) -> dict:
    """The ``host.kernel_log`` facts. ``root``: the filesystem root (tests pass a fixture tree
    holding ``dev/kmsg`` and ``proc/uptime``); ``commands``: try journalctl and dmesg when the
    kmsg device cannot be read (tests switch it off)."""
    root = Path(root)
    out: dict[str, Any] = {"source": None, "readable": False, "error": None,
                           "uptime_s": _uptime(root), "truncated": False,
                           "ring_buffer_wrapped": None, "xids": [], "sxids": []}
    errors = []
    lines, why, extra = _read_kmsg(root / "dev" / "kmsg", max_bytes, max_seconds)
    if lines is not None:
        out.update(source="/dev/kmsg", **extra)
    else:
        errors.append(f"/dev/kmsg: {why}")
        if commands:
            for name, argv in (("journalctl", ["journalctl", "-k", "-b", "-o", "short-monotonic",
                                               "--no-pager", "-q"]),
                               ("dmesg", ["dmesg"])):
                lines, why, truncated = _run(argv, max_bytes, max_seconds)
                if lines is not None:
                    out.update(source=name, truncated=truncated)
                    break
                errors.append(f"{name}: {why}")
    if lines is None:
        out["error"] = "; ".join(errors)
        return out
    out["readable"] = True
    out["xids"], out["sxids"] = parse(lines)
    return out


def parse(lines: list[tuple[float | None, str]]) -> tuple[list[dict], list[dict]]:
    """(time since boot, message) lines -> XID and SXid groups, in first-seen order."""
    xids: dict[tuple[str, int], dict] = {}
    sxids: dict[tuple[str, int, bool], dict] = {}
    for ts, msg in lines:
        m = _XID.search(msg)
        if m:
            key = (_bus(m.group(1)), int(m.group(2)))
            _add(xids, key, {"code": key[1], "pci": key[0]}, ts, msg[m.start():])
            continue
        m = _SXID.search(msg)
        if m and m.group(3):
            fatal = (m.group(3) or "").lower() == "fatal"
            key3 = (_bus(m.group(1)), int(m.group(2)), fatal)
            _add(sxids, key3, {"code": key3[1], "pci": key3[0], "fatal": fatal}, ts, msg[m.start():])
    return list(xids.values()), list(sxids.values())


def _add(groups: dict, key: tuple, base: dict, ts: float | None, text: str) -> None:
    entry = groups.get(key)
    if entry is None:
        if len(groups) >= MAX_GROUPS:
            return
        entry = groups[key] = {**base, "count": 0, "first_s": ts, "last_s": ts,
                               "sample": _CONTROL.sub("?", text.strip())[:SAMPLE_CHARS]}
    entry["count"] += 1
    if ts is not None:
        entry["first_s"] = ts if entry["first_s"] is None else min(entry["first_s"], ts)
        entry["last_s"] = ts if entry["last_s"] is None else max(entry["last_s"], ts)


def _bus(text: str) -> str:
    """'0000:18:00' / '00000000:18:00' -> '0000:18:00' (domain:bus:device, lower case): the
    same key as NVML's pci_bus_id '00000000:18:00.0' gives (rules/xid.py)."""
    domain, bus, dev = text.lower().split(":")[:3]
    return f"{domain[-4:]:0>4}:{bus}:{dev[:2]}"


def _uptime(root: Path) -> float | None:
    try:
        return float((root / "proc" / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_kmsg(path: Path, max_bytes: int, max_seconds: float):
    """Records of the kmsg device, non-blocking: (lines, None, extra) or (None, why, None).
    A record is ``prio,seq,usec,flags;message`` (Documentation/ABI/testing/dev-kmsg);
    continuation lines start with a space and are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            return None, ("not permitted (kernel.dmesg_restrict=1 needs root or CAP_SYSLOG)"), None
        return None, exc.strerror or str(exc), None
    chunks, size, truncated = [], 0, False
    deadline = time.monotonic() + max_seconds
    try:
        while True:
            if size >= max_bytes or time.monotonic() > deadline:
                truncated = True
                break
            try:
                data = os.read(fd, 8192)
            except BlockingIOError:
                break  # no more records
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    continue  # records were overwritten while reading: carry on from the next
                if exc.errno in (errno.EPERM, errno.EACCES):
                    return None, "not permitted (kernel.dmesg_restrict=1 needs root or CAP_SYSLOG)", None
                return None, exc.strerror or str(exc), None
            if not data:
                break
            chunks.append(data)
            size += len(data)
    finally:
        os.close(fd)
    lines, first_seq = [], None
    for raw in b"".join(chunks).decode("utf-8", errors="replace").splitlines():
        if not raw or raw.startswith(" ") or ";" not in raw:
            continue
        head, msg = raw.split(";", 1)
        fields = head.split(",")
        ts = None
        try:
            if first_seq is None:
                first_seq = int(fields[1])
            ts = int(fields[2]) / 1e6
        except (IndexError, ValueError):
            pass
        lines.append((ts, msg))
    # The ring buffer keeps the newest records: a first sequence number above 0 means the
    # oldest ones of this boot were dropped (an XID from early in the boot may be gone).
    return lines, None, {"truncated": truncated,
                         "ring_buffer_wrapped": None if first_seq is None else first_seq > 0}


def _run(argv: list[str], max_bytes: int, max_seconds: float):
    exe = shutil.which(argv[0])
    if exe is None:
        return None, "not installed", False
    from envcheck import proc  # the one launcher (own session, tree killed, deadline)

    code, text, err_text = proc.run([exe, *argv[1:]], max_seconds + 1.0, limit=max_bytes + 1)
    if code == 124:
        return None, f"no answer within {max_seconds + 1.0:g} s", False
    if code in (126, 127):
        return None, err_text[:200], False
    err = err_text.strip().splitlines()
    if any("insufficient permissions" in line for line in err):
        # journalctl exits 0 with only the entries this user may read (none of the kernel's)
        return None, "not permitted (needs root or the systemd-journal/adm group)", False
    if code != 0:
        return None, (err[-1][:200] if err else f"exit status {code}"), False
    raw_out = text.encode("utf-8", errors="replace")
    cut = len(raw_out) > max_bytes
    text = raw_out[-max_bytes:].decode("utf-8", errors="replace")  # the newest lines when it is cut
    if argv[0] == "journalctl" and "No entries" in text[:200] and len(text) < 200:
        return [], None, False
    lines = []
    for raw in text.splitlines():
        m = _BRACKET_TIME.match(raw)
        lines.append((float(m.group(1)) if m else None, raw))
    return lines, None, cut
