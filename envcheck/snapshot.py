"""The snapshot: one versioned, JSON-serialisable record of every fact the probes found.

Everything downstream (rules, the install engine, certification, renderers) is a pure
function of a snapshot plus the recipes data, so a snapshot saved on a broken machine
reproduces the diagnosis anywhere (``envcheck doctor --snapshot FILE``).

Shape (schema_version 1); every leaf value is either a plain JSON value or an explicit
"not available" marker ``{"unavailable": "<reason>"}`` made by :func:`na`::

    {
      "schema": "envcheck.snapshot", "schema_version": 1,
      "envcheck_version": "0.1.0", "created_at": "2026-11-23T09:00:00Z",
      "host":   {...},   # envcheck.probes.host      (OS, CPU, RAM, disk, shm, container, ...)
      "python": {...},   # envcheck.probes.torch     (the *target* interpreter, from the subprocess)
      "torch":  {...},   # envcheck.probes.torch     (status, version, build, arch list, ...)
      "nvidia": {...},   # envcheck.probes.nvidia    (NVML: driver, GPUs and their health)
      "env":    {...},   # envcheck.probes.env       (allowlisted variables only)
      "network": {...},  # envcheck.probes.network   (RDMA ports, interfaces, peermem, IOMMU/ACS; optional)
      "probe_seconds": {"host": 0.01, ...}
    }

The per-section keys are documented in each probe module and in README.md ("JSON").
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import stat
from pathlib import Path
from typing import Any

from envcheck import __version__

SCHEMA = "envcheck.snapshot"
SCHEMA_VERSION = 1
SECTIONS = ("host", "python", "torch", "nvidia", "env")
# Bad-input limits for --snapshot (issue 10, class 6). Real snapshots are tens of KiB and 6
# levels deep; these leave room for a hand-made one and keep every recursive walk downstream
# (rules, renderers, envcheck.redact) far from Python's recursion limit.
MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32

# Sections added later: kept when probed, optional when loading (older snapshots lack them).
OPTIONAL_SECTIONS = ("network",)


class SnapshotError(ValueError):
    """A snapshot file that cannot be used (malformed, wrong kind, newer schema)."""


def na(reason: str) -> dict[str, str]:
    """An explicit 'not available' value: the metric is missing *because* of ``reason``."""
    return {"unavailable": str(reason)}


def is_na(value: Any) -> bool:
    """True for a value made by :func:`na`."""
    return isinstance(value, dict) and set(value) == {"unavailable"}


def val(value: Any, default: Any = None) -> Any:
    """The value itself, or ``default`` when it is a 'not available' marker."""
    return default if is_na(value) else value


def get(snapshot: dict, path: str, default: Any = None) -> Any:
    """Look up a dotted path (``"torch.version"``), treating missing keys and na() as ``default``."""
    node: Any = snapshot
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return default if is_na(node) else node


def new(sections: dict[str, Any], probe_seconds: dict[str, float] | None = None) -> dict:
    """Assemble a snapshot from probe results; a section that is absent is marked unavailable."""
    snap: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "envcheck_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for name in SECTIONS:
        snap[name] = sections.get(name, na("not probed"))
    for name in OPTIONAL_SECTIONS:
        if name in sections:
            snap[name] = sections[name]
    snap["probe_seconds"] = dict(probe_seconds or {})
    return snap


def dumps(snapshot: dict) -> str:
    """Serialise with stable key order, so saved snapshots diff cleanly.

    Scrubbed (envcheck.redact): a saved snapshot is the file meant for support tickets, so it
    holds no more than the report on stdout does.
    """
    from envcheck.redact import scrub

    return json.dumps(scrub(snapshot), indent=2, sort_keys=True, default=str) + "\n"


def save(snapshot: dict, path: str | Path) -> None:
    """Write the snapshot through envcheck's one file writer (atomic, never through a link)."""
    from envcheck import outfile

    outfile.write_text(path, dumps(snapshot))


def validate(data: Any, origin: str = "snapshot") -> dict:
    """Check that ``data`` is a snapshot this version of envcheck can read."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SnapshotError(f"{origin} is not an envcheck snapshot (no \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SnapshotError(f"{origin} has no integer schema_version (found {json.dumps(version, default=str)})")
    if version > SCHEMA_VERSION:
        raise SnapshotError(
            f"{origin} uses snapshot schema {version}, newer than the {SCHEMA_VERSION} this "
            f"envcheck {__version__} reads; upgrade envcheck (pip install -U envcheck)"
        )
    if version < 1:
        raise SnapshotError(f"{origin} has an invalid schema_version {version}")
    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise SnapshotError(f"{origin} lacks section(s): {', '.join(missing)}")
    for s in SECTIONS:
        if not isinstance(data[s], dict):
            raise SnapshotError(f"{origin}: section {s!r} must be an object")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_exceeds(data: Any, limit: int) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return False


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _read_regular(p: Path, what: str) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES; anything else is a SnapshotError.

    Checked with stat() before opening (opening a device can have side effects, a FIFO blocks),
    opened with O_NONBLOCK and checked again with fstat() (the path may change in between).
    """
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            kind = next((word for test, word in _KINDS if test(st.st_mode)), "not a regular file")
            raise SnapshotError(f"{what} {p} is {kind}, not a regular file")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SnapshotError(f"{what} {p} is not a regular file")
            if st.st_size > MAX_BYTES:
                raise SnapshotError(f"{what} {p} is {st.st_size} bytes, more than the {MAX_BYTES} "
                                    f"a {what} may be")
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SnapshotError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise SnapshotError(f"{what} {p} is more than the {MAX_BYTES} bytes a {what} may be")
    return data


def read_json(path: str | Path, what: str = "snapshot") -> Any:
    """The parsed JSON of a file envcheck reads back (snapshots, reports, golden files); raises
    SnapshotError with a one-line reason (exit 2 at the command line, issue 10 class 6).

    Refused: not a regular file, over MAX_BYTES, not UTF-8, not JSON, NaN/Infinity (no JSON tool
    agrees on them), nested deeper than MAX_DEPTH.
    """
    p = Path(path)
    raw = _read_regular(p, what)
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is harmless
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{what} {p} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise SnapshotError(f"{what} {p} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # NaN/Infinity, or an integer of more than 4300 digits
        raise SnapshotError(f"{p} is not a usable JSON document: {exc}") from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise SnapshotError(f"{what} {p} is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def load(path: str | Path) -> dict:
    """Read and validate a saved snapshot; raises SnapshotError with a one-line reason."""
    return validate(read_json(path), origin=str(path))
