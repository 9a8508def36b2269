"""torchrun / srun environment -> this process's place in the job (pure)."""

from __future__ import annotations

import pytest

from envcheck.cluster.launch import DEFAULT_MASTER_PORT, LaunchError, detect, slurm_port

# What torchrun --nnodes 2 --nproc-per-node 2 sets in worker 3 (node 1, local rank 1).
TORCHRUN = {
    "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1",
    "GROUP_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400",
    "TORCHELASTIC_RUN_ID": "job42",
}
# What srun -N 2 -n 4 sets in task 2 on the second node (seen with slurm-wlm 22.05.8 here).
SRUN = {
    "SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "1", "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_STEP_NUM_NODES": "2",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURMD_NODENAME": "gpu08",
}


def test_no_launcher():
    assert detect({}) is None
    assert detect({"PATH": "/usr/bin", "HOME": "/root"}) is None


def test_sbatch_batch_script_is_not_a_rank():
    # The batch step has SLURM_PROCID=0 and SLURM_NTASKS but no step id: not part of a launch.
    env = {k: v for k, v in SRUN.items() if not k.startswith("SLURM_STEP")}
    env["SLURM_PROCID"] = "0"
    assert detect(env) is None


def test_torchrun():
    info = detect(TORCHRUN)
    assert info.launcher == "torchrun"
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (3, 4, 1, 2)
    assert (info.node_rank, info.num_nodes) == (1, 2)
    assert (info.master_addr, info.master_port, info.job_id) == ("10.0.0.1", 29400, "job42")
    assert info.rank != 0
    assert info.torch_env()["RANK"] == "3" and info.torch_env()["MASTER_PORT"] == "29400"


def test_plain_env_launcher_and_defaults():
    info = detect({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h"})
    assert info.launcher == "env"
    assert info.local_world_size == 2 and info.node_rank == 0 and info.num_nodes == 1
    assert info.master_port == DEFAULT_MASTER_PORT and info.rank == 0


def test_torchrun_wins_over_slurm_under_srun_torchrun():
    info = detect({**SRUN, **TORCHRUN})
    assert info.launcher == "torchrun" and info.rank == 3 and info.master_addr == "10.0.0.1"
    assert info.hostname == "gpu08"


def test_srun():
    info = detect(SRUN)
    assert info.launcher == "srun"
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (2, 4, 0, 2)
    assert (info.node_rank, info.num_nodes, info.hosts) == (1, 2, ("gpu07", "gpu08"))
    assert info.master_addr == "gpu07"  # the first host, where rank 0 runs
    assert info.master_port == slurm_port("123456") == 20000 + 123456 % 10000
    assert info.to_dict()["hosts"] == ["gpu07", "gpu08"]


def test_srun_port_is_the_same_on_every_rank_and_differs_between_jobs():
    ports = {detect({**SRUN, "SLURM_PROCID": str(r)}).master_port for r in range(4)}
    assert len(ports) == 1
    assert slurm_port("1") != slurm_port("2")
    assert all(20000 <= slurm_port(str(j)) < 30000 for j in (0, 9999, 10000, 123456789))
    assert slurm_port(None) == slurm_port("abc") == DEFAULT_MASTER_PORT


def test_srun_master_overrides():
    info = detect({**SRUN, "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "31000"})
    assert (info.master_addr, info.master_port) == ("10.1.1.1", 31000)


def test_srun_step_on_a_subset_of_the_job_uses_the_step_node_list():
    env = {**SRUN, "SLURM_JOB_NODELIST": "gpu[05-08]", "SLURM_NODEID": "3"}
    info = detect(env)
    assert info.node_rank == 1 and info.master_addr == "gpu07"


def test_srun_uneven_tasks_per_node():
    env = {**SRUN, "SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_TASKS_PER_NODE": "2,1", "SLURM_PROCID": "2"}
    assert detect(env).local_world_size == 1


def test_srun_without_step_counts_falls_back_to_job_values():
    env = {k: v for k, v in SRUN.items() if k not in ("SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST",
                                                       "SLURM_STEP_NUM_NODES", "SLURM_STEP_TASKS_PER_NODE")}
    info = detect(env)
    assert (info.world_size, info.num_nodes, info.local_world_size) == (4, 2, 2)


@pytest.mark.parametrize("env, needle", [
    ({**TORCHRUN, "RANK": "x"}, "RANK='x'"),
    ({**TORCHRUN, "RANK": "4"}, "rank 4"),
    ({**TORCHRUN, "LOCAL_RANK": "2"}, "local rank 2"),
    ({**TORCHRUN, "WORLD_SIZE": "0"}, "WORLD_SIZE=0"),
    ({k: v for k, v in TORCHRUN.items() if k != "MASTER_ADDR"}, "MASTER_ADDR"),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, "MASTER_PORT"),
    ({**SRUN, "SLURM_PROCID": "9"}, "rank 9"),
    ({**SRUN, "SLURM_STEP_NODELIST": "gpu[07-"}, "gpu[07-"),
    ({k: v for k, v in SRUN.items() if "NODELIST" not in k}, "MASTER_ADDR"),
])
def test_inconsistent_launch_env_raises_naming_the_variable(env, needle):
    with pytest.raises(LaunchError) as err:
        detect(env)
    assert needle in str(err.value)
