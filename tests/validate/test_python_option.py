"""`validate --python PATH`: the workload runs under another interpreter, which needs no envcheck.

The children load envcheck from this envcheck's own files (envcheck/proc.py), never the
target's copy and never the working directory's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def _envcheck() -> list[str]:
    # The console script: `python -m envcheck` would itself put the cwd first on sys.path.
    script = Path(sys.executable).with_name("envcheck")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "envcheck"]


def _validate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_envcheck(), "validate", "--format", "json", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_a_path_that_is_not_python_is_one_line_and_exit_2(tmp_path):
    out = _validate(tmp_path, "--python", "/bin/ls")
    assert out.returncode == 2 and out.stdout == ""
    assert "--python /bin/ls: /bin/ls is not a Python interpreter" in out.stderr
    out = _validate(tmp_path, "--python", str(tmp_path / "nope"))
    assert out.returncode == 2 and "no such interpreter or folder" in out.stderr


def test_an_interpreter_without_torch_fails_the_run_naming_it(tmp_path):
    env_dir = tmp_path / "bare"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    py = env_dir / "bin" / "python"
    out = _validate(tmp_path, "--python", str(py), "--checks", "gemm")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "failed"
    msg = doc["checks"][0]["message"]
    assert f"torch is not usable in {py}" in msg and "torch" in msg.split(":", 1)[1]
    assert "envcheck" not in msg.split(":", 1)[1]  # envcheck itself was found (from our files)


@needs_torch
@pytest.mark.slow
def test_the_workload_runs_under_the_target_not_its_own_envcheck(tmp_path):
    """The target has torch (system site-packages) and a broken envcheck of its own first on
    its path; the run still works, so the workers used this envcheck's files."""
    env_dir = tmp_path / "target"
    venv.create(env_dir, with_pip=False, system_site_packages=True)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "envcheck").mkdir()
    (site / "envcheck" / "__init__.py").write_text("raise SystemExit('the target envcheck was imported')\n")
    (tmp_path / "json.py").write_text("raise SystemExit('the cwd json.py was imported')\n")
    out = _validate(tmp_path, "--python", str(env_dir / "bin" / "python"), "--checks", "gemm",
                    "--profile", "quick")
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "passed" and doc["checks"][0]["status"] == "pass"


@needs_torch
@pytest.mark.slow
def test_with_a_user_venv_active_the_workload_runs_there_not_in_envcheck_s_own(tmp_path):
    """Issue 12, the pipx/uv-tool layout: envcheck's own interpreter and an activated user venv
    (VIRTUAL_ENV); with no --python, validate judges the user's venv. A sitecustomize in that venv
    records which interpreter ran the workers."""
    import os

    user = tmp_path / "user-venv"
    venv.create(user, with_pip=False, system_site_packages=True)
    site = next((user / "lib").glob("python3*/site-packages"))
    marks = tmp_path / "ran-here"
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"open({str(marks)!r}, 'a').write(sys.executable + '\\n')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["VIRTUAL_ENV"] = str(user)
    out = subprocess.run([*_envcheck(), "validate", "--format", "json", "--checks", "gemm", "--profile", "quick"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"the workload runs under {user / 'bin' / 'python'} (active venv {user} (VIRTUAL_ENV))" in out.stderr
    ran = set(marks.read_text().split())
    assert ran == {str(user / "bin" / "python")}, ran  # every child: the user's venv, none in envcheck's
    doc = json.loads(out.stdout)
    assert doc["verdict"] == "passed" and doc["versions"]["python_executable"] == str(user / "bin" / "python")
