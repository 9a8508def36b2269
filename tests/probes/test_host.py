"""Host probe: every fact read from a fake filesystem tree, keys exactly as the snapshot contract."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from envcheck.probes import host
from envcheck.snapshot import is_na

CONTRACT = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "snapshots" / "example_8xh100.json").read_text()
)["host"]

UBUNTU = 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'
NVIDIA_MODULES = (
    "nvidia_uvm 1523712 2 - Live 0x0000000000000000 (POE)\n"
    "nvidia_drm 77824 0 - Live 0x0000000000000000 (POE)\n"
    "nvidia 56807424 18 nvidia_uvm, Live 0x0000000000000000 (POE)\n"
    "ext4 1007616 1 - Live 0x0000000000000000\n"
)


def make_root(base: Path, files: dict[str, str], dirs: tuple[str, ...] = ()) -> Path:
    """A fake filesystem root: ``files`` maps absolute paths to their content."""
    for path, content in files.items():
        p = base / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    for d in dirs:
        (base / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return base


def pci(address: str, vendor: str, device: str, klass: str) -> dict[str, str]:
    d = f"/sys/bus/pci/devices/{address}"
    return {f"{d}/vendor": vendor + "\n", f"{d}/device": device + "\n", f"{d}/class": klass + "\n"}


@pytest.fixture
def gpu_node(tmp_path: Path) -> Path:
    """An 2-GPU node with the driver loaded, plus an NVIDIA audio function and an Intel NIC."""
    files = {"/etc/os-release": UBUNTU, "/proc/modules": NVIDIA_MODULES,
             "/proc/version": "Linux version 5.15.0-112-generic (buildd@lcy02) (gcc 11.4.0)\n",
             "/proc/cpuinfo": "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n",
             "/proc/1/cgroup": "0::/init.scope\n"}
    for name in ("nvidia0", "nvidia1", "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm",
                 "nvidia-uvm-tools", "null"):
        files[f"/dev/{name}"] = ""
    files.update(pci("0000:18:00.0", "0x10de", "0x2330", "0x030200"))
    files.update(pci("0000:28:00.0", "0x10de", "0x2330", "0x030200"))
    files.update(pci("0000:28:00.1", "0x10de", "0x22a3", "0x040300"))   # HDMI audio function
    files.update(pci("0000:05:00.0", "0x8086", "0x1592", "0x020000"))   # Intel NIC
    return make_root(tmp_path, files, dirs=("/dev/shm", "/dev/nvidia-caps"))


def test_keys_match_the_snapshot_contract(gpu_node: Path) -> None:
    facts = host.probe(root=gpu_node, environ={})
    assert set(facts) == set(CONTRACT)
    for key in ("os", "cpu", "ram", "shm", "container", "ulimits", "kernel_modules"):
        assert set(facts[key]) == set(CONTRACT[key]), key
    assert [set(d) for d in facts["disk"]] == [set(d) for d in CONTRACT["disk"]]
    assert [d["label"] for d in facts["disk"]] == ["cwd", "home", "tmp"]
    assert set(facts["pci_nvidia_devices"][0]) == set(CONTRACT["pci_nvidia_devices"][0])
    json.dumps(facts)  # plain JSON


def test_gpu_node_facts(gpu_node: Path) -> None:
    facts = host.probe(root=gpu_node, environ={})
    assert facts["os"]["distro"] == "Ubuntu 22.04.4 LTS"
    assert facts["os"]["distro_id"] == "ubuntu"
    assert facts["os"]["distro_version"] == "22.04"
    assert facts["cpu"]["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts["kernel_modules"] == {"nvidia": True, "nvidia_uvm": True,
                                       "nvidia_peermem": False, "nouveau": False}
    # Control nodes first, then numbered nodes in numeric order (nvidia10 after nvidia2).
    assert facts["dev_nodes"] == ["/dev/nvidia-caps", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                  "/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1",
                                  "/dev/nvidia2", "/dev/nvidia10"]
    # Only display/3D controllers of vendor 0x10de: not the audio function, not the NIC.
    assert facts["pci_nvidia_devices"] == [
        {"address": "0000:18:00.0", "device_id": "0x2330", "class": "0x030200"},
        {"address": "0000:28:00.0", "device_id": "0x2330", "class": "0x030200"},
    ]
    assert facts["container"] == {"kind": None, "evidence": []}
    assert facts["wsl"] is False
    assert facts["shm"]["path"] == "/dev/shm" and facts["shm"]["total_bytes"] > 0


def test_nouveau_loaded_and_a_gpu_without_driver(tmp_path: Path) -> None:
    files = {"/proc/modules": "nouveau 2306048 0 - Live 0x0000000000000000\n"
                              "drm_kms_helper 200704 1 nouveau, Live 0x0000000000000000\n"}
    files.update(pci("0000:01:00.0", "0x10de", "0x2684", "0x030000"))  # RTX 4090, VGA class
    root = make_root(tmp_path, files, dirs=("/dev",))
    facts = host.probe(root=root, environ={})
    assert facts["kernel_modules"] == {"nvidia": False, "nvidia_uvm": False,
                                       "nvidia_peermem": False, "nouveau": True}
    assert facts["dev_nodes"] == []
    assert facts["pci_nvidia_devices"] == [
        {"address": "0000:01:00.0", "device_id": "0x2684", "class": "0x030000"}]


@pytest.mark.parametrize(("files", "dirs", "environ", "kind", "evidence"), [
    ({"/.dockerenv": ""}, (), {}, "docker", ["/.dockerenv exists"]),
    ({"/run/.containerenv": ""}, (), {"container": "podman"}, "podman",
     ["/run/.containerenv exists", "container=podman"]),
    ({}, ("/var/run/secrets/kubernetes.io",), {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
     "kubernetes", ["KUBERNETES_SERVICE_HOST is set", "/var/run/secrets/kubernetes.io exists"]),
    ({"/proc/1/cgroup": "0::/kubepods/besteffort/pod1234/abcd\n", "/.dockerenv": ""}, (), {},
     "kubernetes", ["/.dockerenv exists", "/proc/1/cgroup mentions kubepods"]),
    ({"/run/systemd/container": "lxc\n"}, (), {}, "lxc", ["container=lxc"]),
    ({"/proc/1/cgroup": "12:memory:/docker/0123abcd\n"}, (), {}, "docker",
     ["/proc/1/cgroup mentions docker"]),
    ({"/proc/1/cgroup": "0::/init.scope\n"}, (), {}, None, []),
])
def test_container_detection(tmp_path, files, dirs, environ, kind, evidence) -> None:
    root = make_root(tmp_path, files, dirs)
    assert host.container(root, environ) == {"kind": kind, "evidence": evidence}


@pytest.mark.parametrize(("version", "environ", "expected"), [
    ("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1)\n", {}, True),
    ("Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com)\n", {}, True),
    ("Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)\n", {}, False),
    ("Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)\n", {"WSL_DISTRO_NAME": "Ubuntu"}, True),
])
def test_wsl_detection(tmp_path, version, environ, expected) -> None:
    root = make_root(tmp_path, {"/proc/version": version})
    assert host.wsl(root, environ) is expected


def test_missing_files_become_reasons_not_errors(tmp_path: Path) -> None:
    facts = host.probe(root=tmp_path, environ={})  # an empty tree: nothing to read
    for key in ("distro", "distro_id", "distro_version"):
        assert is_na(facts["os"][key]) and "os-release" in facts["os"][key]["unavailable"]
    assert is_na(facts["shm"]) and "/dev/shm" in facts["shm"]["unavailable"]
    assert is_na(facts["kernel_modules"]) and "/proc/modules" in facts["kernel_modules"]["unavailable"]
    assert is_na(facts["dev_nodes"])
    assert is_na(facts["pci_nvidia_devices"]) and "sysfs" in facts["pci_nvidia_devices"]["unavailable"]
    assert is_na(facts["cpu"]["model"])
    # Facts that do not come from the tree are still there.
    assert isinstance(facts["ram"]["total_bytes"], int)
    assert facts["container"] == {"kind": None, "evidence": []}


@pytest.mark.parametrize(("cpuinfo", "model"), [
    ("processor\t: 0\nBogoMIPS\t: 2000.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
     "CPU variant\t: 0x0\nCPU part\t: 0xd4f\nCPU revision\t: 0\n", "Arm Neoverse-V2 (part 0xd4f)"),
    ("processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n", "Arm implementer 0x61 part 0x022"),
])
def test_aarch64_cpu_model_from_the_midr(tmp_path, cpuinfo, model) -> None:
    root = make_root(tmp_path, {"/proc/cpuinfo": cpuinfo})
    assert host.cpu_info(root)["model"] == model


def test_kernel_modules_fall_back_to_sys_module(tmp_path: Path) -> None:
    root = make_root(tmp_path, {}, dirs=("/sys/module/nvidia", "/sys/module/nvidia_uvm"))
    assert host.kernel_modules(root) == {"nvidia": True, "nvidia_uvm": True,
                                         "nvidia_peermem": False, "nouveau": False}


def test_one_failing_fact_does_not_hide_the_others(gpu_node: Path, monkeypatch) -> None:
    import psutil

    def broken():
        raise PermissionError(13, "Permission denied", "/proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    facts = host.probe(root=gpu_node, environ={})
    assert facts["ram"] == {"unavailable": "Permission denied: /proc/meminfo"}
    assert facts["cpu"]["model"] == "Intel(R) Xeon(R) Platinum 8480+"


def test_disk_of_a_missing_folder_is_unavailable(monkeypatch, tmp_path: Path) -> None:
    disks = host.disks({"TMPDIR": str(tmp_path / "gone")})
    tmp = [d for d in disks if d["label"] == "tmp"][0]
    assert tmp["path"] == str(tmp_path / "gone")
    assert is_na(tmp["free_bytes"]) and is_na(tmp["total_bytes"])
    cwd = [d for d in disks if d["label"] == "cwd"][0]
    assert cwd["path"] == os.getcwd() and cwd["total_bytes"] >= cwd["free_bytes"] > 0


def test_ulimits_unlimited(monkeypatch) -> None:
    values = {resource.RLIMIT_MEMLOCK: (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
              resource.RLIMIT_NOFILE: (1024, 1048576)}
    monkeypatch.setattr(resource, "getrlimit", lambda res: values[res])
    assert host.ulimits() == {"memlock_soft": "unlimited", "memlock_hard": "unlimited",
                              "nofile_soft": 1024, "nofile_hard": 1048576}


def test_glibc(monkeypatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.35", raising=False)
    assert host.glibc() == "2.35"

    def no_confstr(name):
        raise ValueError("unrecognized configuration name")

    monkeypatch.setattr(os, "confstr", no_confstr, raising=False)
    monkeypatch.setattr(host._platform, "libc_ver", lambda: ("", ""))
    assert is_na(host.glibc())


@pytest.mark.parametrize(("system", "machine", "expected"), [
    ("Linux", "x86_64", "linux-x86_64"), ("Linux", "aarch64", "linux-aarch64"),
    ("Linux", "arm64", "linux-aarch64"), ("Windows", "AMD64", "windows-x86_64"),
    ("Darwin", "arm64", "macos-arm64"), ("Darwin", "x86_64", "macos-x86_64"),
    ("Linux", "ppc64le", "linux-ppc64le"),
])
def test_platform_name(system, machine, expected) -> None:
    assert host.platform_name(system, machine) == expected


def test_this_machine() -> None:
    """The real probe on the test machine: types, not values (the machine varies)."""
    facts = host.probe()
    assert set(facts) == set(CONTRACT)
    assert isinstance(facts["hostname"], str) and facts["hostname"]
    assert facts["platform"] in {"linux-x86_64", "linux-aarch64", "windows-x86_64",
                                 "macos-arm64", "macos-x86_64"}
    assert facts["cpu"]["logical_cores"] >= 1
    assert facts["ram"]["total_bytes"] >= facts["ram"]["available_bytes"] > 0
    assert isinstance(facts["wsl"], bool)


# ---- cgroup limits (containers, pods, Slurm jobs) ---------------------------------------------

CG = "/sys/fs/cgroup"


@pytest.mark.parametrize("files, expected", [
    # cgroup v2 inside a container with its own cgroup namespace: the limits sit at the mount.
    ({"/proc/self/cgroup": "0::/\n", f"{CG}/memory.max": "68719476736\n", f"{CG}/cpu.max": "800000 100000\n"},
     {"version": 2, "memory_limit_bytes": 64 * 1024**3, "memory_limit_source": f"{CG}/memory.max = 68719476736",
      "cpu_quota_cores": 8.0, "cpu_quota_source": f"{CG}/cpu.max = 800000 100000"}),
    # v2 on a host: the tightest limit along the path wins (the slice caps the job).
    ({"/proc/self/cgroup": "0::/job.slice/step.scope\n", f"{CG}/job.slice/memory.max": "1073741824\n",
      f"{CG}/job.slice/step.scope/memory.max": "max\n", f"{CG}/job.slice/step.scope/cpu.max": "max 100000\n",
      f"{CG}/job.slice/cpu.max": "150000 100000\n"},
     {"version": 2, "memory_limit_bytes": 1024**3, "memory_limit_source": f"{CG}/job.slice/memory.max = 1073741824",
      "cpu_quota_cores": 1.5, "cpu_quota_source": f"{CG}/job.slice/cpu.max = 150000 100000"}),
    # v2, no limits anywhere.
    ({"/proc/self/cgroup": "0::/user.slice\n", f"{CG}/user.slice/memory.max": "max\n",
      f"{CG}/user.slice/cpu.max": "max 100000\n"},
     {"version": 2, "memory_limit_bytes": None, "memory_limit_source": None, "cpu_quota_cores": None,
      "cpu_quota_source": None}),
    # v1 (hybrid), as on this CI host: "no limit" is PAGE_COUNTER_MAX, no quota is -1.
    ({"/proc/self/cgroup": "4:memory:/a\n1:cpu,cpuacct:/\n0::/\n",
      f"{CG}/memory/a/memory.limit_in_bytes": "9223372036854771712\n",
      f"{CG}/cpu,cpuacct/cpu.cfs_quota_us": "-1\n", f"{CG}/cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     {"version": 1, "memory_limit_bytes": None, "memory_limit_source": None, "cpu_quota_cores": None,
      "cpu_quota_source": None}),
    # v1 Docker --memory 16g --cpus 4 without a cgroup namespace: the host's path is not under the
    # container's mount, so the mount itself is read.
    ({"/proc/self/cgroup": "4:memory:/docker/3f2a\n1:cpu,cpuacct:/docker/3f2a\n",
      f"{CG}/memory/memory.limit_in_bytes": "17179869184\n",
      f"{CG}/cpu,cpuacct/cpu.cfs_quota_us": "400000\n", f"{CG}/cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
     {"version": 1, "memory_limit_bytes": 16 * 1024**3,
      "memory_limit_source": f"{CG}/memory/memory.limit_in_bytes = 17179869184",
      "cpu_quota_cores": 4.0, "cpu_quota_source": f"{CG}/cpu,cpuacct/cpu.cfs_quota_us = 400000 (period 100000)"}),
])
def test_cgroup_limits(tmp_path, files, expected) -> None:
    assert host.cgroup_limits(make_root(tmp_path, files)) == expected


def test_cgroup_unreadable_is_a_reason(tmp_path) -> None:
    assert host.cgroup_limits(tmp_path)["unavailable"] == "/proc/self/cgroup is not readable"
    root = make_root(tmp_path, {"/proc/self/cgroup": "garbage\n"})
    assert host.cgroup_limits(root)["unavailable"] == "no cgroup listed in /proc/self/cgroup"


# ------------------------------------------------------------------ what the cwd shadows (issue 10, class 1)


def test_cwd_shadowing_names_packages_and_modules_relative(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise RuntimeError('never read')\n")
    (tmp_path / "json.py").write_text("raise RuntimeError('never read')\n")
    (tmp_path / "numpy").mkdir()  # no __init__.py: a namespace folder, which an installed numpy beats
    (tmp_path / "random.txt").write_text("")
    (tmp_path / "my_secret_project.py").write_text("")  # not a shadowing name: never reported
    monkeypatch.chdir(tmp_path)

    def no_reading(*_a, **_k):
        raise AssertionError("the probe opened a file")

    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "open", no_reading)
    facts = host.cwd_shadowing()
    assert facts == [{"module": "torch", "path": "./torch/", "kind": "package"},
                     {"module": "json", "path": "./json.py", "kind": "module"}]
    assert str(tmp_path) not in json.dumps(facts)


def test_cwd_shadowing_in_the_probe_and_when_the_cwd_is_gone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert host.probe(root=tmp_path, environ={})["cwd_shadowing"] == []
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert is_na(host.probe(root=tmp_path, environ={})["cwd_shadowing"])
