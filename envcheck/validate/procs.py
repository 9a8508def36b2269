"""Child processes of validate: environment, and killing a whole tree (no torch here).

Every worker and rank runs in its own session (process group), so a hung or interrupted
one is ended with its group and every descendant; nothing is left running (issue 4).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable


@contextlib.contextmanager
def sigterm_raises(make: Callable[[int], BaseException]):
    """While inside, SIGTERM raises ``make(signum)`` in the main thread, so the caller still
    writes what it has (a scheduler's kill, torchrun tearing a worker group down). Elsewhere
    than the main thread signals cannot be handled: nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise make(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def child_env(device: str | None = None) -> dict[str, str]:
    """This environment, plus what a worker needs to import envcheck and run well."""
    import envcheck

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(envcheck.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if device == "cpu":
        # libgomp threads spin while waiting; on a CPU shared with other work that made 150
        # CNN steps take 10-17 s instead of 2-3 s on the 2-core CI host (measured 2026-11,
        # torch 2.13.0+cpu). PASSIVE makes them sleep; a user's own setting wins.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def kill_tree(pids: list[int], wait: float = 5.0) -> None:
    """SIGKILL each pid's process group and every descendant; never raises."""
    import psutil

    victims: list[psutil.Process] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            victims.extend(proc.children(recursive=True))
            victims.append(proc)
        except psutil.Error:
            continue
    for pid in pids:
        try:
            if hasattr(os, "killpg") and os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=wait)


def set_pdeathsig() -> None:
    """Linux: die (SIGKILL) when the parent dies, so a killed parent leaves no orphan."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - best effort; the parent kills the tree anyway
            pass
