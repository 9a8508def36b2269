"""Recommendation engine: which torch build fits a machine (pure; facts from recipes/).

Public API used by rules and the CLI (signatures are a contract; bodies are being built):
- driver_minimum(cuda, os="linux") -> str | None: least driver that runs a CUDA `cuda` build
  (minor-version compatibility).
- python_range(torch_version) -> tuple[str, str] | None: (oldest, newest) CPython a torch release
  supports, or None when recipes do not know that release.
- newest_known_release() -> str: newest torch release recipes/ knows.
- install_fix(snapshot) -> str | None: the fix for a torch-install finding on this machine (the
  recommended pip command, or the smallest blocker fix); None when no recommendation can be made.
"""

from __future__ import annotations

# Temporary values from the issue text (minor-version compatibility, Linux); replaced by
# recipes/ data with sources when the engine lands.
_MINOR_COMPAT = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}


def driver_minimum(cuda: str, os: str = "linux") -> str | None:
    return _MINOR_COMPAT.get(str(cuda).split(".")[0])


def python_range(torch_version: str) -> tuple[str, str] | None:
    return None


def newest_known_release() -> str:
    return "2.15.0"


def install_fix(snapshot: dict) -> str | None:
    return None
