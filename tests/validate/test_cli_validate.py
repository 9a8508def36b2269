"""`envcheck validate` end to end on the CPU path: options, faults injected, the report always written.

The faults come from the test-only ENVCHECK_FAULT hooks (envcheck/validate/faults.py), read
only by the check workers and all-reduce ranks, so each travels the path a real failure takes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck.cli import cli

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["validate", *args], catch_exceptions=False)


def test_help_and_validate_module_import_no_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom envcheck.cli import cli\n"
            "r = CliRunner().invoke(cli, ['validate', '--help'])\nassert r.exit_code == 0, r.output\n"
            "import envcheck.validate.runner, envcheck.validate.app, envcheck.report.validate\n"
            "import envcheck.validate.checks.allreduce, envcheck.validate.checks.gemm\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args, message", [
    (["--checks", "cnn,bogus"], "unknown check(s) bogus; choose from cnn, amp, compile, allreduce, gemm, memory"),
    (["--duration", "30"], "--duration only applies to --profile burn-in"),
    (["--device", "cuda", "--procs", "2"], "--procs sets CPU all-reduce ranks"),
    (["--device", "cpu", "--gpus", "1"], "--gpus selects CUDA devices"),
    (["--report", "/nonexistent-dir/r.json"], "the directory of /nonexistent-dir/r.json does not exist"),
    (["--quick", "--profile", "standard"], "--quick runs --profile quick; drop --profile standard"),
    (["--quick", "--duration", "30"], "--duration only applies to --profile burn-in"),
    (["--budget", "0"], "Invalid value for '--budget'"),
])
def test_bad_options_exit_2_with_one_line(args, message):
    r = invoke(*args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert r.stdout == ""


@needs_torch
@pytest.mark.parametrize("args", [["--gpus", "1"], ["--device", "cuda"]])
def test_gpus_on_a_machine_without_gpu_exits_2_saying_how_many_devices(args):
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has a GPU")
    r = invoke(*args)
    assert r.exit_code == 2
    error = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1 and "0 CUDA devices visible to torch" in error[0]


def test_broken_torch_fails_the_run_with_one_line_and_a_report(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "broken_torch" / "raises"))
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    r = invoke("--format", "json", "--report", str(report), "--junit", str(junit))
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("envcheck:")]
    assert len(lines) == 1 and "validate needs a working torch" in lines[0] and "envcheck install" in lines[0]
    doc = json.loads(report.read_text())
    assert doc == json.loads(r.stdout)
    assert doc["verdict"] == "failed" and {c["status"] for c in doc["checks"]} == {"fail"}
    from envcheck.validate.checks import REGISTRY

    assert ET.parse(junit).getroot().find("testsuite").get("errors") == str(len(REGISTRY))  # every check


@needs_torch
@pytest.mark.slow
def test_cpu_path_end_to_end_all_six_checks_pass(tmp_path):
    """The issue's "Done when": on a CPU machine every check passes and the verdict is passed."""
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env.pop("ENVCHECK_FAULT", None)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "envcheck", "validate", "--format", "json", "--report", str(report),
                          "--junit", str(junit)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc == json.loads(report.read_text())
    assert [(c["name"], c["status"]) for c in doc["checks"]] == [
        (n, "pass") for n in ("cnn", "amp", "compile", "allreduce", "gemm", "memory", "transformer", "collectives")
    ] + [("p2p", "skip"), ("ddp", "pass")], doc["checks"]
    assert doc["verdict"] == "passed" and doc["device"] == "cpu" and doc["world_size"] == 2
    metrics = {c["name"]: c["metrics"] for c in doc["checks"]}
    assert metrics["cnn"]["bit_identical"] is True and metrics["cnn"]["loss_drop"] >= 4
    assert metrics["allreduce"]["backend"] == "gloo" and metrics["allreduce"]["wrong"] == 0
    assert metrics["gemm"]["mismatched_products"] == 0 and metrics["gemm"]["fp32_tflops"] > 0
    assert metrics["compile"]["compiled"] is True
    assert doc["versions"]["torch"] and doc["machine"]["hostname"]
    assert doc["timings"]["total_s"] <= took + 1
    assert all(f["status"] == "unjudged" for f in doc["figures"])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("11", "0", "0", "1")
    assert "validate: [6/10] memory: started" in out.stderr
    assert doc["checks"][0]["details"]["watch"]["reason"].startswith("not available, because the run is on the CPU")


@needs_torch
def test_burn_in_repeats_the_stress_loops_for_the_duration(tmp_path):
    t0 = time.monotonic()
    r = invoke("--checks", "gemm,memory", "--profile", "burn-in", "--duration", "6", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    gemm, memory = doc["checks"]
    # 4 s of GEMM over 3 CPU dtypes and 2 s of pattern passes, far more than the standard profile's 30 products
    # GEMM gets about 2/3 of the 6 s; the margin absorbs the loop's stopping granularity.
    assert gemm["seconds"] >= 3.5 and gemm["metrics"]["products_compared"] > 30
    # Memory gets about 1/3: its time is asserted, not a pass count (one 256 MiB pass can take
    # over a second on a loaded 2-core machine).
    assert memory["seconds"] >= 1.5 and memory["metrics"]["pattern_passes"] >= 1
    assert memory["metrics"]["pattern_mismatched_words"] == 0
    assert doc["profile"] == "burn-in" and doc["options"]["duration"] == 6
    assert time.monotonic() - t0 < 120


@needs_torch
@pytest.mark.parametrize("fault, checks, extra, failing, expect", [
    ("cnn.raise", "cnn,gemm", [], "cnn", "RuntimeError: injected fault: cnn raised"),
    ("gemm.oom", "cnn,gemm", [], "gemm", "out of memory: CUDA out of memory"),
    ("cnn.nan:step=5", "cnn,gemm", [], "cnn", "loss is NaN/Inf from step 5"),
    ("gemm.sdc:dtype=fp32", "gemm,memory", [], "gemm",
     "cpu fp32: 1 of 3 repeated products differ from the first (first: product 2, 1 element(s)): silent data corruption"),
    ("memory.flip", "gemm,memory", [], "memory", "1 word(s) read back wrong in the pattern test (first: pattern 0x55555555"),
    ("allreduce.hang:rank=1:op=2", "allreduce,gemm", ["--timeout", "3", "--allreduce-max-mib", "1"], "allreduce",
     "all-reduce hung: no rank progressed for 3 s; stuck rank(s) 1"),
    ("allreduce.exit:rank=1:op=1", "allreduce,gemm", ["--allreduce-max-mib", "1"], "allreduce",
     "all-reduce failed: rank 1 exited with code 3 after 'finished all_reduce #0 (1 KiB, checked)'"),
    ("allreduce.wrong:rank=0", "allreduce,gemm", ["--allreduce-max-mib", "1"], "allreduce",
     "wrong element(s) summed over ranks, first at 1 KiB"),
])
def test_injected_fault_fails_its_check_only_and_the_report_is_written(
        monkeypatch, process_tag, tmp_path, fault, checks, extra, failing, expect):
    monkeypatch.setenv("ENVCHECK_FAULT", fault)
    report = tmp_path / "r.json"
    r = invoke("--checks", checks, "--profile", "quick", "--format", "json", "--report", str(report), *extra)
    assert r.exit_code == 1, r.output
    doc = json.loads(report.read_text())
    assert doc == json.loads(r.stdout)
    status = {c["name"]: c for c in doc["checks"]}
    assert status[failing]["status"] == "fail"
    assert expect in status[failing]["message"], status[failing]["message"]
    others = [c for c in doc["checks"] if c["name"] != failing]
    assert others and all(c["status"] == "pass" for c in others), others
    assert doc["verdict"] == "failed"
    assert process_tag() == []


@needs_torch
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_the_check_and_still_writes_the_report(tmp_path, process_tag, sig):
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    env = dict(os.environ, ENVCHECK_FAULT="cnn.stall")
    proc = subprocess.Popen([sys.executable, "-m", "envcheck", "validate", "--checks", "cnn,gemm", "--report",
                             str(report), "--junit", str(junit), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "cnn: started" in line or time.monotonic() > deadline:
                break
        time.sleep(2.0)  # the worker is importing torch or already stalled inside the check
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    doc = json.loads(report.read_text())
    assert doc["interrupted"] is True and doc["verdict"] == "failed"
    assert [(c["name"], c["status"]) for c in doc["checks"]] == [("cnn", "fail"), ("gemm", "skip")]
    assert "interrupted" in doc["checks"][0]["message"]
    assert json.loads(out)["interrupted"] is True
    assert ET.parse(junit).getroot().find("testsuite").get("skipped") == "1"
    assert process_tag() == []


@needs_torch
def test_quick_runs_the_health_check_set_within_its_budget(tmp_path, process_tag):
    """`validate --quick` (recipes/cluster/healthcheck.sh): the four hardware checks, profile quick,
    a 50 s budget recorded in the report. Measured 13-16 s on the 2-core CI host."""
    report = tmp_path / "r.json"
    r = invoke("--quick", "--format", "json", "--report", str(report))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [c["name"] for c in doc["checks"]] == ["cnn", "allreduce", "gemm", "memory"]
    assert all(c["status"] == "pass" for c in doc["checks"]), doc["checks"]
    assert (doc["profile"], doc["options"]["budget"], doc["verdict"]) == ("quick", 50.0, "passed")
    assert doc["timings"]["total_s"] < 50.0
    assert process_tag() == []
