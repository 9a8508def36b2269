"""The runner: isolation, the report always written, Ctrl-C, stalls, and no leftover process.

In-process tests use fake checks (no torch); subprocess tests run the real workers with the
test-only ENVCHECK_FAULT hooks (envcheck/validate/faults.py).
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from envcheck.validate import runner
from envcheck.validate.checks import CheckSpec
from envcheck.validate.config import ValidateConfig
from envcheck.validate.results import CheckResult, ValidationReport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass(frozen=True)
class FakeSpec(CheckSpec):
    func: Callable | None = None

    def load(self):
        return self.func


def ok(ctx):
    ctx.progress(0.5, "half way")
    return CheckResult(ctx.name, "pass", {"x": 1.0}, "fine")


def boom(ctx):
    raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")


def interrupt(ctx):
    raise KeyboardInterrupt


def registry(**funcs):
    return {name: FakeSpec(name, name, "unused:unused", func=f) for name, f in funcs.items()}


class Recorder(runner.Listener):
    def __init__(self):
        self.events = []

    def start(self, name, index, total):
        self.events.append(("start", name, index, total))

    def progress(self, name, fraction, note):
        self.events.append(("progress", name, fraction, note))

    def end(self, result):
        self.events.append(("end", result.name, result.status))


def test_an_exception_fails_only_its_check_and_every_report_is_persisted():
    saved: list[ValidationReport] = []
    rec = Recorder()
    report = runner.run(ValidateConfig(), ["a", "b", "c"], {}, isolation="inprocess", listener=rec,
                        persist=saved.append, registry=registry(a=ok, b=boom, c=ok))
    assert [c.status for c in report.checks] == ["pass", "fail", "pass"]
    b = report.check("b")
    assert b.error["kind"] == "oom" and b.message.startswith("out of memory: CUDA out of memory.")
    assert report.verdict == "failed" and report.reasons[0].startswith("b failed: out of memory")
    # before the run, after each check, and the final one
    assert len(saved) == 5
    assert [c.status for c in saved[0].checks] == ["skip"] * 3 and saved[0].interrupted
    assert saved[-1] is report and not report.interrupted
    assert ("progress", "a", 0.5, "half way") in rec.events
    assert [e for e in rec.events if e[0] == "end"] == [("end", "a", "pass"), ("end", "b", "fail"),
                                                         ("end", "c", "pass")]
    assert set(report.timings["checks"]) == {"a", "b", "c"}
    json.dumps(report.to_dict())


def test_ctrl_c_marks_the_running_check_skips_the_rest_and_still_persists():
    saved: list[ValidationReport] = []
    report = runner.run(ValidateConfig(), ["a", "b", "c"], {}, isolation="inprocess", persist=saved.append,
                        registry=registry(a=ok, b=interrupt, c=ok))
    assert report.interrupted
    assert [(c.name, c.status) for c in report.checks] == [("a", "pass"), ("b", "fail"), ("c", "skip")]
    assert "interrupted" in report.check("b").message
    assert report.check("c").message == "not run: the run was interrupted"
    assert report.verdict == "failed"
    assert saved[-1] is report


def test_unmet_needs_skip_with_the_reason():
    reg = registry(a=ok)
    reg["gpu_only"] = FakeSpec("gpu_only", "x", "unused:unused", needs_cuda=True, func=ok)
    report = runner.run(ValidateConfig(), ["a", "gpu_only"], {}, isolation="inprocess", registry=reg)
    assert report.check("gpu_only").status == "skip"
    assert report.check("gpu_only").message == "needs a CUDA device (running on the CPU)"
    assert report.verdict == "passed"


def test_machine_summary_reads_the_snapshot_contract():
    snapshot = json.loads((FIXTURES / "snapshots" / "example_8xh100.json").read_text())
    m = runner.machine_summary(snapshot)
    assert m["hostname"] == "gpu-node-017" and m["driver_version"] == "550.90.07"
    assert len(m["gpus"]) == 8 and m["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert m["gpus"][0]["pcie"] == "gen5 x16" and m["torch"]["version"] == "2.7.1+cu126"
    assert runner.machine_summary({})["gpus"] == []


# ------------------------------------------------------------------------ real workers

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")
QUICK = ValidateConfig(profile="quick", timeout=30)
INFO = {"distributed": {"available": True, "gloo": True}}


@needs_torch
def test_a_crashing_worker_fails_only_its_check(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "memory.crash")
    report = runner.run(QUICK, ["memory", "gemm"], INFO)
    mem, gemm = report.checks
    assert mem.status == "fail" and mem.error["kind"] == "crash"
    assert mem.message.startswith("the check's process crashed (SIGSEGV)")
    assert gemm.status == "pass", gemm.message
    assert report.verdict == "failed"
    assert process_tag() == []


@needs_torch
def test_a_stalled_worker_is_killed_after_timeout_plus_grace(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "cnn.stall")
    cfg = ValidateConfig(profile="quick", timeout=1)
    report = runner.run(cfg, ["cnn"], INFO, stall_grace=3)
    cnn = report.check("cnn")
    assert cnn.status == "fail" and cnn.error["kind"] == "hang"
    assert cnn.message.startswith("no progress for 4 s")
    assert process_tag() == []


@needs_torch
def test_the_budget_ends_the_run_failing_the_running_check_and_skipping_the_rest(monkeypatch, process_tag):
    """--budget / --quick: a stalled check is killed at the deadline, not after timeout + grace."""
    monkeypatch.setenv("ENVCHECK_FAULT", "gemm.stall")
    cfg = ValidateConfig(profile="quick", timeout=300, budget=6)
    t0 = time.monotonic()
    report = runner.run(cfg, ["gemm", "memory"], INFO, deadline=t0 + 6)
    elapsed = time.monotonic() - t0
    gemm, mem = report.checks
    assert gemm.status == "fail" and gemm.error["kind"] == "budget"
    assert gemm.message.startswith("did not finish within the run's 6 s budget")
    assert mem.status == "skip" and mem.message == "not run: the run's 6 s budget was spent"
    assert report.verdict == "failed"
    # Bounded by the deadline (plus killing the worker), not by the 300 s stall watchdog.
    assert elapsed < 60, elapsed
    assert process_tag() == []


@needs_torch
def test_an_oom_in_a_worker_is_a_failed_check_with_its_cause(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "gemm.oom")
    report = runner.run(QUICK, ["gemm"], INFO)
    gemm = report.check("gemm")
    assert gemm.status == "fail" and gemm.error["kind"] == "oom"
    assert gemm.error["type"] == "OutOfMemoryError"
    assert gemm.message.startswith("out of memory: CUDA out of memory. Tried to allocate 20.00 GiB")
    assert process_tag() == []


@needs_torch
def test_preflight_describes_this_torch():
    pre = runner.preflight()
    assert pre.ok, pre.error
    assert pre.info["torch"] and pre.info["distributed"]["available"] is True
    assert isinstance(pre.info["device_count"], int)


def test_preflight_of_a_broken_torch_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "broken_torch" / "raises"))
    pre = runner.preflight()
    assert not pre.ok
    assert pre.error.startswith("torch is not usable in ") and "ImportError" in pre.error


def test_failed_report_when_torch_is_missing():
    report = runner.failed_report(ValidateConfig(), ["cnn", "gemm"], "torch is not usable here: No module")
    assert report.verdict == "failed"
    assert all(c.status == "fail" and c.error["kind"] == "environment" for c in report.checks)


def test_ctrl_c_during_the_preflight_still_gives_an_interrupted_report(monkeypatch):
    from envcheck.validate import app

    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "preflight", interrupted)
    prep = app.prepare(machine=False)
    assert not prep.preflight.ok and prep.preflight.error == runner.INTERRUPTED_BEFORE_CHECKS
    report = runner.failed_report(ValidateConfig(), ["cnn", "gemm"], prep.preflight.error)
    assert report.interrupted and report.verdict == "failed"
    assert [(c.name, c.status) for c in report.checks] == [("cnn", "skip"), ("gemm", "skip")]
