"""recipes/cluster/healthcheck.sh and prolog.sh probe this machine for real, under the real
Slurm test cluster (conftest.py), with envcheck installed without a usable torch: the node is
judged, not envcheck's own Python environment, so a healthy node is never drained.

envcheck's "own environment" here has a torch that cannot be imported (a stand-in package first
on PYTHONPATH that records being imported, then raises ImportError): the full doctor calls that
an error and would drain; the node scope must not even start an interpreter to look.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envcheck import recipes


@pytest.fixture
def broken_torch_envcheck(tmp_path) -> tuple[Path, Path]:
    """An `envcheck` command whose Python sees only a torch that fails to import."""
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    marker = tmp_path / "torch-was-imported"
    (fake / "__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write('imported\\n')\n"
        "raise ImportError('this torch is broken (test stand-in)')\n")
    wrapper = tmp_path / "envcheck"
    pythonpath = os.pathsep.join([str(tmp_path / "site"), os.environ["PYTHONPATH"]])
    wrapper.write_text(f'#!/bin/bash\nPYTHONPATH={pythonpath} exec {sys.executable} -m envcheck "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, marker


def test_full_doctor_would_fail_on_the_tools_broken_torch(broken_torch_envcheck, tmp_path):
    """The stand-in really breaks the tool's environment (so the next test can fail)."""
    wrapper, marker = broken_torch_envcheck
    res = subprocess.run([str(wrapper), "doctor", "--exit-codes", "nagios"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "VIRTUAL_ENV": "", "CONDA_PREFIX": ""},
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "torch.import-failed" in res.stdout, (res.stdout, res.stderr)
    assert marker.exists()


def test_healthcheck_does_not_drain_a_healthy_node_without_torch(slurm, broken_torch_envcheck, tmp_path):
    wrapper, marker = broken_torch_envcheck
    script = tmp_path / "healthcheck.sh"
    script.write_text(recipes.text("cluster/healthcheck.sh"))
    log = tmp_path / "hc.log"
    # As slurmd runs it: an almost empty environment (the script sets PATH itself).
    env = {"SLURMD_NODENAME": slurm.node, "SLURM_CONF": str(slurm.conf), "ENVCHECK": str(wrapper),
           "ENVCHECK_LOG": str(log), "ENVCHECK_PROM_DIR": str(tmp_path / "none")}
    res = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=90,
                         cwd=tmp_path)
    text = log.read_text()
    # 0 OK, or 1 WARNING on a machine with a host warning (a small /dev/shm): never CRITICAL.
    assert res.returncode in (0, 1), text
    assert f"{slurm.node} rc={res.returncode} ENVCHECK" in text
    assert "torch" not in text.split(f"rc={res.returncode}", 1)[1]
    assert not marker.exists()  # no interpreter was asked about torch
    assert slurm.state() == "idle" and slurm.reason() == ""


def test_prolog_passes_a_healthy_node_without_torch(broken_torch_envcheck, tmp_path):
    wrapper, marker = broken_torch_envcheck
    script = tmp_path / "prolog.sh"
    script.write_text(recipes.text("cluster/prolog.sh"))
    log = tmp_path / "prolog.log"
    env = {"SLURMD_NODENAME": "gpu01", "SLURM_JOB_ID": "42", "ENVCHECK": str(wrapper), "ENVCHECK_LOG": str(log)}
    res = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert res.returncode == 0, log.read_text()
    assert "job=42 node=gpu01 rc=0" in log.read_text()
    assert not marker.exists()
