"""Probes: the only code that touches the machine. Each returns plain JSON-able data, and a
failure becomes an explicit ``na("reason")`` value, never an exception.

``collect()`` runs them and assembles the snapshot; the torch probe (a subprocess of the
target interpreter, with a timeout) runs concurrently with the in-process probes.
"""

from __future__ import annotations

import contextlib
import threading
import time
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
    while_waiting: Callable[[], object] | None = None,
    nvml_timeout: float = 20.0,
    import_torch: bool = True,
    probe_python: bool = True,
    target: dict | None = None,
) -> dict:
    """Probe this machine and return a snapshot (see envcheck.snapshot for its shape).

    The torch subprocess is started first, before the other probe modules are even imported
    (psutil, pynvml): its ``import torch`` dominates doctor's wall time, so everything else
    runs in its shadow (issue 2: doctor within 1.1x of a bare ``import torch``).
    ``while_waiting`` runs after the in-process probes, while the torch subprocess still runs:
    the CLI warms up what it needs next (importing the rule modules and their recipes costs
    ~50-80 ms here, which would otherwise come after the subprocess). Its errors are ignored;
    the same work is simply done again later. ``import_torch=False`` reads the interpreter and
    the installed torch distributions without importing torch (``torch.status: not_probed``).
    ``probe_python=False`` (doctor --scope node) starts no interpreter at all: the ``python``
    and ``torch`` sections say they were not probed. ``target`` (envcheck.target.Target.to_dict:
    which interpreter is judged and why) is recorded as the snapshot's ``target``.
    """
    from envcheck.probes import torch as torch_probe

    say = progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    sections: dict = {}
    box: dict = {}

    def run_torch() -> None:
        box["result"] = _timed(torch_probe.probe, python=python, timeout=torch_timeout,
                               import_torch=import_torch)

    worker = threading.Thread(target=run_torch, name="envcheck-torch-probe", daemon=True)
    if probe_python:
        say("probing torch in a subprocess…" if import_torch else "probing the interpreter…")
        worker.start()
    else:
        box["result"] = (snap.na("not probed: --scope node judges the node alone"), 0.0)

    from envcheck.probes import env, host, nvidia

    nvml_box: dict = {}
    nvml_state: dict = {}  # filled as NVML answers, so a deadline keeps what was read
    nvml_worker = threading.Thread(
        target=lambda: nvml_box.setdefault("result", _timed(nvidia.probe, state=nvml_state)),
        name="envcheck-nvml-probe", daemon=True,
    )
    nvml_worker.start()
    from envcheck.probes import network

    for name, fn in (("host", host.probe), ("env", env.probe), ("network", network.probe)):
        sections[name], seconds[name] = _timed(fn)
    # NVML runs in-process and a wedged GPU can block it indefinitely: bound it, and leave the
    # daemon thread behind rather than the user.
    nvml_worker.join(nvml_timeout)
    sections["nvidia"], seconds["nvidia"] = nvml_box.get(
        "result", (nvidia.hung(nvml_timeout, nvml_state), nvml_timeout)
    )
    if while_waiting is not None:
        # A warm-up only: if it fails, the real call later does the same work and reports.
        with contextlib.suppress(Exception):
            while_waiting()
    # torch.probe keeps its own deadline and never raises; the margin covers its clean-up.
    if probe_python:
        worker.join(torch_timeout + 15.0)
    py_and_torch, seconds["torch"] = box.get(
        "result", (snap.na(f"torch probe did not return within {torch_timeout:g} s"), torch_timeout)
    )
    if not probe_python:
        sections["python"], sections["torch"] = dict(py_and_torch), dict(py_and_torch)
        del seconds["torch"]
    elif snap.is_na(py_and_torch):
        reason = py_and_torch["unavailable"]
        sections["python"] = {"status": "probe_failed", "error": {"message": reason}}
        sections["torch"] = {"status": "probe_failed", "error": {
            "message": reason, "signal": None, "timeout_s": None, "stderr_tail": ""}}
    else:
        sections["python"] = py_and_torch["python"]
        sections["torch"] = py_and_torch["torch"]
    snapshot = snap.new(sections, seconds)
    if target is not None:
        snapshot["target"] = dict(target)
    return snapshot
