"""Against a real slurmctld/slurmd (conftest.py): srun, launch detection in a real step, --drain."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck.cli import cli
from envcheck.cluster import slurm
from envcheck.cluster.exitmodes import Outcome
from envcheck.findings import Finding, Severity

SNAPSHOT = "tests/fixtures/snapshots/example_8xh100.json"
RANK_SCRIPT = Path(__file__).with_name("rank_script.py")
FAILED = Outcome("fail", True, "1 error", ("torch.missing",))
PASSED = Outcome("ok", False, "no problems found")


def test_srun_two_tasks(slurm):
    res = slurm.run("srun", "-n", "2", "true")
    assert res.returncode == 0
    res = slurm.run("srun", "-n", "2", "bash", "-c", "echo $SLURM_PROCID/$SLURM_NTASKS")
    assert sorted(res.stdout.split()) == ["0/2", "1/2"]


def test_launch_detection_inside_a_real_srun_step(slurm):
    code = ("import json, os; from envcheck.cluster.launch import detect; "
            "print(json.dumps(detect(os.environ).to_dict()))")
    res = slurm.run("srun", "-n", "2", sys.executable, "-c", code)
    ranks = sorted((json.loads(line) for line in res.stdout.splitlines()), key=lambda d: d["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    for r in ranks:
        assert r["launcher"] == "srun" and r["world_size"] == 2 and r["local_world_size"] == 2
        assert r["node_rank"] == 0 and r["num_nodes"] == 1 and r["hosts"] == [slurm.node]
        assert r["master_addr"] == slurm.node and r["hostname"] == slurm.node
    assert ranks[0]["local_rank"] != ranks[1]["local_rank"]
    assert ranks[0]["master_port"] == ranks[1]["master_port"]


def test_drain_on_failure_then_resume_on_success(slurm):
    env = {"SLURMD_NODENAME": slurm.node}
    r = slurm_apply(slurm, FAILED, env)
    assert (r.action, r.ok) == ("drain", True), r.message
    assert slurm.reason() == "envcheck: 1 error: torch.missing"
    assert slurm.state() in ("drained", "draining")
    # running again with the same failure changes nothing
    assert slurm_apply(slurm, FAILED, env).action == "none"
    r = slurm_apply(slurm, PASSED, env)
    assert (r.action, r.ok) == ("resume", True), r.message
    slurm.wait_state("idle")
    assert slurm.reason() == ""


def test_foreign_reason_is_never_overwritten_nor_resumed(slurm):
    slurm.run("scontrol", "update", f"NodeName={slurm.node}", "State=DRAIN", "Reason=ops: replacing a fan")
    env = {"SLURMD_NODENAME": slurm.node}
    assert slurm_apply(slurm, FAILED, env).action == "none"
    assert slurm.reason() == "ops: replacing a fan"
    assert slurm_apply(slurm, PASSED, env).action == "none"
    assert slurm.reason() == "ops: replacing a fan" and slurm.state() in ("drained", "draining")


def test_our_reason_is_updated_when_the_failure_changes(slurm):
    env = {"SLURMD_NODENAME": slurm.node}
    slurm_apply(slurm, FAILED, env)
    r = slurm_apply(slurm, Outcome("fail", True, "2 errors", ("nvidia.ecc", "host.shm")), env)
    assert r.action == "drain"
    assert slurm.reason() == "envcheck: 2 errors: nvidia.ecc, host.shm"


def slurm_apply(cluster, outcome, env):
    """slurm.apply with the real scontrol of the test cluster."""
    def runner(argv, timeout):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=cluster.env)
        return p.returncode, p.stdout, p.stderr
    return slurm.apply(outcome, runner=runner, env=env)


@pytest.mark.parametrize("exit_mode, code", [("binary", 1), ("nagios", 2), ("npd", 1)])
def test_doctor_drain_cli_against_real_slurm(slurm, monkeypatch, exit_mode, code):
    import envcheck.rules as rules

    monkeypatch.setattr(rules, "evaluate", lambda s, **_: [Finding("torch.missing", Severity.ERROR, "t")])
    env = {"SLURM_CONF": str(slurm.conf), "SLURMD_NODENAME": slurm.node}
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", SNAPSHOT, "--drain", "--exit-codes", exit_mode], env=env)
    assert res.exit_code == code, res.output
    assert slurm.reason() == "envcheck: 1 error: torch.missing"
    monkeypatch.setattr(rules, "evaluate", lambda s, **_: [])
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", SNAPSHOT, "--drain", "--exit-codes", exit_mode], env=env)
    assert res.exit_code == 0 and "resumed" in res.stderr
    slurm.wait_state("idle")


def test_srun_ranks_report_to_rank_zero(slurm):
    """launch.detect + channel + aggregate in a real srun step: one cluster report from rank 0."""
    res = slurm.run("srun", "-n", "2", sys.executable, str(RANK_SCRIPT), timeout=120)
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["verdict"] == "passed" and rep["world_size"] == 2 and rep["missing_ranks"] == []
    (node,) = rep["nodes"]
    assert node["hostname"] == slurm.node and [r["rank"] for r in node["ranks"]] == [0, 1]


def test_healthcheck_recipe_end_to_end(slurm, tmp_path):
    """recipes/cluster/healthcheck.sh as slurmd runs it (almost empty environment), real scontrol.

    A stand-in `envcheck` diagnoses a saved snapshot instead of this machine, so the verdict is
    known: first a node with ECC errors (drained, reason names the findings), then a healthy
    one (resumed), with the Prometheus file written each time.
    """
    from envcheck import recipes

    script = tmp_path / "healthcheck.sh"
    script.write_text(recipes.text("cluster/healthcheck.sh"))
    wrapper = tmp_path / "envcheck"
    wrapper.write_text(f'#!/bin/bash\nexec {sys.executable} -m envcheck "$1" --snapshot "$SNAP" "${{@:2}}"\n')
    wrapper.chmod(0o755)
    prom_dir = tmp_path / "textfile"
    prom_dir.mkdir()
    fixtures = Path(__file__).parents[1] / "fixtures" / "snapshots"

    def healthcheck(snapshot: str) -> subprocess.CompletedProcess:
        env = {"SLURMD_NODENAME": slurm.node, "SLURM_CONF": str(slurm.conf), "ENVCHECK": str(wrapper),
               "PYTHONPATH": os.environ["PYTHONPATH"],
               "ENVCHECK_LOG": str(tmp_path / "hc.log"), "ENVCHECK_PROM_DIR": str(prom_dir),
               "SNAP": str(fixtures / snapshot)}
        return subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=90)

    res = healthcheck("ecc_errors.json")
    assert res.returncode == 2, (res.stderr, (tmp_path / "hc.log").read_text())  # nagios CRITICAL
    assert slurm.reason().startswith("envcheck: 2 errors: nvidia.ecc-uncorrectable")
    assert 'envcheck_doctor_findings{severity="error"} 2' in (prom_dir / "envcheck.prom").read_text()

    res = healthcheck("healthy_8xh100.json")
    assert res.returncode == 0, (tmp_path / "hc.log").read_text()
    slurm.wait_state("idle")
    assert slurm.reason() == ""
    log = (tmp_path / "hc.log").read_text()
    assert "rc=2 ENVCHECK CRITICAL - 2 errors" in log and "rc=0 ENVCHECK OK" in log
    assert "--drain: node" in log and "resumed" in log


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_srun_validate_allreduce(slurm, tmp_path):
    """`srun -n 2 envcheck validate --checks allreduce`: srun mode, env:// from the Slurm node list."""
    env = dict(slurm.env, OMP_NUM_THREADS="1")
    res = subprocess.run(["srun", "-n", "2", "--kill-on-bad-exit=1", sys.executable, "-m", "envcheck", "validate",
                          "--checks", "allreduce", "--allreduce-max-mib", "1", "--timeout", "30",
                          "--format", "json", "--report", str(tmp_path / "cluster.json"),
                          "--prom-file", str(tmp_path / "envcheck.prom")],
                         capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)  # one report, from rank 0 only
    assert rep == json.loads((tmp_path / "cluster.json").read_text())
    assert rep["verdict"] == "passed" and rep["world_size"] == 2 and rep["launch"]["launcher"] == "srun"
    (node,) = rep["nodes"]
    assert node["hostname"] == slurm.node and [r["rank"] for r in node["ranks"]] == [0, 1]
    ar = node["ranks"][1]["checks"][0]
    assert ar["name"] == "allreduce" and ar["status"] == "pass" and ar["metrics"]["backend"] == "gloo"
    assert f'envcheck_node_verdict{{node="{slurm.node}",verdict="passed"}} 1' in (tmp_path / "envcheck.prom").read_text()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_healthcheck_recipe_quick_runs_a_real_workload_inside_slurms_60_s(slurm, tmp_path):
    """ENVCHECK_CHECK=quick: healthcheck.sh runs the real `validate --quick` (torch imported, four
    checks run on this machine) as slurmd would, and finishes inside Slurm's 60 s limit."""
    import time

    from envcheck import recipes

    script = tmp_path / "healthcheck.sh"
    script.write_text(recipes.text("cluster/healthcheck.sh"))
    wrapper = tmp_path / "envcheck"
    wrapper.write_text(f'#!/bin/bash\nexec {sys.executable} -m envcheck "$@"\n')
    wrapper.chmod(0o755)
    env = {"SLURMD_NODENAME": slurm.node, "SLURM_CONF": str(slurm.conf), "ENVCHECK": str(wrapper),
           "ENVCHECK_CHECK": "quick", "PYTHONPATH": os.environ["PYTHONPATH"], "OMP_NUM_THREADS": "1",
           "ENVCHECK_LOG": str(tmp_path / "hc.log"), "ENVCHECK_PROM_DIR": str(tmp_path / "none")}
    t0 = time.monotonic()
    res = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - t0
    log = (tmp_path / "hc.log").read_text()
    assert res.returncode == 0, log[-3000:]
    assert elapsed < 60, (elapsed, log[-2000:])  # the script's own `timeout 55` would have said rc=124
    assert "rc=0 ENVCHECK OK - passed" in log, log[-2000:]
    assert "validate: memory: PASS" in log  # the checks really ran
    assert slurm.state() == "idle" and slurm.reason() == ""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_certify_sbatch_recipe_under_real_sbatch(slurm, tmp_path):
    """recipes/cluster/certify.sbatch submitted with the real `sbatch --wait`: doctor on each node,
    then the srun certification step; rank 0's report and JUnit land in ENVCHECK_OUT. This cluster
    has one node, 2 CPUs and no GPUs, so the node/task counts are overridden on the command line
    and the --gpus-per-node header is dropped (no GRES configured here)."""
    from envcheck import recipes

    text = recipes.text("cluster/certify.sbatch")
    script = tmp_path / "certify.sbatch"
    script.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("#SBATCH --gpus-per-node")))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "envcheck").write_text(f'#!/bin/bash\nexec {sys.executable} -m envcheck "$@"\n')
    (bindir / "envcheck").chmod(0o755)
    out = tmp_path / "out"
    env = dict(slurm.env, PATH=f"{bindir}:{os.environ['PATH']}", OMP_NUM_THREADS="1", ENVCHECK_OUT=str(out),
               ENVCHECK_CHECKS="allreduce", ENVCHECK_PAIRWISE="1")
    res = subprocess.run(["sbatch", "--wait", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                          f"--output={tmp_path}/job.out", str(script)],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert res.returncode == 0, (res.stdout, res.stderr, log[-3000:], slurm.logs())
    assert "ENVCHECK " in log  # the doctor line (nagios mode) from each node
    rep = json.loads((out / "report.json").read_text())
    assert rep["verdict"] == "passed" and rep["world_size"] == 2 and rep["num_nodes"] == 1
    assert rep["pairwise"]["skipped"] == "one node: --pairwise needs two or more"
    import xml.etree.ElementTree as ET

    assert ET.parse(out / "junit.xml").getroot().get("failures") == "0"
