"""doctor ended by SIGTERM or SIGHUP (a scheduler's kill, a closed ssh session) while torch hangs:
exit 130 like Ctrl-C, and the probe with everything it started is gone (issue 10, class 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

BROKEN = Path(__file__).parent / "fixtures" / "broken_torch"


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_doctor_killed_while_torch_hangs_leaves_nothing_behind(tmp_path, signum):
    pidfile = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(BROKEN / "hangs"), "ENVCHECK_TEST_PIDFILE": str(pidfile)}
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_PREFIX", None)
    doctor = subprocess.Popen([sys.executable, "-c", "from envcheck.cli import main; main()", "doctor",
                               "--python", sys.executable, "--timeout", "120"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.1)
        assert pidfile.exists(), "the hanging torch never started"
        doctor.send_signal(signum)
        _out, err = doctor.communicate(timeout=30)
    finally:
        if doctor.poll() is None:
            doctor.kill()
    assert doctor.returncode == 130, err[-2000:]
    assert "envcheck: interrupted" in err
    for pid in map(int, pidfile.read_text().split()):
        assert _gone(pid), f"pid {pid} survived doctor's {signal.Signals(signum).name}"
