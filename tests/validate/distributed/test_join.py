"""distributed.run: srun-like ranks as real processes; rank 0 returns the cluster report."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from envcheck.cluster.launch import detect
from envcheck.validate.distributed import join as distributed

WORKER = textwrap.dedent("""
    import json, os, sys, time
    from envcheck.cluster import launch
    from envcheck.validate.distributed import join as distributed
    info = launch.detect(os.environ)
    mode = os.environ.get("MODE_RANK_%d" % info.rank, "ok")

    def work(phase):
        phase("gemm")
        if mode == "raise":
            raise RuntimeError("NCCL error: unhandled system error")
        phase("allreduce")
        if mode == "die":
            os.kill(os.getpid(), 9)
        if mode == "hang":
            time.sleep(600)
        if mode == "malformed":
            return {"verdict": "passed", "checks": [{"name": "allreduce", "status": "pass", "error": "x"}]}
        return {"verdict": "passed", "checks": [{"name": "allreduce", "status": "pass"}],
                "figures": [{"check": "gemm", "metric": "fp32", "device": "cpu", "unit": "TFLOPS",
                             "value": 0.4 if mode == "slow" else 1.0}]}

    try:
        rep = distributed.run(info, work, timeout=float(os.environ.get("T", "20")), join_timeout=10,
                              hostname="host%d" % info.node_rank)
    except Exception as exc:
        print("rank %d failed: %s" % (info.rank, exc), file=sys.stderr)
        sys.exit(1)
    if rep is not None:
        print(json.dumps(rep))
""")


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, world=4, per_node=2, modes=None, skip=(), extra=None, wait=60):
    """Start `world` ranks with an srun-like environment on 127.0.0.1 (2 "nodes")."""
    script = tmp_path / "w.py"
    script.write_text(WORKER)
    port = _port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                     "MASTER_", "TORCHELASTIC", "GROUP_"))}
    procs = []
    for r in range(world):
        if r in skip:
            continue
        node = r // per_node
        env = {**base, "SLURM_PROCID": str(r), "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": str(world),
               "SLURM_LOCALID": str(r % per_node), "SLURM_NODEID": str(node), "SLURM_JOB_ID": "4242",
               "SLURM_STEP_NODELIST": f"host[0-{world // per_node - 1}]",
               "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{world // per_node})",
               "SLURMD_NODENAME": f"host{node}", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               **{f"MODE_RANK_{k}": v for k, v in (modes or {}).items()}, **(extra or {})}
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    t0 = time.monotonic()
    report = None
    try:
        out0, _ = procs[0].communicate(timeout=wait)
        line = [x for x in out0.splitlines() if x.startswith("{")]
        report = json.loads(line[-1]) if line else None
    finally:
        elapsed = time.monotonic() - t0
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
    return report, elapsed


def test_all_ranks_report(tmp_path):
    rep, _ = launch(tmp_path)
    assert rep["verdict"] == "passed" and rep["world_size"] == 4
    assert [(n["hostname"], [r["rank"] for r in n["ranks"]]) for n in rep["nodes"]] == [
        ("host0", [0, 1]), ("host1", [2, 3])]
    assert rep["launch"]["launcher"] == "srun"


def test_slow_rank_straggler(tmp_path):
    rep, _ = launch(tmp_path, modes={3: "slow"})
    assert rep["verdict"] == "degraded" and [n["straggler"] for n in rep["nodes"]] == [False, True]


@pytest.mark.parametrize("mode, needle", [
    ("raise", "RuntimeError: NCCL error: unhandled system error"),
    ("die", "connection lost during allreduce"),
])
def test_failing_rank_is_named_quickly(tmp_path, mode, needle):
    rep, elapsed = launch(tmp_path, modes={2: mode})
    assert elapsed < 15  # well before the 20 s run timeout
    assert rep["verdict"] == "failed"
    bad = rep["nodes"][1]["ranks"][0]
    assert bad["rank"] == 2 and needle in bad["error"]
    assert any(needle in r and "host1" in r for r in rep["reasons"])


def test_a_malformed_report_is_that_ranks_failure_and_rank_0_still_writes_its_report(tmp_path):
    """Issue 10, class 8: a rank's malformed result never crashes rank 0."""
    rep, _ = launch(tmp_path, modes={3: "malformed"})
    assert rep is not None and rep["verdict"] == "failed"
    ranks = {r["rank"]: r for n in rep["nodes"] for r in n["ranks"]}
    assert ranks[3]["error"].startswith("sent a malformed report")
    assert all(ranks[r]["error"] is None for r in (0, 1, 2))
    assert rep["channel"]["authenticated"] == 3


def test_hung_rank_is_named_at_the_timeout(tmp_path):
    rep, elapsed = launch(tmp_path, modes={1: "hang"}, extra={"T": "6"})
    assert 5 <= elapsed < 20
    bad = rep["nodes"][0]["ranks"][1]
    assert "in allreduce (hung?)" in bad["error"]


def test_rank_that_never_starts_is_named_with_its_expected_host(tmp_path):
    rep, elapsed = launch(tmp_path, skip=(3,), extra={"T": "60"})
    assert elapsed < 30  # the 10 s join timeout, not the 60 s run timeout
    ranks = {r["rank"]: r for n in rep["nodes"] for r in n["ranks"]}
    assert ranks[3]["error"].startswith("never joined")
    assert rep["nodes"][1]["hostname"] == "host1" and rep["nodes"][1]["verdict"] == "failed"


def test_rank_zero_terminated_still_reports(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(WORKER)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM")},
           "SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0",
           "SLURM_STEP_NODELIST": "host0", "SLURMD_NODENAME": "host0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_port()), "T": "60"}
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(2.5)  # rank 1 never comes; rank 0 is waiting
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["interrupted"] and rep["reasons"][0].startswith("rank 0 was terminated")
    assert rep["verdict"] == "failed"


def test_in_process_rank_zero_alone():
    info = detect({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(_port())})
    rep = distributed.run(info, lambda phase: {"verdict": "certified", "checks": [], "figures": []},
                          timeout=5, hostname="me")
    assert rep["verdict"] == "certified" and rep["nodes"][0]["hostname"] == "me"


BROKEN = __import__("pathlib").Path(__file__).resolve().parents[2] / "fixtures" / "broken_torch" / "raises"


def test_rank_zero_whose_torch_cannot_host_the_store_still_reports(monkeypatch):
    """No launcher store and rank 0's torch raises on import: rank 0 itself failed, the others
    never joined, and the report is written (no traceback)."""
    monkeypatch.setenv("PYTHONPATH", str(BROKEN))
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    info = detect({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(_port())})
    ran = []
    rep = distributed.run(info, lambda phase: ran.append(1) or {"verdict": "passed"}, timeout=5, join_timeout=2,
                          hostname="me", env={})
    ranks = {r["rank"]: r for n in rep["nodes"] for r in n["ranks"]}
    ranks.update({m["rank"]: m for m in rep.get("missing_ranks") or []})
    assert rep["verdict"] == "failed" and not ran
    assert "could not publish its result channel" in ranks[0]["error"]
    assert ranks[1]["error"].startswith("never joined")
    assert any("rendezvous store was not usable" in r for r in rep["reasons"])
