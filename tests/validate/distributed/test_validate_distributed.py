"""`envcheck validate` in distributed mode: real torchrun agents and a real srun step, gloo on CPU.

Issue 5 "Done when": two "nodes" as two torchrun agents on 127.0.0.1 (c10d rendezvous, 2
processes each): the combined report lists both nodes and passes; an injected hang or exit fails
the run within the timeout, naming the rank and host, with nothing left running. Plus the pure
pieces of the mode (device choice, the all-reduce result, per-node drain).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import psutil
import pytest

from envcheck.cluster.launch import detect
from envcheck.validate import output
from envcheck.validate.distributed import mode as validate_mode

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(tag: str) -> list[str]:
    """Processes still alive that carry this run's tag in their environment (all its descendants)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and p.environ().get("ENVCHECK_TEST_TAG") == tag:
                out.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except psutil.Error:
            continue
    return out


def torchrun_validate(tmp_path, *args, fault=None, timeout_s=240, nnodes=2, nproc=2, checks="allreduce",
                     extra_env=None, agent_env=None):
    """``nnodes`` torchrun agents on loopback running validate; ``agent_env``: one extra environment
    per agent (then ``nnodes`` is its length, and the caller's NCCL_* variables are dropped too)."""
    port = _port()
    launch_vars = ("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_", "GROUP_", "TORCHELASTIC")
    if agent_env is not None:
        nnodes, launch_vars = len(agent_env), (*launch_vars, "NCCL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launch_vars)}
    env["OMP_NUM_THREADS"] = "1"
    env["ENVCHECK_TEST_TAG"] = tag = uuid.uuid4().hex
    if fault:
        env["ENVCHECK_FAULT"] = fault
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "envcheck",
           "--max-restarts", "0", "-m", "envcheck", "validate", "--checks", checks,
           "--allreduce-max-mib", "1", *args]
    t0 = time.time()
    agents = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**env, **(agent_env[i] if agent_env else {})},
                               cwd=tmp_path, start_new_session=True) for i in range(nnodes)]
    outs = []
    try:
        for a in agents:
            outs.append((*a.communicate(timeout=timeout_s), a.returncode))
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait(timeout=10)
    elapsed = time.time() - t0
    time.sleep(0.5)
    return outs, elapsed, _leftovers(tag)


def _json(outs):
    docs = [o for o, _, _ in outs if o.strip().startswith("{")]
    assert len(docs) == 1, [(o[-300:], e[-1500:]) for o, e, _ in outs]  # only rank 0 prints
    return json.loads(docs[0])


@needs_torch
@pytest.mark.slow
def test_two_torchrun_nodes_pass_with_one_report(tmp_path):
    # Two "nodes" sharing two cores measure noisy gloo bandwidths: stragglers are tested elsewhere
    # (test_torchrun.py, test_aggregate.py), so the threshold is opened wide here.
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--junit", "junit.xml", "--timeout", "30",
                                            "--straggler-threshold", "0.95")
    assert [rc for _, _, rc in outs] == [0, 0], [e[-1500:] for _, e, _ in outs]
    rep = _json(outs)
    assert rep["verdict"] == "passed" and rep["world_size"] == 4 and rep["num_nodes"] == 2
    assert [sorted(r["rank"] for r in n["ranks"]) for n in rep["nodes"]] == [[0, 1], [2, 3]]
    ar = rep["nodes"][1]["ranks"][1]["checks"][0]
    assert ar["name"] == "allreduce" and ar["status"] == "pass"
    assert ar["metrics"]["num_nodes"] == 2 and ar["metrics"]["world_size"] == 4
    assert ar["metrics"]["intranode_busbw_GBps"] > 0 and ar["metrics"]["world_busbw_GBps"] > 0
    root = ET.parse(tmp_path / "junit.xml").getroot()
    # a testcase per check per node, and a straggler testcase per node (issue 10, class 11: not per rank)
    assert root.get("tests") == "4" and root.get("failures") == "0"
    assert not left, left


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("fault, needle", [
    ("allreduce.hang:rank=3", "all-reduce hung: rank 3 ("),
    ("allreduce.exit:rank=2", "rank 2 ("),
])
def test_injected_fault_fails_within_the_timeout_naming_the_rank(tmp_path, fault, needle):
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "8",
                                            "--straggler-threshold", "0.95", fault=fault)
    rep = _json(outs)
    assert rep["verdict"] == "failed"
    assert any(r.startswith(needle) for r in rep["reasons"]), rep["reasons"]
    host = socket.gethostname().split(".")[0]
    assert any(host in r for r in rep["reasons"])
    if "exit" in fault:
        assert any("rank 2" in r and "exited with code 3" in r for r in rep["reasons"]), rep["reasons"]
    # 8 s without progress + start-up (torch imports on 4 ranks of a 2-core machine)
    assert elapsed < 90, elapsed
    assert [rc for _, _, rc in outs] == [0, 0]  # torchrun: verdict in the report, no exit-barrier wait
    assert not left, left


@needs_torch
@pytest.mark.slow
@pytest.mark.parametrize("fault, bad, verdict, why", [
    ("pairwise.wrong:node=1", 1, "failed", "wrong element(s) in the sums"),
    ("pairwise.slow:node=2:ms=40", 2, "degraded", "below the pairs' median"),
    # One side raises, the partner waits in the collective until the pair group's timeout
    # (--timeout / 2 on gloo): still a pair result, both sides' errors kept, and round 2 runs.
    ("pairwise.raise:node=1", 1, "failed", "RuntimeError: injected fault: pairwise.raise"),
])
def test_pairwise_names_the_bad_node_not_the_pair(tmp_path, fault, bad, verdict, why):
    """Three "nodes" (torchrun agents, one rank each): round 1 pairs (0,1) and (2,0); the pair
    holding the bad node fails, round 2 re-pairs its nodes with a known-good one, and only the
    bad node is blamed. The fault (test-only) hits the pair all-reduces, not the world sweep."""
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "10", "--pairwise",
                                            "--straggler-threshold", "0.5", fault=fault, nnodes=3, nproc=1)
    rep = _json(outs)
    pw = rep["pairwise"]
    assert [b["node_rank"] for b in pw["bad_nodes"]] == [bad], pw
    assert pw["bad_nodes"][0]["verdict"] == verdict and why in pw["bad_nodes"][0]["why"][0]
    assert pw["good_nodes"] == sorted({0, 1, 2} - {bad}) and pw["inconclusive_nodes"] == []
    assert [len(r) for r in pw["rounds"]] == [2, 2]  # (0,1), (2,0); then the failed pair's nodes
    assert rep["verdict"] == verdict
    assert [n["verdict"] for n in rep["nodes"]] == [verdict if n == bad else "passed" for n in range(3)]
    assert any(r.startswith(f"pairwise: node {bad} (") for r in rep["reasons"]), rep["reasons"]
    assert not left, left


@needs_torch
@pytest.mark.slow
def test_pairwise_on_healthy_nodes_passes_every_pair(tmp_path):
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "30", "--pairwise",
                                            "--straggler-threshold", "0.95", nnodes=3, nproc=1)
    rep = _json(outs)
    pw = rep["pairwise"]
    assert rep["verdict"] == "passed", rep["reasons"]
    assert pw["failed_pairs"] == 0 and pw["bad_nodes"] == [] and pw["good_nodes"] == [0, 1, 2]
    assert [[m["pair"] for m in r] for r in pw["rounds"]] == [[[0, 1], [2, 0]], []]
    assert all(m["busbw_GBps"] > 0 and m["wrong"] == 0 for m in pw["rounds"][0])
    assert not left, left


@needs_torch
@pytest.mark.slow
def test_pairwise_with_two_ranks_per_node_and_a_bad_node_that_cannot_be_told_apart(tmp_path):
    """Two nodes of two ranks: the pair group holds all four ranks; when it sums wrong, there is no
    known-good node to tell the two apart, so none is blamed and the cluster is degraded."""
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "30", "--pairwise",
                                            "--straggler-threshold", "0.95", fault="pairwise.wrong:node=1")
    rep = _json(outs)
    pw = rep["pairwise"]
    assert [[m["pair"] for m in r] for r in pw["rounds"]] == [[[0, 1]], []]
    assert pw["rounds"][0][0]["wrong"] > 0 and pw["bad_nodes"] == []
    assert pw["inconclusive_nodes"] == [0, 1] and rep["verdict"] == "degraded"
    assert [n["verdict"] for n in rep["nodes"]] == ["passed", "passed"]
    assert not left, left


@needs_torch
@pytest.mark.slow
def test_every_rank_runs_the_per_device_checks_and_nodes_are_compared(tmp_path):
    """GEMM and memory on every rank of both nodes (CPU here), the all-reduce across all ranks;
    rank 0's report holds each rank's figures."""
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "60", "--profile", "quick",
                                            "--straggler-threshold", "0.95", nnodes=2, nproc=1,
                                            checks="gemm,memory,allreduce")
    rep = _json(outs)
    assert rep["verdict"] == "passed", rep["reasons"]
    for node in rep["nodes"]:
        (rank,) = node["ranks"]
        assert [c["name"] for c in rank["checks"]] == ["allreduce", "gemm", "memory"]
        assert all(c["status"] == "pass" for c in rank["checks"]), rank["checks"]
        figures = {(f["check"], f["metric"]) for f in rank["figures"]}
        assert ("gemm", "fp32_tflops") in figures or any(c == "gemm" for c, _ in figures), figures
        assert any(c == "memory" for c, _ in figures), figures
    assert not left, left


# ---- pure pieces ------------------------------------------------------------------------------

INFO = detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
               "MASTER_ADDR": "h", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"})
PRE = {"device_count": 2, "devices": [{"index": 0, "name": "A"}, {"index": 1, "name": "B"}]}


def test_pick_device():
    Binding = validate_mode.Binding
    assert validate_mode.pick_device(INFO, PRE, None, {}) == Binding("cuda", 1, "1")
    assert validate_mode.pick_device(INFO, PRE, None, {"CUDA_VISIBLE_DEVICES": "4,6"}) == Binding("cuda", 1, "6")
    assert validate_mode.pick_device(INFO, PRE, "cpu", {}) == Binding("cpu")
    assert validate_mode.pick_device(INFO, {"device_count": 0}, None, {}) == Binding("cpu")
    three = detect({"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3",
                    "MASTER_ADDR": "h", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "x"})
    with pytest.raises(validate_mode.RankProblem, match="one task per GPU"):
        validate_mode.pick_device(three, PRE, None, {})
    with pytest.raises(validate_mode.RankProblem):
        validate_mode.pick_device(INFO, {"device_count": 0}, "cuda", {})


@pytest.mark.parametrize("local_rank, visible", [(0, "2"), (1, "3")])
def test_a_task_given_one_gpu_uses_it_whatever_its_local_rank(local_rank, visible):
    """srun --gpus-per-task=1: each local rank sees one device (its own CUDA_VISIBLE_DEVICES
    entry) as cuda:0; issue 9 found LOCAL_RANK >= 1 picking cuda:LOCAL_RANK and failing."""
    info = detect({"SLURM_STEP_ID": "0", "SLURM_PROCID": str(local_rank), "SLURM_NTASKS": "2",
                   "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": str(local_rank), "SLURM_NODEID": "0",
                   "SLURM_STEP_NODELIST": "n1", "SLURM_JOB_ID": "7", "SLURM_STEP_TASKS_PER_NODE": "2"})
    pre = {"device_count": 1, "devices": [{"index": 0, "name": f"GPU {visible}"}]}
    b = validate_mode.pick_device(info, pre, None, {"CUDA_VISIBLE_DEVICES": visible})
    assert b == validate_mode.Binding("cuda", 0, visible)
    assert validate_mode.narrowed_info(pre, b.kind, b.index)["devices"] == [{"index": 0, "name": f"GPU {visible}"}]


def test_narrowed_info():
    one = validate_mode.narrowed_info(PRE, "cuda", 1)
    assert one["device_count"] == 1 and one["devices"] == [{"index": 0, "name": "B"}]
    assert validate_mode.narrowed_info(PRE, "cpu", 1) == PRE


def _sweep(busbw, wrong=0):
    return {"rows": [{"bytes": 1024, "busbw_GBps": busbw / 2}, {"bytes": 4096, "busbw_GBps": busbw}],
            "max_bytes": 4096, "wrong": wrong}


def test_allreduce_result_judges_intranode_busbw_only():
    kw = dict(world=4, backend="nccl", timeout=10, error=None, exit_code=0, hung=False, last_mark="done", marks=9)
    r = validate_mode.allreduce_result(out={"world": _sweep(40.0), "intranode": _sweep(300.0), "num_nodes": 2}, **kw)
    assert r.status == "pass"
    assert (r.metrics["busbw_GBps"], r.metrics["world_busbw_GBps"], r.metrics["intranode_busbw_GBps"]) == (
        300.0, 40.0, 300.0)
    # one rank per node: no NVLink figure to judge; the world figure crosses the network
    r = validate_mode.allreduce_result(out={"world": _sweep(40.0), "num_nodes": 2}, **kw)
    assert r.metrics["busbw_GBps"] is None
    r = validate_mode.allreduce_result(out={"world": _sweep(40.0), "num_nodes": 1}, **kw)
    assert r.metrics["busbw_GBps"] == 40.0
    r = validate_mode.allreduce_result(out={"world": _sweep(40.0, wrong=3), "num_nodes": 1}, **kw)
    assert r.status == "fail" and "3 wrong" in r.message


def test_allreduce_result_failures():
    kw = dict(world=4, backend="gloo", timeout=10, out=None, error=None, marks=2)
    hung = validate_mode.allreduce_result(exit_code=-9, hung=True, last_mark="joined the process group", **kw)
    assert hung.status == "fail" and hung.error["kind"] == "hang"
    assert "no progress for 10 s after 'joined the process group'" in hung.message
    died = validate_mode.allreduce_result(exit_code=3, hung=False, last_mark=None, **{**kw, "error": "X: y"})
    assert died.message == "all-reduce rank process exited with code 3 after start-up: X: y"
    killed = validate_mode.allreduce_result(exit_code=-11, hung=False, last_mark="a", **kw)
    assert "killed by signal 11" in killed.message


def test_drain_nodes_acts_per_node(cluster_rep):
    calls = []
    output.drain_nodes(cluster_rep, apply=lambda outcome, node: calls.append((node, outcome)))
    assert [(n, o.problem) for n, o in calls] == [("gpu00", False), ("gpu01", True)]
    assert "bf16_tflops" in calls[1][1].problems or "bf16" in calls[1][1].problems
    assert "rank 3" in calls[1][1].problems


def test_gpus_option_is_refused_under_a_launcher():
    from click.testing import CliRunner

    from envcheck.cli import cli

    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    res = CliRunner().invoke(cli, ["validate", "--gpus", "1"], env=env)
    assert res.exit_code == 2 and "every task is one rank" in res.stderr
    res = CliRunner().invoke(cli, ["validate"], env={**env, "RANK": "5"})
    assert res.exit_code == 2 and "torchrun/srun environment" in res.stderr
    res = CliRunner().invoke(cli, ["validate", "--pairwise", "--checks", "gemm"], env=env)
    assert res.exit_code == 2 and "--pairwise is part of the allreduce check: add allreduce to --checks" in res.stderr


def test_pairwise_outside_a_launch_is_one_line_and_exit_2():
    from click.testing import CliRunner

    from envcheck.cli import cli

    res = CliRunner().invoke(cli, ["validate", "--pairwise"], env={"RANK": None, "SLURM_PROCID": None})
    assert res.exit_code == 2 and res.stdout == ""
    assert "--pairwise pairs the nodes of a multi-node job: start envcheck validate under torchrun or srun" in res.stderr


def test_rank_zero_port_in_use_is_one_line_and_exit_2(monkeypatch):
    """The collector's port is ephemeral (no collision with the launcher's, issue 10 class 9);
    only a port an operator fixes with ENVCHECK_REPORT_PORT can be taken."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("ENVCHECK_REPORT_PORT", str(port))
        info = detect({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port - 1)})
        said = []
        code = validate_mode.main(info, validate_mode.Options(checks=["allreduce"]), output.Outputs(),
                                  write=said.append, progress=said.append)
    assert code == 2 and f"cannot listen on port {port}" in said[-1] and "ENVCHECK_REPORT_PORT" in said[-1]


@needs_torch
@pytest.mark.slow
def test_quick_budget_ends_a_distributed_run_with_every_rank_reported(tmp_path):
    """--quick --budget under torchrun: a check stalled on every rank is killed at the budget, the
    all-reduce that would follow is not waited for, and rank 0 still reports every rank."""
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--quick", "--budget", "15",
                                            fault="gemm.stall", nnodes=2, nproc=1,
                                            checks="gemm,memory,allreduce")
    rep = _json(outs)
    assert rep["verdict"] == "failed" and rep["missing_ranks"] == []
    for node in rep["nodes"]:
        (rank,) = node["ranks"]
        status = {c["name"]: (c["status"], (c.get("error") or {}).get("kind")) for c in rank["checks"]}
        assert status["gemm"] == ("fail", "budget"), rank["checks"]
        assert status["memory"][0] == "skip"
        assert status["allreduce"] == ("fail", "budget")
    assert elapsed < 15 + 45, elapsed  # the budget, plus torchrun start-up and rank 0's grace
    assert not left, left


def test_two_local_ranks_each_given_one_gpu_both_run(monkeypatch):
    """Both local ranks of an srun --gpus-per-task=1 step bind cuda:0 of what they see and run
    their checks and their all-reduce part (the workers and the all-reduce child are CPU fakes
    here; tests/validate/distributed/test_gpu_distributed.py has the real-GPU test)."""
    from envcheck.validate import app, runner
    from envcheck.validate.results import PASS, CheckResult

    seen = []

    def fake_prepare(**kw):
        pre = runner.Preflight(True, {"device_count": 1, "torch": "2.x", "cuda": "12.6",
                                      "devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                                   "total_memory_bytes": 80 << 30}]})
        return app.Prepared(pre, {}, {})

    def fake_run(cfg, checks, info, **kw):
        seen.append(("checks", cfg.device, cfg.ndevices, kw["env"]["CUDA_VISIBLE_DEVICES"], tuple(checks)))
        report = runner.new_report(cfg, info, None, None)
        report.checks = [CheckResult(c, PASS, {}, "ok") for c in checks]
        return report

    def fake_allreduce(info, binding, params, timeout, phase, **kw):
        seen.append(("allreduce", info.local_rank, binding))
        return CheckResult("allreduce", PASS, {}, "ok")

    monkeypatch.setattr(app, "prepare", fake_prepare)
    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(validate_mode, "run_allreduce", fake_allreduce)
    reports = []
    for local_rank, visible in ((0, "2"), (1, "3")):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        info = detect({"SLURM_STEP_ID": "0", "SLURM_PROCID": str(local_rank), "SLURM_STEP_NUM_TASKS": "2",
                       "SLURM_LOCALID": str(local_rank), "SLURM_STEP_NODELIST": "n1", "SLURM_JOB_ID": "7",
                       "SLURM_STEP_TASKS_PER_NODE": "2"})
        reports.append(validate_mode.rank_report(info, validate_mode.Options(checks=["gemm", "allreduce"]),
                                                 lambda _p: None, lambda _m: None))
    assert seen == [("checks", "cuda", 1, "2", ("gemm",)), ("allreduce", 0, validate_mode.Binding("cuda", 0, "2")),
                    ("checks", "cuda", 1, "3", ("gemm",)), ("allreduce", 1, validate_mode.Binding("cuda", 0, "3"))]
    assert [[c["status"] for c in r["checks"]] for r in reports] == [["pass", "pass"], ["pass", "pass"]]


@needs_torch
@pytest.mark.slow
def test_distributed_allreduce_and_pairwise_work_without_numpy(tmp_path):
    """torch does not depend on numpy, and all_gather_object needs it: the ranks exchange their
    node ids and pair results through plain tensors (issue 10, class 9). numpy is made
    unimportable for every process of the job (torch tolerates a missing numpy)."""
    blocked = tmp_path / "nonumpy" / "numpy"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numpy' (blocked by the test)\", name='numpy')\n")
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "30", "--pairwise",
                                            "--straggler-threshold", "0.9", nnodes=2, nproc=1,
                                            extra_env={"PYTHONPATH": str(blocked.parent)})
    rep = _json(outs)
    assert rep["verdict"] == "passed", rep["reasons"]
    assert rep["pairwise"]["rounds"] and not rep["pairwise"]["bad_nodes"]
    assert not left, left


@needs_torch
@pytest.mark.slow
def test_collectives_and_ddp_span_every_rank_of_the_job(tmp_path):
    """Issue 16 point 4: under torchrun the collectives and the DDP step run across all ranks of
    both nodes (in the all-reduce child, after the world all-reduce); figures per collective."""
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "60", "--profile", "quick",
                                            "--straggler-threshold", "0.95", nnodes=2, nproc=1,
                                            checks="allreduce,collectives,ddp")
    rep = _json(outs)
    assert rep["verdict"] == "passed", rep["reasons"]
    for node in rep["nodes"]:
        assert node["nccl_transport"]["transport"] == "not applicable (gloo)"
        (rank,) = node["ranks"]
        checks = {c["name"]: c for c in rank["checks"]}
        assert sorted(checks) == ["allreduce", "collectives", "ddp"]
        coll, ddp = checks["collectives"], checks["ddp"]
        assert coll["status"] == "pass" and coll["metrics"]["world_size"] == 2, coll
        assert "all ranks of the job" in coll["message"]
        assert coll["metrics"]["all_gather_busbw_GBps"] > 0
        assert all(row["wrong_ranks"] == [] for row in coll["details"]["ops"]["all_gather"]["rows"])
        assert ddp["status"] == "pass" and ddp["metrics"]["world_size"] == 2, ddp
        figures = {(f["check"], f["metric"]) for f in rank["figures"]}
        assert ("collectives", "all_gather_busbw_GBps") in figures, figures
    assert not left, left


@needs_torch
@pytest.mark.slow
def test_a_wrong_collective_names_its_rank(tmp_path):
    outs, elapsed, left = torchrun_validate(tmp_path, "--format", "json", "--timeout", "60", "--profile", "quick",
                                            "--straggler-threshold", "0.95", nnodes=2, nproc=1,
                                            checks="collectives", fault="collectives.wrong:rank=1:op=all_gather")
    rep = _json(outs)
    assert rep["verdict"] == "failed"
    for node in rep["nodes"]:
        (rank,) = node["ranks"]
        assert [c["name"] for c in rank["checks"]] == ["collectives"]  # allreduce not selected, not reported
    # rank 1 sent a wrong block: every rank's gathered output holds it, and its place names the sender
    assert any("all_gather at 1 KiB: wrong output on rank(s) 0, 1 (first wrong element in rank 1's block)" in r
               for r in rep["reasons"]), rep["reasons"]
    assert not left, left


def test_span_results_when_the_child_failed_or_a_check_raised():
    from envcheck.validate.results import FAIL, CheckResult

    params = {"collectives": {"ops": ["all_gather"]}, "ddp": {"loss_drop": 2.0, "fsdp_rtol": 1e-3, "steps": 2}}
    child = CheckResult("allreduce", FAIL, {}, "all-reduce rank process exited with code 1")
    a, b = validate_mode.span_results(params, None, 4, "gloo", child)
    assert (a.name, a.status, b.name, b.status) == ("collectives", "fail", "ddp", "fail")
    assert a.message == "collectives across all ranks did not run: all-reduce rank process exited with code 1"
    (c,) = validate_mode.span_results({"ddp": params["ddp"]}, {"ddp": {"error": "RuntimeError: boom"}}, 4,
                                      "gloo", child)
    assert c.status == "fail" and c.message == "ddp across all ranks failed: RuntimeError: boom"
    rows = [{"bytes": 1024, "busbw_GBps": 1.0, "wrong": 3, "first_wrong_index": 0, "wrong_ranks": [2]}]
    (d,) = validate_mode.span_results({"collectives": params["collectives"]},
                                      {"collectives": {"ops": {"all_gather": {"rows": rows, "wrong": 3}},
                                                       "max_bytes": 1024}}, 4, "gloo", child)
    assert d.status == "fail" and "all_gather at 1 KiB: wrong output on rank(s) 2 (first wrong element in rank 0's" \
        in d.message


@needs_torch
@pytest.mark.slow
def test_srun_ranks_join_the_store_rank_0_hosts_and_leave_nothing_behind(tmp_path):
    """Under srun nobody hosts the job's store: rank 0 hosts it in a child for the run (issue 10,
    class 8); the channel's record and every rank's all-reduce (env://, as clients) use it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_",
                                                                     "MASTER_", "GROUP_", "TORCHELASTIC"))}
    tag = uuid.uuid4().hex
    procs = []
    for r in (0, 1):
        env = {**base, "SLURM_PROCID": str(r), "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2",
               "SLURM_LOCALID": str(r), "SLURM_NODEID": "0", "SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "localhost",
               "SLURM_STEP_TASKS_PER_NODE": "2", "SLURMD_NODENAME": "localhost", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "ENVCHECK_TEST_TAG": tag}
        procs.append(subprocess.Popen([sys.executable, "-m", "envcheck", "validate", "--checks", "allreduce",
                                       "--allreduce-max-mib", "1", "--format", "json", "--timeout", "60"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=tmp_path, start_new_session=True))
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    rep = json.loads(outs[0][0])
    assert outs[1][0] == "" and [p.returncode for p in procs] == [0, 0], outs
    assert rep["verdict"] == "passed" and rep["channel"]["authenticated"] == 1, rep["reasons"]
    assert [r["verdict"] for n in rep["nodes"] for r in n["ranks"]] == ["passed", "passed"]
    left = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("ENVCHECK_TEST_TAG") == tag:
                left.append(proc.pid)
    assert not left
