"""Two "nodes" as two torchrun agents on 127.0.0.1 (c10d rendezvous), 2 workers each.

launch.detect reads the real torchrun environment, the ranks report to rank 0 over the
result channel, and rank 0's cluster report lists both nodes; a slow rank makes its node a
straggler. (The workload itself - validate's checks over gloo/NCCL - comes with the
distributed mode of `envcheck validate`.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# find_spec, not import: the test process itself must stay torch-free (other tests check that
# doctor never imports torch in-process).
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (torchrun comes with it)")]

RANK_SCRIPT = Path(__file__).with_name("rank_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_agents(tmp_path, extra_env=None, timeout=180):
    script = RANK_SCRIPT
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_",
                                                                     "MASTER_", "GROUP_", "TORCHELASTIC"))}
    env.update({"OMP_NUM_THREADS": "1", **(extra_env or {})})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "2",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "envcheck-test",
           "--max-restarts", "0", str(script)]
    agents = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True) for _ in range(2)]
    outs = []
    try:
        for a in agents:
            out, err = a.communicate(timeout=timeout)
            outs.append((a.returncode, out, err))
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
                a.wait(timeout=10)
    return outs


def _report(outs):
    lines = [line for rc, out, err in outs for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, outs  # only rank 0 prints
    return json.loads(lines[0])


def test_two_torchrun_agents_one_report_with_both_nodes(tmp_path):
    outs = run_two_agents(tmp_path)
    assert [rc for rc, _, _ in outs] == [0, 0], outs
    rep = _report(outs)
    assert rep["verdict"] == "passed" and rep["world_size"] == 4 and rep["num_nodes"] == 2
    assert [n["node_rank"] for n in rep["nodes"]] == [0, 1]
    assert [sorted(r["rank"] for r in n["ranks"]) for n in rep["nodes"]] == [[0, 1], [2, 3]]
    assert not any(n["straggler"] for n in rep["nodes"])


def test_a_slow_rank_makes_its_node_a_straggler(tmp_path):
    outs = run_two_agents(tmp_path, {"SLOW_RANK": "3"})
    rep = _report(outs)
    assert rep["verdict"] == "degraded"
    assert [n["straggler"] for n in rep["nodes"]] == [False, True]
    assert rep["nodes"][1]["straggler_figures"][0]["value"] == 0.5


def test_standalone_rank_zero_collects_on_an_ephemeral_port(tmp_path):
    """torchrun --standalone: the agent's store carries the channel's record; no MASTER_PORT+1 to
    collide with (issue 10, class 9)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_",
                                                                     "MASTER_", "GROUP_", "TORCHELASTIC"))}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
                          str(RANK_SCRIPT)], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    rep = _report([(out.returncode, out.stdout, out.stderr)])
    assert rep["verdict"] == "passed" and rep["world_size"] == 3
    assert rep["channel"]["authenticated"] == 2 and rep["channel"]["refused"] == 0
