"""The process a check runs in (``python -m envcheck.validate.worker``).

Protocol: the runner writes one JSON request on stdin, ``{"mode": "info"}`` or
``{"mode": "check", "check": name, "config": {...}, "info": {...}}``; the worker answers
with JSON lines on its original stdout: ``{"event": "progress", "fraction", "note"}`` any
number of times, then ``{"event": "info", "info"}`` or ``{"event": "result", "result"}``.
Anything a library prints goes to stderr (fd 1 is pointed at fd 2), so the event stream
stays parseable. A check that raises becomes a failed result here; a crash (a signal, an
abort in native code) ends the process and the runner reports it from the exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any, Callable

from envcheck.validate import errors
from envcheck.validate.checks import REGISTRY, CheckContext
from envcheck.validate.config import ValidateConfig
from envcheck.validate.results import FAIL, CheckResult


def preflight() -> dict[str, Any]:
    """What the checks need to know about this torch and its devices (imports torch)."""
    import platform

    info: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    t0 = time.perf_counter()
    import torch

    info["torch_import_s"] = round(time.perf_counter() - t0, 3)
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    info["hip"] = getattr(torch.version, "hip", None)
    info["cudnn"] = None
    info["nccl"] = None
    info["threads"] = torch.get_num_threads()
    devices = []
    try:
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    except Exception as exc:  # noqa: BLE001 - a broken driver is a fact, not a crash
        available, count = False, 0
        info["cuda_error"] = f"{type(exc).__name__}: {exc}"
    info["cuda_available"] = bool(available)
    info["device_count"] = int(count)
    for i in range(count):
        d = {"index": i, "name": torch.cuda.get_device_name(i),
             "capability": list(torch.cuda.get_device_capability(i)),
             "total_memory_bytes": int(torch.cuda.get_device_properties(i).total_memory)}
        try:
            d["free_memory_bytes"] = int(torch.cuda.mem_get_info(i)[0])
        except Exception:  # noqa: BLE001
            d["free_memory_bytes"] = None
        devices.append(d)
    info["devices"] = devices
    if available:
        with contextlib.suppress(Exception):
            info["cudnn"] = torch.backends.cudnn.version()
        with contextlib.suppress(Exception):
            from envcheck.validate.checks.allreduce import nccl_version_text

            info["nccl"] = nccl_version_text(torch.cuda.nccl.version())
    dist: dict[str, Any] = {"available": False, "gloo": False, "nccl": False}
    try:
        import torch.distributed as tdist

        dist["available"] = bool(tdist.is_available())
        if dist["available"]:
            dist["gloo"] = bool(tdist.is_gloo_available())
            dist["nccl"] = bool(tdist.is_nccl_available())
    except Exception as exc:  # noqa: BLE001
        dist["error"] = str(exc)
    info["distributed"] = dist
    try:
        from importlib import metadata

        info["triton"] = metadata.version("triton")
    except Exception:  # noqa: BLE001
        info["triton"] = None
    return info


def execute(name: str, config: ValidateConfig, info: dict[str, Any],
            progress: Callable[[float, str], None], registry: dict | None = None) -> CheckResult:
    """Run one check in this process; an exception becomes a failed result with its cause."""
    spec = (registry or REGISTRY)[name]
    t0 = time.perf_counter()
    try:
        result = spec.load()(CheckContext(name, config, info, progress))
    except Exception as exc:  # noqa: BLE001 - isolation: a check's error is its result
        msg, err = errors.describe(exc)
        result = CheckResult(name, FAIL, {}, msg, error=err)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def serve(request: dict[str, Any], events: Any) -> int:
    """Answer one request (module docstring) with JSON event lines on ``events``: the body of a
    fresh worker (:func:`main`) and of a fork server's child (:mod:`envcheck.validate.forkserver`)."""
    lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        with lock:
            events.write(json.dumps(obj, default=str) + "\n")
            events.flush()

    if request.get("mode") == "info":
        info = preflight()
        if request.get("torch_import_s") is not None:  # a fork server imported torch before forking
            info["torch_import_s"] = request["torch_import_s"]
        emit({"event": "info", "info": info})
        return 0
    name = request["check"]
    config = ValidateConfig.from_dict(request.get("config") or {})
    result = execute(name, config, request.get("info") or {},
                     lambda fraction, note="": emit({"event": "progress", "fraction": fraction, "note": note}))
    emit({"event": "result", "result": result.to_dict()})
    return 0


def main() -> int:
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray prints from libraries go to stderr, not into the event stream
    sys.stdout = sys.stderr
    return serve(json.loads(sys.stdin.read() or "{}"), events)


if __name__ == "__main__":
    from envcheck.proc import exit_now

    exit_now(main())  # no interpreter teardown: its cost is paid per check otherwise
