"""The fork server: one torch import, one forked child per check, isolation kept.

Real workers under the fork server, faults injected with the test-only ENVCHECK_FAULT hooks
(envcheck/validate/faults.py); the process table is read after each run: no child and no
server survives it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from envcheck.validate import forkserver, runner
from envcheck.validate.config import ValidateConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")
pytestmark = pytest.mark.skipif(not forkserver.SUPPORTED, reason="no fork server on this platform")
QUICK = ValidateConfig(profile="quick", timeout=30)
INFO = {"distributed": {"available": True, "gloo": True}}


def _server_pid(pool: forkserver.Pool) -> int:
    assert pool.server is not None
    return pool.server.child.pid


@needs_torch
def test_the_preflight_is_the_servers_one_torch_import(process_tag):
    with forkserver.Pool() as pool:
        pre = runner.preflight(pool=pool)
        server = _server_pid(pool)
        assert pre.ok, pre.error
        assert pre.worker == "forked"
        assert pre.info["torch"] and pre.info["distributed"]["available"] is True
        assert pre.info["torch_import_s"] == pool.server.torch_import_s > 0
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE
    assert process_tag() == []


@needs_torch
@pytest.mark.parametrize("fault, signame", [("crash", "SIGSEGV"), ("abort", "SIGABRT"), ("kill", "SIGKILL")])
def test_a_crashing_forked_check_fails_only_that_check(monkeypatch, process_tag, fault, signame):
    monkeypatch.setenv("ENVCHECK_FAULT", f"memory.{fault}")
    with forkserver.Pool() as pool:
        report = runner.run(QUICK, ["memory", "gemm"], INFO, pool=pool)
        server = _server_pid(pool)
        assert psutil.pid_exists(server)  # the crash took its child only
    mem, gemm = report.checks
    assert report.timings["workers"] == {"memory": "forked", "gemm": "forked"}
    assert mem.status == "fail" and mem.error["kind"] == "crash"
    assert mem.message.startswith(f"the check's process crashed ({signame})")
    assert gemm.status == "pass", gemm.message
    assert process_tag() == []


@needs_torch
def test_a_hung_forked_check_is_killed_by_the_watchdog_and_nothing_survives(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "cnn.stall")
    cfg = ValidateConfig(profile="quick", timeout=1)
    with forkserver.Pool() as pool:
        report = runner.run(cfg, ["cnn"], INFO, stall_grace=3, pool=pool)
        # the hung child is gone while the server still runs
        assert [p.pid for p in process_tag()] == [_server_pid(pool)]
    cnn = report.check("cnn")
    assert report.timings["workers"] == {"cnn": "forked"}
    assert cnn.status == "fail" and cnn.error["kind"] == "hang"
    assert cnn.message.startswith("no progress for 4 s")
    assert process_tag() == []


@needs_torch
def test_the_budget_kills_a_forked_check_at_the_deadline(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "gemm.stall")
    cfg = ValidateConfig(profile="quick", timeout=300, budget=6)
    t0 = time.monotonic()
    with forkserver.Pool() as pool:
        report = runner.run(cfg, ["gemm", "memory"], INFO, deadline=t0 + 6, pool=pool)
    gemm, mem = report.checks
    assert gemm.status == "fail" and gemm.error["kind"] == "budget"
    assert mem.status == "skip"
    assert time.monotonic() - t0 < 60
    assert process_tag() == []


@needs_torch
def test_a_server_that_cannot_start_falls_back_to_fresh_workers(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "forkserver.exit")
    with forkserver.Pool() as pool:
        pre = runner.preflight(pool=pool)
        report = runner.run(QUICK, ["gemm"], pre.info, pool=pool)
    assert pre.ok, pre.error
    assert pre.worker.startswith("fresh: the fork server did not start")
    assert report.check("gemm").status == "pass"
    assert report.timings["workers"]["gemm"].startswith("fresh: the fork server did not start")
    assert process_tag() == []


@needs_torch
def test_a_server_that_refuses_to_fork_falls_back_to_fresh_workers(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "forkserver.cuda")
    with forkserver.Pool() as pool:
        report = runner.run(QUICK, ["gemm"], INFO, pool=pool)
    assert report.check("gemm").status == "pass"
    assert report.timings["workers"]["gemm"] == "fresh: torch initialised CUDA in the fork server (injected fault)"
    assert process_tag() == []


@needs_torch
def test_a_server_killed_between_checks_falls_back_to_fresh_workers(process_tag):
    with forkserver.Pool() as pool:
        first = runner.run(QUICK, ["gemm"], INFO, pool=pool)
        os.kill(_server_pid(pool), signal.SIGKILL)
        time.sleep(0.5)
        second = runner.run(QUICK, ["gemm"], INFO, pool=pool)
    assert first.timings["workers"] == {"gemm": "forked"}
    assert second.timings["workers"]["gemm"].startswith("fresh: the fork server is gone")
    assert second.check("gemm").status == "pass"
    assert process_tag() == []


def test_a_broken_torch_fails_the_preflight_with_its_reason(monkeypatch, process_tag):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "broken_torch" / "raises"))
    with forkserver.Pool() as pool:
        pre = runner.preflight(pool=pool)
    assert not pre.ok
    assert pre.error.startswith("torch is not usable in ") and "ImportError" in pre.error
    assert process_tag() == []


def test_a_hanging_torch_import_in_the_server_is_reported_and_killed(monkeypatch, process_tag):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "broken_torch" / "hangs"))
    with forkserver.Pool() as pool:
        pre = runner.preflight(pool=pool, timeout=3)
    assert not pre.ok
    assert pre.error == "importing torch did not finish within 3 s (hung)"
    assert process_tag() == []


def test_a_disabled_pool_uses_fresh_workers():
    pool = forkserver.Pool(enabled=False)
    with pytest.raises(forkserver.Unavailable, match="disabled"):
        pool.start({"mode": "info"}, {})


def test_cuda_untouched_in_a_plain_process():
    # pytest's process never imports torch (conftest): nothing here initialised CUDA
    assert forkserver.cuda_touched() is None


def _drain(child) -> None:
    from envcheck import proc

    with proc.Supervisor([child], deadline=time.monotonic() + 120) as sup:
        sup.watch()


@needs_torch
def test_an_environment_torch_reads_at_load_restarts_the_server_once(process_tag):
    base = dict(os.environ)
    with forkserver.Pool() as pool:
        _drain(pool.start({"mode": "info"}, {**base, "OMP_WAIT_POLICY": "PASSIVE"}))
        first = _server_pid(pool)
        # read when CUDA initialises, in the child: no restart
        _drain(pool.start({"mode": "info"}, {**base, "OMP_WAIT_POLICY": "PASSIVE", "CUDA_VISIBLE_DEVICES": "1"}))
        assert _server_pid(pool) == first
        # read when libgomp loads, with torch: one restart with that environment
        _drain(pool.start({"mode": "info"}, {**base, "OMP_WAIT_POLICY": "ACTIVE"}))
        assert _server_pid(pool) != first
        with pytest.raises(forkserver.Unavailable, match="differs"):
            pool.start({"mode": "info"}, {**base, "OMP_WAIT_POLICY": "PASSIVE"})
    assert process_tag() == []


def test_the_expected_device_follows_the_option_then_the_driver_nodes(monkeypatch):
    from envcheck.validate import procs

    assert procs.expected_device("cuda") == "cuda"
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert procs.expected_device(None) == "cuda"
    monkeypatch.setattr(os.path, "exists", lambda p: False)
    assert procs.expected_device(None) == "cpu"


def test_the_fork_server_can_be_switched_off_for_comparisons(monkeypatch):
    monkeypatch.setenv(forkserver.DISABLE_ENV, "0")
    with pytest.raises(forkserver.Unavailable, match="ENVCHECK_FORKSERVER=0"):
        forkserver.Pool().start({"mode": "info"}, {})
