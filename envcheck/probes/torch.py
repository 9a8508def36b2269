"""Probe: the target interpreter and its torch, in a subprocess with a deadline.

``import torch`` can raise, crash the process (a bad native library: SIGSEGV) or hang (a
wedged driver, a network filesystem), so it never happens in envcheck's own process. The
target interpreter (default: this one; ``--python PATH`` for another interpreter or venv)
runs ``_torch_script.py`` via ``python -c`` and reports one JSON line per stage; whatever
arrived before a crash or a hang is kept, and the stage it stopped in is named.

Not ``-I`` / ``-E`` / ``-s``: the point is to see the torch that *the user's* ``python`` sees,
including PYTHONPATH and user site-packages (a ``pip install --user`` torch shadowing the
venv's is a failure mode to report, not to hide). ``-c`` rather than a script path, because
a script path puts its folder (envcheck/probes, which holds torch.py) first on sys.path. The
child is started by :mod:`envcheck.proc`, whose prelude takes the working directory off
sys.path: a ``json.py`` or ``torch/`` in the user's folder must not break or fool the probe
(issue 10, class 1).

Sections returned: ``{"python": {...}, "torch": {...}}`` with the keys of
tests/fixtures/snapshots/example_8xh100.json. ``torch.status``: ok | not_installed |
import_error | crashed | timeout | probe_failed; ``torch.error``: null or {message, signal,
timeout_s, stderr_tail}; ``torch.distributions`` (in sys.path order: the first is the one
``import torch`` picks) is filled whatever the status, when the subprocess got that far.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envcheck import proc, redact
from envcheck.snapshot import na

MARK = "@@envcheck@@ "
SCRIPT = Path(__file__).with_name("_torch_script.py")
STDERR_CAP = 64 * 1024        # bytes of the child's stderr kept in memory (the tail)
STDOUT_LINE_CAP = 4 * 1024 * 1024
TAIL_LINES = 25
TAIL_CHARS = 4000
TORCH_KEYS = ("version", "cuda", "hip", "cudnn", "nccl", "arch_list", "cuda_available",
              "cuda_unavailable_reason", "device_count", "devices", "distributed", "compile",
              "import_seconds", "num_threads")


def _error(message: str, signal_no: int | None = None, timeout_s: float | None = None,
           stderr_tail: str = "") -> dict:
    return {"message": redact.scrub_text(message), "signal": signal_no, "timeout_s": timeout_s,
            "stderr_tail": redact.scrub_text(stderr_tail)}


def _failed(message: str, **error: Any) -> dict:
    return {
        "python": {"status": "probe_failed", "error": {"message": redact.scrub_text(message)}},
        "torch": {"status": "probe_failed", "error": _error(message, **error),
                  "distributions": na("the target interpreter did not report")},
    }


def resolve_python(python: str | os.PathLike | None) -> tuple[str | None, str | None]:
    """The interpreter to run (a venv or conda folder resolves to its python), or an error."""
    if python is None:
        if not sys.executable:
            return None, "this Python does not know its own executable (sys.executable is empty)"
        return sys.executable, None
    p = Path(python).expanduser()
    if p.is_dir():
        for rel in ("bin/python", "bin/python3", "Scripts/python.exe", "python.exe"):
            if (p / rel).is_file():
                return str(p / rel), None
        return None, f"{p} is a folder without bin/python (not a venv or conda environment)"
    if not p.exists():
        return None, f"interpreter {p} does not exist"
    if not os.access(p, os.X_OK):
        return None, f"interpreter {p} is not executable"
    return str(p), None


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


class _Reader:
    """The script's protocol: MARK-prefixed JSON lines on stdout (anything else is noise from
    native code and ignored)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict] = {}
        self.step = "starting the interpreter"
        self.done = threading.Event()
        self.stderr = ""

    def line(self, _index: int, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        at = text.find(MARK)
        if at < 0:
            return  # native code writing to fd 1: not ours
        try:
            obj = json.loads(text[at + len(MARK):])
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        stage = obj.get("stage")
        if stage == "step":
            self.step = str(obj.get("step"))
        elif stage == "done":
            self.done.set()
        elif stage:
            self.stages[str(stage)] = obj

    def stderr_tail(self) -> str:
        lines = self.stderr.rstrip().splitlines()[-TAIL_LINES:]
        return "\n".join(lines)[-TAIL_CHARS:]


def probe(python: str | os.PathLike | None = None, timeout: float = 30.0,
          env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
          import_torch: bool = True) -> dict:
    """Facts about the target interpreter and its torch. Never raises, never outlives ``timeout``
    (plus a second of clean-up), never leaves a process behind. With ``import_torch=False`` torch
    is not imported: ``torch.status`` is ``not_probed`` and only ``distributions`` is filled."""
    try:
        return _probe(python, timeout, env, cwd, import_torch)
    except Exception as exc:  # noqa: BLE001 - the doctor must survive its own bugs too
        return _failed(f"torch probe failed: {type(exc).__name__}: {exc}")


def _probe(python, timeout, env, cwd, import_torch=True) -> dict:
    exe, problem = resolve_python(python)
    if problem:
        return _failed(problem)
    try:
        script = SCRIPT.read_text(encoding="utf-8")
    except OSError as exc:
        return _failed(f"envcheck is missing {SCRIPT.name}: {exc.strerror}")
    args = [repr(float(timeout))] + ([] if import_torch else ["no-import"])
    try:
        # envcheck.proc: own session, dies with envcheck, the cwd is not on its sys.path.
        child = proc.start(proc.python_argv(exe, code=script, args=args), env=env, cwd=cwd)
    except OSError as exc:
        return _failed(f"cannot run {exe}: {exc.strerror or exc}")
    reader = _Reader()
    # Until the script's "done" (then a moment for it to exit), its exit, or the deadline; a
    # result in before the deadline is kept, and nothing waits for the pipes' end-of-file.
    with proc.Supervisor([child], deadline=time.monotonic() + timeout, interval=0.05) as sup:
        reason = sup.watch(on_line=reader.line, poll=reader.done.is_set, settle_s=2.0)
        reader.stderr = child.stderr_tail(STDERR_CAP)
    return _assemble(exe, reader, child.returncode, reason == "deadline", timeout, import_torch)


def _assemble(exe: str, reader: _Reader, returncode: int | None, timed_out: bool,
              timeout: float, import_torch: bool = True) -> dict:
    stages = reader.stages
    tail = reader.stderr_tail()
    step = reader.step

    py = stages.get("python")
    if py and "error" not in py:
        python = {"status": "ok", **{k: v for k, v in py.items() if k != "stage"}}
    elif py:
        python = {"status": "probe_failed", "error": {"message": redact.scrub_text(py["error"])}}
    else:
        python = None  # filled below with the reason the interpreter did not report

    dists = stages.get("dists")
    if dists and not dists.get("error"):
        distributions: Any = dists.get("distributions", [])
    elif dists:
        distributions = na(f"cannot list installed distributions: {dists['error']}")
    else:
        distributions = na("the target interpreter stopped before listing distributions")

    torch: dict[str, Any] = {"distributions": distributions}
    facts = stages.get("torch")
    err = stages.get("torch_error")
    if not import_torch and reader.done.is_set() and not err:
        torch["status"] = "not_probed"
        torch["error"] = _error("torch was not imported: only installed distributions were read")
    elif facts and reader.done.is_set():
        torch.update(status="ok", error=None)
        torch.update({k: facts.get(k) for k in TORCH_KEYS})
    elif err:
        kind = err.get("kind")
        torch["status"] = "not_installed" if kind == "not_installed" else "import_error"
        message = str(err.get("message", ""))
        if kind == "not_installed":
            message = f"{message} (interpreter: {exe})"
        trace = "" if kind == "not_installed" else str(err.get("traceback") or tail)
        torch["error"] = _error(message, stderr_tail=trace)
        torch["import_seconds"] = err.get("import_seconds")
    elif timed_out:
        torch["status"] = "timeout"
        torch["error"] = _error(
            f"no answer within {timeout:g} s; it hung in: {step} (interpreter: {exe})",
            timeout_s=float(timeout), stderr_tail=tail,
        )
    elif returncode is not None and returncode < 0:
        sig = -returncode
        torch["status"] = "crashed"
        torch["error"] = _error(
            f"the interpreter was killed by {_signal_name(sig)} (signal {sig}) during: {step}",
            signal_no=sig, stderr_tail=tail,
        )
    else:
        torch["status"] = "crashed" if py else "probe_failed"
        what = f"exited with status {returncode}" if returncode else "exited without reporting"
        torch["error"] = _error(f"the interpreter {exe} {what} during: {step}", stderr_tail=tail)

    if python is None:
        python = {"status": "probe_failed", "error": {"message": torch["error"]["message"]
                                                       if torch.get("error") else "no report"}}
    return {"python": python, "torch": torch}
