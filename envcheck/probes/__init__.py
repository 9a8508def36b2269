"""Probes: the only code that touches the machine. Each returns plain JSON-able data, and a
failure becomes an explicit ``na("reason")`` value, never an exception.

``collect()`` runs them and assembles the snapshot; the torch probe (a subprocess of the
target interpreter, with a timeout) runs concurrently with the in-process probes.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from envcheck import snapshot as snap


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a probe bug must not take the doctor down
        result = snap.na(f"probe failed: {type(exc).__name__}: {exc}")
    return result, round(time.perf_counter() - start, 3)


def collect(
    python: str | None = None,
    torch_timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Probe this machine and return a snapshot (see envcheck.snapshot for its shape)."""
    from envcheck.probes import env, host, nvidia
    from envcheck.probes import torch as torch_probe

    say = progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    sections: dict = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        say("probing torch in a subprocess…")
        torch_future = pool.submit(_timed, torch_probe.probe, python=python, timeout=torch_timeout)
        for name, fn in (("host", host.probe), ("nvidia", nvidia.probe), ("env", env.probe)):
            sections[name], seconds[name] = _timed(fn)
        (py_and_torch, seconds["torch"]) = torch_future.result()
    if snap.is_na(py_and_torch):
        sections["python"] = py_and_torch
        sections["torch"] = {"status": "probe_failed", "error": {"message": py_and_torch["unavailable"]}}
    else:
        sections["python"] = py_and_torch["python"]
        sections["torch"] = py_and_torch["torch"]
    return snap.new(sections, seconds)
