"""Turn what went wrong in a check into a value: a kind, a one-line message, the traceback.

Pure (no torch import): classes are recognised by name, so this also reads errors that
crossed a process boundary as text.
"""

from __future__ import annotations

import re
import signal
import traceback
from typing import Any

_OOM_MARKERS = ("out of memory", "outofmemoryerror", "cuda_error_out_of_memory", "cublas_status_alloc_failed")
_CUDA_MARKERS = ("cuda error", "cublas_status", "cudnn_status", "cudnn error", "nccl error", "ncclsystemerror",
                 "ncclinternalerror", "illegal memory access", "uncorrectable ecc", "device-side assert",
                 "misaligned address", "unspecified launch failure")


def backend_message(text: str) -> str:
    """A gloo/NCCL message as one readable ASCII sentence: their source locations
    ("[.../unbound_buffer.cc:78] ") and decorations dropped."""
    text = re.sub(r"\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", text)
    return re.sub(r"[^\x20-\x7e]+", "", text).strip()


def classify_text(type_name: str, message: str) -> str:
    """``oom`` | ``cuda_error`` | ``exception`` from an exception's class name and text."""
    low = f"{type_name} {message}".lower()
    if type_name == "OutOfMemoryError" or any(m in low for m in _OOM_MARKERS):
        return "oom"
    if any(m in low for m in _CUDA_MARKERS):
        return "cuda_error"
    return "exception"


def describe(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """(one-line message, error dict) for an exception raised by a check."""
    type_name = type(exc).__name__
    text = str(exc).strip()
    first = text.splitlines()[0][:400] if text else ""
    kind = classify_text(type_name, text)
    if kind == "oom":
        msg = (f"out of memory: {first} (another process may hold device memory, or the sizes are "
               "too large for this device: try --profile quick)")
    elif kind == "cuda_error":
        msg = f"CUDA error: {type_name}: {first} (the device may be faulty; see `envcheck doctor`)"
    else:
        msg = f"{type_name}: {first}" if first else type_name
    err = {"kind": kind, "type": type_name, "message": text[-2000:],
           "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]}
    return msg, err


def describe_exit(returncode: int, stderr_tail: str) -> tuple[str, dict[str, Any]]:
    """(message, error dict) for a worker process that ended without a result."""
    lines = [ln for ln in stderr_tail.strip().splitlines() if ln.strip()]
    last = lines[-1].strip()[:400] if lines else ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        msg = f"the check's process crashed ({name})"
        kind = "crash"
    else:
        msg = f"the check's process exited with code {returncode} without a result"
        kind = "exit"
    if last:
        sub = classify_text("", last)
        if sub == "oom":
            kind = "oom"
        msg += f": {last}"
    return msg, {"kind": kind, "type": "WorkerExit", "returncode": returncode, "message": stderr_tail[-4000:],
                 "traceback": ""}
