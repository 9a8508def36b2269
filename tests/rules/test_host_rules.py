"""host.* rules: kernel modules, shared memory, disk, RAM, limits, containers and WSL."""

from __future__ import annotations

import pytest

from envcheck.findings import Severity

GiB = 1024**3
MiB = 1024**2


def test_nouveau_blocking_the_driver_is_an_error(machine):
    f = machine.one(machine("no_driver_nouveau"), "host.nouveau-loaded")
    assert f.severity is Severity.ERROR
    assert "blacklist nouveau" in f.fix and "update-initramfs -u" in f.fix


def test_nouveau_beside_a_working_driver_is_a_warning(machine):
    s = machine("healthy_8xh100", {"host.kernel_modules.nouveau": True, "host.os.distro_id": "rocky"})
    f = machine.one(s, "host.nouveau-loaded")
    assert f.severity is Severity.WARN and "dracut --force" in f.fix
    assert "host.nouveau-loaded" not in machine.ids(machine("healthy_8xh100"))


@pytest.mark.parametrize("scenario,container_fix", [("docker_small_shm", True), ("healthy_8xh100", False)])
def test_shm_small(machine, scenario, container_fix):
    s = machine(scenario, {"host.shm.total_bytes": 64 * MiB})
    f = machine.one(s, "host.shm-small")
    assert f.severity is Severity.WARN and f.evidence["shm_total"] == "64.0 MiB"
    assert ("--shm-size" in f.fix) is container_fix


def test_shm_at_least_1gib_is_fine(machine):
    assert "host.shm-small" not in machine.ids(machine("healthy_8xh100", {"host.shm.total_bytes": GiB}))
    assert "host.shm-small" not in machine.ids(machine("cpu_only_laptop"))  # macOS: no /dev/shm (na)


def test_disk_low_groups_one_filesystem_and_grades_severity(machine):
    found = machine.by_id(machine("big_node_small_host"), "host.disk-low")
    by_sev = {f.severity: f for f in found}
    assert set(by_sev) == {Severity.ERROR, Severity.WARN}
    assert by_sev[Severity.WARN].evidence["labels"] == ["cwd", "home"]
    assert by_sev[Severity.WARN].evidence["paths"] == ["/home/alice"]
    assert by_sev[Severity.ERROR].evidence["labels"] == ["tmp"]
    assert "only 512.0 MiB free on /tmp" in by_sev[Severity.ERROR].title


def test_disk_thresholds(machine):
    tmp_ok = machine("healthy_8xh100", {"host.disk.2.free_bytes": 5 * GiB})
    assert "host.disk-low" not in machine.ids(tmp_ok)       # 5 GiB is plenty for /tmp ...
    home_low = machine("healthy_8xh100", {"host.disk.0.free_bytes": 5 * GiB, "host.disk.1.free_bytes": 5 * GiB})
    assert "host.disk-low" in machine.ids(home_low)          # ... but not for models in home
    assert "host.disk-low" not in machine.ids(machine("healthy_8xh100", {"host.disk.0.free_bytes": machine.na()}))


def test_ram_smaller_than_gpu_memory(machine):
    f = machine.one(machine("big_node_small_host"), "host.ram-smaller-than-gpu-memory")
    assert f.evidence == {"ram": "256.0 GiB", "gpu_memory_total": "318.6 GiB", "gpus": 4}
    assert "host.ram-smaller-than-gpu-memory" not in machine.ids(machine("healthy_8xh100"))
    # a GPU with unknown memory: no conclusion
    s = machine("big_node_small_host", {"nvidia.gpus.1.memory": machine.na()})
    assert "host.ram-smaller-than-gpu-memory" not in machine.ids(s)


def test_memlock_only_matters_with_rdma(machine):
    f = machine.one(machine("docker_small_shm"), "host.memlock-low")
    assert f.evidence["memlock_soft"] == "64.0 KiB" and "--ulimit memlock=-1" in f.fix
    no_ib = machine("docker_small_shm", {"env.vars.NCCL_IB_HCA": machine.DELETE,
                                         "host.kernel_modules.nvidia_peermem": False})
    assert "host.memlock-low" not in machine.ids(no_ib)
    ib_off = machine("docker_small_shm", {"env.vars.NCCL_IB_DISABLE": "1",
                                          "host.kernel_modules.nvidia_peermem": False})
    assert "host.memlock-low" not in machine.ids(ib_off)
    peermem = machine("healthy_8xh100", {"host.kernel_modules.nvidia_peermem": True, "host.ulimits.memlock_soft": 8 * MiB})
    f = machine.one(peermem, "host.memlock-low")
    assert "limits.conf" in f.fix
    assert "host.memlock-low" not in machine.ids(machine("healthy_8xh100", {"host.kernel_modules.nvidia_peermem": True}))


def test_nofile_low(machine):
    f = machine.one(machine("docker_small_shm"), "host.nofile-low")
    assert f.severity is Severity.INFO and f.fix == "`ulimit -n 1048576` in the shell or job script"
    capped = machine("docker_small_shm", {"host.ulimits.nofile_hard": 1024})
    assert "limits.conf" in machine.one(capped, "host.nofile-low").fix
    assert "host.nofile-low" not in machine.ids(machine("healthy_8xh100"))


def test_nvidia_uvm_missing(machine):
    f = machine.one(machine("uvm_missing"), "host.nvidia-uvm-missing")
    assert f.severity is Severity.ERROR and f.fix.startswith("sudo modprobe nvidia-uvm")
    # loaded on demand when CUDA works: no finding
    works = machine("uvm_missing", {"torch.cuda_available": True})
    assert "host.nvidia-uvm-missing" not in machine.ids(works)
    # the node exists (module about to be listed): no finding
    node = machine("uvm_missing", {"host.dev_nodes": ["/dev/nvidia-uvm", "/dev/nvidiactl"]})
    assert "host.nvidia-uvm-missing" not in machine.ids(node)


def test_wsl(machine):
    f = machine.one(machine("wsl_rtx4090"), "host.wsl")
    assert f.severity is Severity.INFO and "do not install" in f.fix
    # under WSL the missing PCI device and module do not mean "no driver"
    assert machine.ids(machine("wsl_rtx4090")) == {"host.wsl"}


def test_container_without_gpu(machine):
    f = machine.one(machine("docker_without_gpus"), "host.container-without-gpu")
    assert f.severity is Severity.ERROR and "--gpus all" in f.fix
    assert f.evidence["host_gpus_on_pci"] == 8
    k8s = machine("docker_without_gpus", {"host.container.kind": "kubernetes"})
    assert "nvidia.com/gpu" in machine.one(k8s, "host.container-without-gpu").fix
    # a CPU-only host in a container is just a machine without a GPU
    cpu = machine("cpu_only_vm")
    assert "host.container-without-gpu" not in machine.ids(cpu)


def test_container_state_unknown_no_driver_conclusion(machine):
    s = machine("docker_without_gpus", {"host.container.kind": machine.na()})
    f = machine.one(s, "nvidia.no-driver-with-gpu")
    assert "--gpus all" in f.fix and "reinstall" in f.fix  # both explanations, no guess


def test_host_probe_failed(machine):
    s = machine("healthy_8xh100", {"host": machine.na("psutil crashed")})
    f = machine.one(s, "host.probe-failed")
    assert f.evidence == {"reason": "psutil crashed"} and f.severity is Severity.WARN


# ---- cgroup limits: a container's memory limit and CPU quota -----------------------------------

def test_pod_limits_name_the_limit_and_where_to_raise_it(machine):
    s = machine("k8s_pod_limits")
    mem = machine.one(s, "host.memory-limit-smaller-than-gpu-memory")
    assert mem.severity is Severity.WARN and mem.evidence["memory_limit"] == "128.0 GiB"
    assert mem.evidence["from"] == "/sys/fs/cgroup/memory.max = 137438953472"
    assert mem.fix.startswith("raise the pod's resources.limits.memory")
    cpu = machine.one(s, "host.cpu-quota-below-torch-threads")
    assert cpu.title == "torch starts 112 threads per process but this cgroup may use 16 CPUs"
    assert cpu.fix.startswith("`export OMP_NUM_THREADS=16`") and "resources.limits.cpu" in cpu.fix


@pytest.mark.parametrize("patch, fires", [
    ({}, True),
    ({"torch.num_threads": 16}, False),  # OMP_NUM_THREADS=16 already applied
    ({"torch.num_threads": 8, "host.cgroup.cpu_quota_cores": 7.65}, True),  # 7.65 CPUs: 7 threads, not 8
    ({"torch.num_threads": 1, "host.cgroup.cpu_quota_cores": 0.5}, False),  # below one CPU: 1 thread is all
    ({"host.cgroup.cpu_quota_cores": None}, False),  # no quota
    ({"torch.num_threads": {"unavailable": "torch was not imported"}}, False),
])
def test_cpu_quota_against_torch_threads(machine, patch, fires):
    assert ("host.cpu-quota-below-torch-threads" in machine.ids(machine("k8s_pod_limits", patch))) is fires


def test_cpu_quota_fix_in_docker_and_slurm(machine):
    docker = machine("k8s_pod_limits", {"host.container": {"kind": "docker", "evidence": []},
                                        "torch.num_threads": 8, "host.cgroup.cpu_quota_cores": 7.65})
    f = machine.one(docker, "host.cpu-quota-below-torch-threads")
    assert f.fix.startswith("`export OMP_NUM_THREADS=7`") and "larger `--cpus`" in f.fix
    slurm = machine("k8s_pod_limits", {"host.container": {"kind": None, "evidence": []},
                                       "env.vars.SLURM_JOB_ID": "123"})
    assert "`--cpus-per-task`" in machine.one(slurm, "host.cpu-quota-below-torch-threads").fix
    assert "`--mem`" in machine.one(slurm, "host.memory-limit-smaller-than-gpu-memory").fix


@pytest.mark.parametrize("patch, fires", [
    ({}, True),
    ({"host.cgroup.memory_limit_bytes": 1024 * GiB}, False),  # above the GPUs' 637 GiB
    ({"host.cgroup.memory_limit_bytes": None}, False),  # no limit
    # RAM itself is the smaller figure: host.ram-smaller-than-gpu-memory says so, not this rule.
    ({"host.ram.total_bytes": 64 * GiB}, False),
])
def test_memory_limit_against_gpu_memory(machine, patch, fires):
    assert ("host.memory-limit-smaller-than-gpu-memory" in machine.ids(machine("k8s_pod_limits", patch))) is fires
