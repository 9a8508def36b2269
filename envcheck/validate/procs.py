"""validate's child processes: which program and environment a worker or rank gets.

Launching, watching and stopping them is :mod:`envcheck.proc` (the one launcher and
supervisor); this module only says what validate runs: envcheck's own modules under the
interpreter being validated (``--python``, default this one), with the user's environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from envcheck import proc


def child_env(device: str | None = None) -> dict[str, str]:
    """This environment, plus what a worker needs to run well (PYTHONPATH untouched: the
    torch judged is the one the user's interpreter imports)."""
    env = dict(os.environ)
    if device == "cpu":
        # libgomp threads spin while waiting; on a CPU shared with other work that made 150
        # CNN steps take 10-17 s instead of 2-3 s on the 2-core CI host (measured 2026-11,
        # torch 2.13.0+cpu). PASSIVE makes them sleep; a user's own setting wins.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def expected_device(device: str | None) -> str:
    """The device a run will most likely use, before torch is imported: the option, else "cuda"
    where a GPU driver's device node exists, else "cpu". The fork server starts with the
    environment of that device (child_env); a wrong guess costs one server restart."""
    if device:
        return device
    return "cuda" if any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/kfd")) else "cpu"


def argv(module: str, args: Sequence[str] = (), python: str | None = None) -> list[str]:
    """argv running envcheck's ``module`` under ``python`` (default: this interpreter)."""
    return proc.envcheck_argv(module, args, python=python)
