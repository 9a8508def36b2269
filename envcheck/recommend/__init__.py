"""Recommendation engine: which torch build fits a machine (pure; facts from recipes/).

Public API used by rules and the CLI (signatures are a contract):
- driver_minimum(cuda, os="linux") -> str | None: least driver that runs a CUDA `cuda` build
  (minor-version compatibility).
- python_range(torch_version) -> tuple[str, str] | None: (oldest, newest) CPython a torch release
  supports, or None when recipes do not know that release.
- newest_known_release() -> str: newest torch release recipes/ knows.
- is_newer_than_known(version) -> bool: an installed torch newer than recipes/ know (stale data).
- install_fix(snapshot) -> str | None: the fix for a torch-install finding on this machine (the
  recommended pip command, or the smallest blocker fix); None when no recommendation can be made.
- recommend(machine, torch_spec=None, extras=()) -> Plan; machine_from_snapshot(snapshot) ->
  Machine; apply_overrides(machine, gpus=..., no_gpu=..., driver=..., python=..., platform=...,
  glibc=...) -> Machine (raises InputError on bad what-if values).
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from envcheck.recommend import data
from envcheck.recommend.engine import Blocker, Plan, recommend
from envcheck.recommend.machine import (
    EXTRAS,
    PLATFORMS,
    Gpu,
    InputError,
    Machine,
    apply_overrides,
    gpu_names,
    machine_from_snapshot,
    resolve_gpu,
    what_if_machine,
)

__all__ = [
    "EXTRAS", "PLATFORMS", "Blocker", "Gpu", "InputError", "Machine", "Plan",
    "apply_overrides", "driver_minimum", "gpu_names", "install_fix", "is_newer_than_known",
    "machine_from_snapshot", "newest_known_release", "python_range", "recommend", "resolve_gpu",
    "what_if_machine",
]


def driver_minimum(cuda: str, os: str = "linux") -> str | None:
    """Least NVIDIA driver that runs a build for CUDA ``cuda`` on ``os`` ("linux"/"windows"),
    by minor-version compatibility (recipes/cuda.json); None for an unknown CUDA major."""
    if cuda is None:
        return None
    return data.driver_minimum(str(cuda), os)


def python_range(torch_version: str, platform: str | None = None) -> tuple[str, str] | None:
    """(oldest, newest) CPython ("3.10", "3.14") with a wheel of this torch release on
    ``platform`` ("linux-x86_64", ...) or, without one or for a platform recipes do not list,
    on any platform; None when recipes do not know the release (a local label like +cu126 is
    ignored)."""
    rel = data.release(str(torch_version))
    if rel is None:
        return None
    chosen = [rel.platforms[platform]] if platform in rel.platforms else list(rel.platforms.values())
    versions = {v for p in chosen for v in p.python}
    if not versions:
        return None
    ordered = sorted(versions, key=Version)
    return ordered[0], ordered[-1]


def newest_known_release() -> str:
    """Newest torch release recipes/torch_releases.json knows."""
    return data.newest_known().text


def is_newer_than_known(version: str) -> bool:
    """True when ``version`` (e.g. "2.16.0+cu132", "2.16.0.dev20261201") is newer than every
    release recipes know: then arch lists and minimums for it are guesses; upgrade envcheck."""
    try:
        mine = Version(str(version).split("+")[0])
    except InvalidVersion:
        return False
    return mine > data.newest_known().version


def install_fix(snapshot: dict) -> str | None:
    """The exact fix for a torch-install finding: the plan's pip command, or the blockers' fixes."""
    if not isinstance(snapshot, dict):
        return None
    try:
        plan = recommend(machine_from_snapshot(snapshot))
    except Exception:  # noqa: BLE001 - rules must get a value, never an exception
        return None
    if plan.ok:
        return plan.commands.get("pip")
    fixes = list(dict.fromkeys(b.fix for b in plan.blockers))
    return "; ".join(fixes) if fixes else None
