"""Probe: the host (OS, CPU, memory, disks, containers, kernel modules, NVIDIA device nodes).

Section shape (see tests/fixtures/snapshots/example_8xh100.json)::

    hostname, os{system, distro, distro_id, distro_version}, kernel, arch, platform, glibc,
    cpu{model, logical_cores, physical_cores}, ram{total_bytes, available_bytes},
    disk[{label, path, free_bytes, total_bytes}] (labels cwd, home, tmp),
    shm{path, total_bytes, free_bytes}, container{kind, evidence[]}, cgroup{version,
    memory_limit_bytes, memory_limit_source, cpu_quota_cores, cpu_quota_source}, wsl, ulimits{memlock_soft,
    memlock_hard, nofile_soft, nofile_hard}, kernel_modules{nvidia, nvidia_uvm, nvidia_peermem,
    nouveau}, dev_nodes[], pci_nvidia_devices[{address, device_id, class}],
    cwd_shadowing[{module, path, kind}] (``./torch/``, ``./json.py`` in the working directory)

Every field is computed on its own: a failure becomes ``na("reason")`` for that field only.
Filesystem facts are read below ``root`` (default ``/``) and variables from ``environ``, so
tests point them at a fake tree (a /proc/modules with nouveau, a /sys/bus/pci with an NVIDIA
device, a /.dockerenv, a WSL /proc/version).
"""

from __future__ import annotations

import os
import platform as _platform
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from envcheck.probes import fabric, kernel_log
from envcheck.snapshot import na

NVIDIA_PCI_VENDOR = "0x10de"
# PCI base class 0x03 = display controller (0x0300 VGA, 0x0302 3D controller: data-centre GPUs).
# NVSwitches (0x0680) and audio functions (0x0403) of the same vendor are not GPUs.
DISPLAY_CLASS_PREFIX = "0x03"
MODULES = ("nvidia", "nvidia_uvm", "nvidia_peermem", "nouveau")


def _path(root: str | os.PathLike, absolute: str) -> Path:
    return Path(root) / absolute.lstrip("/")


def _field(fn: Callable[[], Any]) -> Any:
    """Run one fact's reader; an exception becomes na() with its reason."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one unreadable fact must not hide the others
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        filename = getattr(exc, "filename", None)
        return na(f"{reason}: {filename}" if filename else f"{type(exc).__name__}: {reason}")


def platform_name(system: str, machine: str) -> str:
    """The install engine's platform name: linux-x86_64, linux-aarch64, windows-x86_64,
    macos-arm64, macos-x86_64 (anything else is spelled ``<os>-<machine>``)."""
    osname = {"linux": "linux", "windows": "windows", "darwin": "macos"}.get(system.lower(), system.lower())
    m = machine.lower()
    m = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64" if osname != "macos" else "arm64",
         "aarch64": "aarch64" if osname != "macos" else "arm64"}.get(m, m)
    return f"{osname}-{m}"


def read_os_release(root: str | os.PathLike = "/") -> dict[str, str]:
    """Key/value pairs of /etc/os-release (or /usr/lib/os-release), quotes removed."""
    for candidate in ("/etc/os-release", "/usr/lib/os-release"):
        p = _path(root, candidate)
        if p.is_file():
            out = {}
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip() and not key.startswith("#"):
                    out[key.strip()] = value.strip().strip("'\"")
            return out
    raise FileNotFoundError(2, "no os-release file", "/etc/os-release")


def os_info(root: str | os.PathLike = "/") -> dict:
    system = _platform.system()
    info: dict[str, Any] = {"system": system}
    if system == "Linux":
        rel = _field(lambda: read_os_release(root))
        if isinstance(rel, dict) and "unavailable" not in rel:
            info["distro"] = rel.get("PRETTY_NAME") or na("no PRETTY_NAME in os-release")
            info["distro_id"] = rel.get("ID") or na("no ID in os-release")
            info["distro_version"] = rel.get("VERSION_ID") or na("no VERSION_ID in os-release")
        else:
            info["distro"] = info["distro_id"] = info["distro_version"] = rel
    elif system == "Darwin":
        ver = _platform.mac_ver()[0]
        info.update(distro=f"macOS {ver}", distro_id="macos", distro_version=ver)
    elif system == "Windows":
        release, version = _platform.win32_ver()[:2]
        info.update(distro=f"Windows {release}", distro_id="windows", distro_version=version)
    else:
        info["distro"] = info["distro_id"] = info["distro_version"] = na(f"unknown OS {system}")
    return info


def glibc() -> Any:
    """glibc version of this process ("2.35"); na() on musl, macOS, Windows."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.35"
    except (AttributeError, ValueError, OSError):
        value = None
    if value and value.startswith("glibc "):
        return value.split()[1]
    lib, version = _platform.libc_ver()
    if lib == "glibc" and version:
        return version
    return na("not a glibc system (musl, macOS or Windows)")


def cpu_info(root: str | os.PathLike = "/") -> dict:
    import psutil

    def model() -> Any:
        p = _path(root, "/proc/cpuinfo")
        if p.is_file():
            fields: dict[str, str] = {}
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
            for key in ("model name", "Model", "cpu model"):
                if fields.get(key):
                    return fields[key]
            return arm_cpu_name(fields.get("CPU implementer"), fields.get("CPU part")) \
                or na("no model name in /proc/cpuinfo")
        return _platform.processor() or na("CPU model not reported by this OS")

    def physical() -> Any:
        n = psutil.cpu_count(logical=False)
        return n if n else na("psutil cannot count physical cores here")

    return {
        "model": _field(model),
        "logical_cores": _field(lambda: psutil.cpu_count() or na("psutil cannot count cores here")),
        "physical_cores": _field(physical),
    }


# Arm server cores (implementer 0x41) by MIDR part number, as named in Linux
# arch/arm64/include/asm/cputype.h (ARM_CPU_PART_NEOVERSE_*). aarch64 /proc/cpuinfo has no
# "model name"; NVIDIA Grace (GH200, GB200) reports Neoverse-V2.
ARM_PARTS = {"0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2",
             "0xd4f": "Neoverse-V2", "0xd84": "Neoverse-V3", "0xd8e": "Neoverse-N3"}


def arm_cpu_name(implementer: str | None, part: str | None) -> str | None:
    if not implementer or not part:
        return None
    part = part.lower()
    if implementer.lower() == "0x41" and part in ARM_PARTS:
        return f"Arm {ARM_PARTS[part]} (part {part})"
    return f"Arm implementer {implementer.lower()} part {part}"


def ram() -> dict:
    import psutil

    vm = psutil.virtual_memory()
    return {"total_bytes": int(vm.total), "available_bytes": int(vm.available)}


def _temp_dir(environ: Mapping[str, str]) -> str:
    # tempfile.gettempdir() would create a file to test writability; the variables say enough.
    for name in ("TMPDIR", "TEMP", "TMP"):
        if environ.get(name):
            return environ[name]
    return "/tmp" if os.name != "nt" else os.path.expandvars(r"%SystemRoot%\Temp")


def disks(environ: Mapping[str, str]) -> list:
    import shutil

    out = []
    for label, where in (("cwd", os.getcwd), ("home", lambda: os.path.expanduser("~")),
                         ("tmp", lambda: _temp_dir(environ))):
        path = _field(where)
        entry: dict[str, Any] = {"label": label, "path": path}
        usage = _field(lambda p=path: shutil.disk_usage(p)) if isinstance(path, str) else path
        if isinstance(usage, dict):  # na()
            entry.update(free_bytes=usage, total_bytes=usage)
        else:
            entry.update(free_bytes=int(usage.free), total_bytes=int(usage.total))
        out.append(entry)
    return out


def shm(root: str | os.PathLike = "/") -> Any:
    """Size of /dev/shm: PyTorch DataLoader workers and NCCL's intra-node transport live there."""
    p = _path(root, "/dev/shm")
    if not p.is_dir():
        return na("no /dev/shm on this system")
    st = os.statvfs(p)
    return {"path": "/dev/shm", "total_bytes": st.f_frsize * st.f_blocks,
            "free_bytes": st.f_frsize * st.f_bavail}


_CGROUP_HINTS = (("kubepods", "kubernetes"), ("libpod", "podman"), ("docker", "docker"),
                 ("containerd", "containerd"), ("lxc", "lxc"))


def container(root: str | os.PathLike = "/", environ: Mapping[str, str] | None = None) -> dict:
    """Which container runtime (if any) this process runs in, and the evidence for it.

    kind: kubernetes > podman > docker > lxc > other (the most specific wins: a Kubernetes pod
    usually also shows containerd or docker traces).
    """
    env = os.environ if environ is None else environ
    evidence: list[str] = []
    kinds: set[str] = set()
    if _path(root, "/.dockerenv").exists():
        evidence.append("/.dockerenv exists")
        kinds.add("docker")
    if _path(root, "/run/.containerenv").exists():
        evidence.append("/run/.containerenv exists")
        kinds.add("podman")
    if env.get("KUBERNETES_SERVICE_HOST"):
        evidence.append("KUBERNETES_SERVICE_HOST is set")
        kinds.add("kubernetes")
    if _path(root, "/var/run/secrets/kubernetes.io").exists():
        evidence.append("/var/run/secrets/kubernetes.io exists")
        kinds.add("kubernetes")
    # systemd's convention: the container manager exports $container (lxc, podman, docker, ...).
    runtime = env.get("container")
    if not runtime:
        try:
            runtime = _path(root, "/run/systemd/container").read_text(encoding="utf-8").strip()
        except OSError:
            runtime = None
    if runtime:
        evidence.append(f"container={runtime}")
        kinds.add(runtime.split("-")[0] if runtime.startswith("lxc") else runtime)
    try:
        cgroup = _path(root, "/proc/1/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cgroup = ""
    for hint, kind in _CGROUP_HINTS:
        if hint in cgroup:
            evidence.append(f"/proc/1/cgroup mentions {hint}")
            kinds.add(kind)
    kind = None
    for candidate in ("kubernetes", "podman", "docker", "lxc"):
        if candidate in kinds:
            kind = candidate
            break
    if kind is None and kinds:
        kind = sorted(kinds)[0]
    return {"kind": kind, "evidence": evidence}


# cgroup v1 writes "no limit" as PAGE_COUNTER_MAX rounded to pages (9223372036854771712 on 4 KiB
# pages); anything from 2^62 up is treated as unlimited.
_V1_UNLIMITED = 1 << 62


def _read(root: str | os.PathLike, absolute: str) -> str | None:
    try:
        return _path(root, absolute).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cgroup_dirs(root: str | os.PathLike, mount: str, path: str) -> list[str]:
    """This cgroup's folder and its ancestors up to the mount, innermost first. Inside a container
    without a cgroup namespace /proc/self/cgroup shows the host's path, which does not exist under
    the container's mount: then the mount itself is the container's cgroup."""
    parts = [p for p in path.split("/") if p and p != ".."]
    dirs = ["/".join([mount, *parts[:i]]) for i in range(len(parts), -1, -1)]
    existing = [d for d in dirs if _path(root, d).is_dir()]
    return existing or ([mount] if _path(root, mount).is_dir() else [])


def cgroup_limits(root: str | os.PathLike = "/") -> Any:
    """The memory limit and CPU quota of this process's cgroup: the tightest along its path.

    A container (Docker ``--memory``/``--cpus``, a Kubernetes ``resources.limits``, a Slurm job
    with ConstrainRAMSpace) can be far smaller than the host that psutil describes; the kernel
    OOM-kills at the memory limit and throttles at the quota. cgroup v2 (unified): memory.max
    and cpu.max ("max" = no limit); v1: memory.limit_in_bytes, cpu.cfs_quota_us / cfs_period_us
    (-1 = no quota) - kernel docs admin-guide/cgroup-v2.rst and cgroup-v1/memory.rst.
    ``memory_limit_bytes`` / ``cpu_quota_cores`` are None when no limit is set; ``*_source``
    names the file and value that set the tightest one.
    """
    text = _read(root, "/proc/self/cgroup")
    if text is None:
        return na("/proc/self/cgroup is not readable")
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hid, controllers, path = fields
        if hid == "0" and controllers == "":
            unified = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    out: dict[str, Any] = {"version": 1 if v1.get("memory") or v1.get("cpu") else (2 if unified is not None else None),
                           "memory_limit_bytes": None, "memory_limit_source": None,
                           "cpu_quota_cores": None, "cpu_quota_source": None}
    if out["version"] is None:
        return na("no cgroup listed in /proc/self/cgroup")

    def tightest(values: list[tuple[float, str]], key: str) -> None:
        if values:
            value, where = min(values)
            out[key] = int(value) if key == "memory_limit_bytes" else round(value, 3)
            out[key.rsplit("_", 1)[0] + "_source"] = where

    mem: list[tuple[float, str]] = []
    cpu: list[tuple[float, str]] = []
    if "memory" in v1:
        for d in _cgroup_dirs(root, "/sys/fs/cgroup/memory", v1["memory"]):
            raw = _read(root, f"{d}/memory.limit_in_bytes")
            if raw and raw.lstrip("-").isdigit() and 0 < int(raw) < _V1_UNLIMITED:
                mem.append((int(raw), f"{d}/memory.limit_in_bytes = {raw}"))
    cpu_v1 = v1.get("cpu")
    if cpu_v1 is not None:
        mount = next((m for m in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
                      if _path(root, m).is_dir()), "/sys/fs/cgroup/cpu")
        for d in _cgroup_dirs(root, mount, cpu_v1):
            quota, period = _read(root, f"{d}/cpu.cfs_quota_us"), _read(root, f"{d}/cpu.cfs_period_us")
            if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
                cpu.append((int(quota) / int(period), f"{d}/cpu.cfs_quota_us = {quota} (period {period})"))
    if unified is not None and not (mem or "memory" in v1):
        for d in _cgroup_dirs(root, "/sys/fs/cgroup", unified):
            raw = _read(root, f"{d}/memory.max")
            if raw and raw.isdigit():
                mem.append((int(raw), f"{d}/memory.max = {raw}"))
    if unified is not None and not (cpu or cpu_v1 is not None):
        for d in _cgroup_dirs(root, "/sys/fs/cgroup", unified):
            raw = (_read(root, f"{d}/cpu.max") or "").split()
            if len(raw) == 2 and raw[0].isdigit() and raw[1].isdigit() and int(raw[1]) > 0:
                cpu.append((int(raw[0]) / int(raw[1]), f"{d}/cpu.max = {' '.join(raw)}"))
    tightest(mem, "memory_limit_bytes")
    tightest(cpu, "cpu_quota_cores")
    return out


def wsl(root: str | os.PathLike = "/", environ: Mapping[str, str] | None = None) -> bool:
    """Windows Subsystem for Linux: GPU access goes through /usr/lib/wsl/lib, not /dev/nvidia*."""
    env = os.environ if environ is None else environ
    if env.get("WSL_DISTRO_NAME") or env.get("WSL_INTEROP"):
        return True
    try:
        text = _path(root, "/proc/version").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "microsoft" in text.lower()


def ulimits() -> dict:
    """Locked-memory and open-file limits: RDMA (NCCL over InfiniBand) pins memory, and
    DataLoader workers sharing tensors through file descriptors exhaust a low nofile limit."""
    import resource

    def fmt(v: int) -> Any:
        return "unlimited" if v == resource.RLIM_INFINITY else int(v)

    out: dict[str, Any] = {}
    for name, res in (("memlock", resource.RLIMIT_MEMLOCK), ("nofile", resource.RLIMIT_NOFILE)):
        soft, hard = resource.getrlimit(res)
        out[f"{name}_soft"], out[f"{name}_hard"] = fmt(soft), fmt(hard)
    return out


def kernel_modules(root: str | os.PathLike = "/") -> dict:
    """Which of the NVIDIA-relevant modules are loaded (nouveau blocks the NVIDIA driver)."""
    p = _path(root, "/proc/modules")
    if p.is_file():
        loaded = {line.split(" ", 1)[0] for line in p.read_text(encoding="utf-8").splitlines() if line}
    elif _path(root, "/sys/module").is_dir():
        loaded = {m for m in MODULES if _path(root, f"/sys/module/{m}").is_dir()}
    else:
        raise FileNotFoundError(2, "no /proc/modules (not Linux?)", "/proc/modules")
    return {m: m in loaded for m in MODULES}


def _dev_node_key(name: str) -> tuple:
    # Control nodes first (nvidia-uvm, nvidiactl), then nvidia0..N in numeric order.
    m = re.fullmatch(r"nvidia(\d+)", name)
    return (1, int(m.group(1)), name) if m else (0, 0, name)


def dev_nodes(root: str | os.PathLike = "/") -> list[str]:
    d = _path(root, "/dev")
    if not d.is_dir():
        raise FileNotFoundError(2, "no /dev directory", "/dev")
    names = sorted((p.name for p in d.glob("nvidia*")), key=_dev_node_key)
    return [f"/dev/{n}" for n in names]


def pci_nvidia_devices(root: str | os.PathLike = "/") -> list[dict]:
    """NVIDIA GPUs on the PCI bus, whether or not a driver is bound (for "device but no driver")."""
    base = _path(root, "/sys/bus/pci/devices")
    if not base.is_dir():
        raise FileNotFoundError(2, "no /sys/bus/pci/devices (not Linux, or sysfs not mounted)",
                                "/sys/bus/pci/devices")
    out = []
    for dev in sorted(base.iterdir(), key=lambda p: p.name):
        try:
            vendor = (dev / "vendor").read_text().strip().lower()
            if vendor != NVIDIA_PCI_VENDOR:
                continue
            klass = (dev / "class").read_text().strip().lower()
            if not klass.startswith(DISPLAY_CLASS_PREFIX):
                continue
            device_id = (dev / "device").read_text().strip().lower()
        except OSError:
            continue
        out.append({"address": dev.name, "device_id": device_id, "class": klass})
    return out


def ld_cache_libcuda(root: str | os.PathLike = "/") -> dict:
    """Whether the dynamic loader's cache (/etc/ld.so.cache) names libcuda.so.1 and the
    unversioned libcuda.so. Triton (and other dlopen("libcuda.so") users) look for the
    unversioned name in `ldconfig -p` (triton-lang/triton#1981, #2019); under WSL2 only
    libcuda.so.1 is usually cached (microsoft/WSL#8587, #5548). The cache's string table holds
    each name NUL-terminated, so a byte search answers without running ldconfig."""
    data = _path(root, "/etc/ld.so.cache").read_bytes()[:64 * 1024 * 1024]
    return {"versioned": b"libcuda.so.1\x00" in data, "unversioned": b"libcuda.so\x00" in data}


# Debian/Ubuntu packages that put the NVIDIA driver's user-space libraries (libcuda,
# libnvidia-ml) on the system. In a container they come from the image, not from the host
# through the NVIDIA Container Toolkit: the classic cause of "Driver/library version mismatch"
# inside containers (k4yt3x/video2x#1226, E4S-Project/e4s#172, tensorflow/build#59).
_DRIVER_PACKAGES = re.compile(r"^(libnvidia-compute|libnvidia-gl|nvidia-driver|nvidia-utils|"
                              r"libnvidia-ml|nvidia-compute-utils)(-\d+)?(-server)?(:[a-z0-9_]+)?\.list$")


def nvidia_driver_packages(root: str | os.PathLike = "/") -> list[str]:
    """Installed (dpkg) NVIDIA driver library packages; raises when there is no dpkg database."""
    info = _path(root, "/var/lib/dpkg/info")
    if not info.is_dir():
        raise FileNotFoundError(2, "no dpkg database (not Debian/Ubuntu)", "/var/lib/dpkg/info")
    return sorted(p.name[:-5].split(":")[0] for p in info.iterdir() if _DRIVER_PACKAGES.match(p.name))


def cwd_shadowing(cwd: str | os.PathLike | None = None) -> list[dict]:
    """The modules of recipes/cwd_shadowing.json that a folder ``<name>/__init__.py`` or a file
    ``<name>.py`` in the working directory shadows for the user's own ``python -c`` / ``-m`` /
    REPL started there (Python puts the cwd first on sys.path: docs "sys.path"). Paths are
    relative (``./torch/``); only existence is checked (stat), no file is opened or listed, so
    nothing else about the folder reaches the snapshot. envcheck's own children drop the cwd
    from their path (proc.py), so doctor's torch probe is not affected by what this finds."""
    from envcheck import recipes

    base = Path(os.getcwd() if cwd is None else cwd)
    out = []
    for entry in recipes.load("cwd_shadowing")["modules"]:
        name = entry["name"]
        # A regular package wins over a module of the same name in one directory (importlib's
        # FileFinder); both are reported, the package first.
        if (base / name / "__init__.py").is_file():
            out.append({"module": name, "path": f"./{name}/", "kind": "package"})
        if (base / f"{name}.py").is_file():
            out.append({"module": name, "path": f"./{name}.py", "kind": "module"})
    return out


def probe(root: str | os.PathLike = "/", environ: Mapping[str, str] | None = None) -> dict:
    """Every host fact; each one that cannot be read is na("reason")."""
    env = os.environ if environ is None else environ
    uname = _platform.uname()
    linux = sys.platform.startswith("linux")
    not_linux = na(f"not Linux ({sys.platform})")
    return {
        "hostname": _field(lambda: socket.gethostname() or uname.node),
        "os": _field(lambda: os_info(root)),
        "kernel": uname.release or na("kernel release not reported"),
        "arch": uname.machine or na("machine type not reported"),
        "platform": _field(lambda: platform_name(uname.system, uname.machine)),
        "glibc": _field(glibc),
        "cpu": _field(lambda: cpu_info(root)),
        "ram": _field(ram),
        "disk": _field(lambda: disks(env)),
        "shm": _field(lambda: shm(root)),
        "container": _field(lambda: container(root, env)),
        "cgroup": _field(lambda: cgroup_limits(root)) if linux else not_linux,
        "wsl": _field(lambda: wsl(root, env)) if linux else False,
        "ulimits": _field(ulimits),
        "kernel_modules": _field(lambda: kernel_modules(root)) if linux else not_linux,
        "dev_nodes": _field(lambda: dev_nodes(root)) if linux else not_linux,
        "pci_nvidia_devices": _field(lambda: pci_nvidia_devices(root)) if linux else not_linux,
        # NVIDIA XID/SXid errors of this boot (probes/kernel_log.py); journalctl and dmesg are
        # only asked about the real machine, never for a fixture root.
        "kernel_log": _field(lambda: kernel_log.probe(root, commands=str(root) == "/"))
        if linux else not_linux,
        "ld_cache_libcuda": _field(lambda: ld_cache_libcuda(root)) if linux else not_linux,
        "nvidia_driver_packages": _field(lambda: nvidia_driver_packages(root)) if linux else not_linux,
        # NVSwitch functions and nvidia-fabricmanager (probes/fabric.py)
        "fabric": _field(lambda: fabric.probe(root)) if linux else not_linux,
        # what the cwd shadows for the user's own `python -c`/`-m` (rules/env.py)
        "cwd_shadowing": _field(cwd_shadowing),
    }
