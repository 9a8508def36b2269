"""envcheck/actions.py, the one edge `install --run` uses, run for real but harmlessly."""

from __future__ import annotations

import sys

from envcheck import actions


def test_argv_is_the_target_interpreters_pip():
    assert actions.pip_install_argv("/venv/bin/python", ["torch==2.15.0"]) == [
        "/venv/bin/python", "-m", "pip", "install", "torch==2.15.0"]


def test_run_pip_streams_output_and_returns_status():
    # A dry run of an already installed package, without any index: installs nothing.
    lines: list[str] = []
    args = ["--dry-run", "--no-index", "--no-deps", "pip"]
    assert actions.run_pip(sys.executable, args, echo=lines.append) == 0
    assert any("already satisfied: pip" in line for line in lines)


def test_run_pip_failure_status_is_returned():
    lines: list[str] = []
    rc = actions.run_pip(sys.executable, ["--no-such-pip-option"], echo=lines.append)
    assert rc != 0 and lines


def test_missing_interpreter_is_a_value_not_a_traceback():
    lines: list[str] = []
    assert actions.run_pip("/no/such/python", ["torch"], echo=lines.append) == 127
    assert "cannot start /no/such/python" in lines[0]
