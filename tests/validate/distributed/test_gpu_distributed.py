"""The distributed mode on real GPUs: NCCL ranks under torchrun, --quick on CUDA (marked ``gpu``).

Deselected by default; on a lent device run ``python3 -m pytest -m gpu tests/cluster -s``. With
one GPU the torchrun test is one node and one NCCL rank; the two-"node" test needs two GPUs (each
agent sees one through CUDA_VISIBLE_DEVICES, so the NCCL traffic between them is inter-process,
as between nodes). Nothing is faked: without GPUs they skip.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gpu_env import gpu_marks

ROOT = Path(__file__).resolve().parents[3]
NDEV, pytestmark = gpu_marks()  # tests/fixtures/gpu_env.py (importable through tests/conftest.py)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nnodes: int, nproc: int, args: list[str], per_agent_env=None, timeout: int = 900):
    port = _port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_",
                                                                      "MASTER_", "GROUP_", "TORCHELASTIC"))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node", str(nproc),
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "envcheck-gpu",
           "--max-restarts", "0", "-m", "envcheck", "validate", "--format", "json", *args]
    agents = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(base, **((per_agent_env or {}).get(i, {}))), start_new_session=True)
              for i in range(nnodes)]
    outs = []
    try:
        for a in agents:
            outs.append(a.communicate(timeout=timeout))
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait(timeout=10)
    docs = [o for o, _ in outs if o.strip().startswith("{")]
    assert len(docs) == 1, [e[-3000:] for _, e in outs]
    return json.loads(docs[0]), outs


def show(rep: dict) -> None:
    print(f"\ncluster verdict {rep['verdict']}: {rep['reasons']}")
    for n in rep["nodes"]:
        for r in n["ranks"]:
            for c in r["checks"]:
                print(f"  node {n['node_rank']} rank {r['rank']} {c['status']:<4} {c['name']:<9} {c['message']}")
            for f in r.get("figures") or []:  # a rank summary (issue 10, class 11) has "values"
                print(f"    figure {f['check']} {f['metric']} {f['device']}: {f['value']} {f['unit']} "
                      f"floor {f.get('floor')} -> {f.get('status')}")


def test_torchrun_one_node_nccl_every_gpu():
    rep, outs = torchrun(1, NDEV, ["--checks", "gemm,memory,allreduce", "--profile", "quick"])
    show(rep)
    assert rep["world_size"] == NDEV and rep["num_nodes"] == 1
    ranks = rep["nodes"][0]["ranks"]
    assert all(c["status"] in ("pass", "warn") for r in ranks for c in r["checks"]), rep["reasons"]
    ar = next(c for c in ranks[0]["checks"] if c["name"] == "allreduce")
    assert ar["metrics"]["backend"] == "nccl" and ar["metrics"]["nccl_version"]
    assert rep["verdict"] in ("certified", "passed", "degraded")


@pytest.mark.skipif(NDEV < 2, reason="two GPUs needed: one per torchrun agent")
def test_two_agents_nccl_across_processes_with_pairwise():
    env = {0: {"CUDA_VISIBLE_DEVICES": "0"}, 1: {"CUDA_VISIBLE_DEVICES": "1"}}
    rep, outs = torchrun(2, 1, ["--checks", "allreduce", "--pairwise", "--straggler-threshold", "0.5"], env)
    show(rep)
    assert rep["num_nodes"] == 2 and rep["verdict"] == "passed", rep["reasons"]
    assert rep["pairwise"]["failed_pairs"] == 0


def test_quick_on_cuda_ends_inside_its_budget():
    out = subprocess.run([sys.executable, "-m", "envcheck", "validate", "--quick", "--format", "json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    doc = json.loads(out.stdout)
    print(f"\n--quick on {[d.get('name') for d in doc['devices']]}: {doc['verdict']} in "
          f"{doc['timings']['total_s']} s; checks {doc['timings']['checks']}")
    assert doc["device"] == "cuda"
    assert all(c["status"] in ("pass", "warn") for c in doc["checks"]), doc["reasons"]
    assert doc["timings"]["total_s"] < 50


@pytest.mark.skipif(NDEV < 2, reason="two GPUs needed: one per task")
def test_srun_gpus_per_task_each_local_rank_uses_the_gpu_it_was_given():
    """srun --gpus-per-task=1 on one node: two tasks, LOCAL_RANK 0 and 1, each seeing only its own
    GPU as cuda:0 (issue 9: LOCAL_RANK 1 used to pick cuda:1 and fail). The srun environment is
    set by hand, as srun sets it, so no Slurm GRES is needed."""
    port, host = _port(), socket.gethostname().split(".")[0]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_",
                                                                      "MASTER_", "GROUP_", "TORCHELASTIC"))}
    tasks = []
    for r in range(2):
        env = dict(base, SLURM_STEP_ID="0", SLURM_PROCID=str(r), SLURM_STEP_NUM_TASKS="2", SLURM_NTASKS="2",
                   SLURM_LOCALID=str(r), SLURM_NODEID="0", SLURM_STEP_NODELIST=host, SLURM_JOB_ID="4242",
                   SLURM_STEP_TASKS_PER_NODE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   CUDA_VISIBLE_DEVICES=str(r))
        tasks.append(subprocess.Popen([sys.executable, "-m", "envcheck", "validate", "--format", "json", "--checks",
                                       "gemm,allreduce", "--profile", "quick"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True))
    outs = []
    try:
        for t in tasks:
            outs.append(t.communicate(timeout=600))
    finally:
        for t in tasks:
            if t.poll() is None:
                os.killpg(t.pid, signal.SIGKILL)
                t.wait(timeout=10)
    rep = json.loads(outs[0][0])
    show(rep)
    ranks = rep["nodes"][0]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(c["status"] in ("pass", "warn") for r in ranks for c in r["checks"]), rep["reasons"]
