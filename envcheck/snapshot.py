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
      "probe_seconds": {"host": 0.01, ...}
    }

The per-section keys are documented in each probe module and in README.md ("JSON").
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from envcheck import __version__

SCHEMA = "envcheck.snapshot"
SCHEMA_VERSION = 1
SECTIONS = ("host", "python", "torch", "nvidia", "env")


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
    snap["probe_seconds"] = dict(probe_seconds or {})
    return snap


def dumps(snapshot: dict) -> str:
    """Serialise with stable key order, so saved snapshots diff cleanly."""
    return json.dumps(snapshot, indent=2, sort_keys=True, default=str) + "\n"


def save(snapshot: dict, path: str | Path) -> None:
    """Write the snapshot through envcheck's one file writer (atomic, never through a link)."""
    from envcheck import outfile

    outfile.write_text(path, dumps(snapshot))


def validate(data: Any, origin: str = "snapshot") -> dict:
    """Check that ``data`` is a snapshot this version of envcheck can read."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SnapshotError(f"{origin} is not an envcheck snapshot (no \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise SnapshotError(f"{origin} has no integer schema_version")
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


def load(path: str | Path) -> dict:
    """Read and validate a saved snapshot; raises SnapshotError with a one-line reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{p} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return validate(data, origin=str(p))
