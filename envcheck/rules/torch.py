"""Rules about the torch install of the target interpreter: present, importable, the right
build for this machine's GPUs and driver, and ready for torch.compile.

Facts (minimum drivers, Python ranges, newest known release) come from recipes/ through
envcheck.recommend; the fix of every install finding is ``recommend.install_fix`` so that
``envcheck doctor`` and ``envcheck install`` never disagree.
"""

from __future__ import annotations

import re
from typing import Any

from packaging.version import InvalidVersion, Version

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import rule
from envcheck.rules._util import (
    allocated_gpu_count,
    arch_support,
    as_dict,
    as_list,
    ask_recommend,
    container_hides_gpu,
    cuda_lib_dirs,
    dicts,
    driver_os,
    emits,
    fmt_cc,
    gpu_label,
    gpu_present,
    gpus,
    host_os,
    install_fix,
    major_minor,
    nvidia_gpu_count,
    nvml_status,
    parse_arch,
    parse_cc,
    parse_visible_devices,
    pci_nvidia_gpus,
    python_cmd,
    torch_build,
    torch_ok,
    torch_status,
    torch_version,
    version_tuple,
)
from envcheck.snapshot import get, is_na

# Linux signal numbers (x86_64 and aarch64) of the usual import crashes; a snapshot may be read
# on another OS, so the names are not taken from this interpreter's signal module.
_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}
_SIGNAL_HINTS = {
    "SIGILL": "illegal instruction: the CPU lacks an instruction set a native library was built "
              "for (old or emulated CPU, e.g. no AVX2 under some VMs/QEMU)",
    "SIGKILL": "killed from outside, usually the kernel OOM killer (`sudo dmesg | grep -i oom`)",
    "SIGSEGV": "a native library crashed while loading; usually conflicting CUDA/cuDNN/OpenMP "
               "libraries picked up through LD_LIBRARY_PATH or LD_PRELOAD, or a corrupt install",
    "SIGBUS": "bus error while mapping a library: often a full or flaky (network) filesystem",
    "SIGABRT": "a native library aborted (see the stderr tail)",
}


def _error(snapshot: dict) -> dict:
    return as_dict(get(snapshot, "torch.error"))


def _base_version(v: str | None) -> str | None:
    return v.split("+", 1)[0] if isinstance(v, str) else None


def _error_evidence(snapshot: dict) -> dict[str, Any]:
    err = _error(snapshot)
    exe = get(snapshot, "python.executable")
    ev: dict[str, Any] = {"python": exe} if isinstance(exe, str) and exe else {}
    for key in ("message", "stderr_tail"):
        text = err.get(key)
        if isinstance(text, str) and text.strip():
            ev[key] = text.strip()[-2000:]
    return ev


# ---------------------------------------------------------------------------------- presence


@rule
@emits("torch.missing")
def torch_missing(snapshot: dict):
    """torch is not installed in the target interpreter: nothing else can run."""
    if torch_status(snapshot) != "not_installed":
        return
    yield Finding(
        id="torch.missing", severity=Severity.ERROR,
        title="PyTorch is not installed in this Python environment",
        evidence={"python": python_cmd(snapshot), "python_version": get(snapshot, "python.version")},
        fix=install_fix(snapshot),
    )


@rule
@emits("torch.probe-failed")
def torch_probe_failed(snapshot: dict):
    """The target interpreter could not be run or did not report: nothing is known about torch."""
    section = snapshot.get("torch")
    if isinstance(section, dict) and not is_na(section):
        if torch_status(snapshot) != "probe_failed":
            return
        ev = _error_evidence(snapshot)
    else:
        ev = {"message": section.get("unavailable") if isinstance(section, dict) else repr(section)}
    yield Finding(
        id="torch.probe-failed", severity=Severity.WARN,
        title="could not inspect torch: the target Python did not run or did not report",
        evidence=ev,
        fix=f"check that `{python_cmd(snapshot)} -c 'import sys; print(sys.version)'` runs; "
            "pass another interpreter with `envcheck doctor --python PATH`",
    )


# Known import failures: (pattern on the message + stderr, cause, fix template). Sources:
# - undefined symbol __nvJitLink*: a system CUDA on LD_LIBRARY_PATH shadows the wheel's nvidia-*
#   libraries (pytorch/pytorch#111469, #131312, #134929, #152783).
# - GLIBC_2.xx not found: manylinux_2_28 wheels on an older distro (pytorch/pytorch#123649).
# - GLIBCXX_3.4.xx not found: an old libstdc++ (often conda's) loaded before the system one.
# - cannot open shared object file: a missing nvidia-* dependency wheel or a broken install.
# - torch._C / partially initialized: a local ./torch directory (e.g. a pytorch checkout) shadows
#   the installed package.
# - WinError 126 / c10.dll / fbgemm.dll: missing Microsoft Visual C++ Redistributable (the hint
#   torch/__init__.py prints on Windows).
_IMPORT_CAUSES: list[tuple[str, str, str]] = [
    (r"undefined symbol: __nvJitLink|libnvJitLink|undefined symbol: .*(cublas|cusparse|cudnn|nccl)",
     "a CUDA library from LD_LIBRARY_PATH was loaded instead of the copy bundled with the torch "
     "wheel (pytorch/pytorch#111469)",
     "{ld_fix}"),
    (r"GLIBC_(2\.\d+)'? not found",
     "the torch wheel needs a newer glibc than this OS has (manylinux_2_28 wheels need glibc >= 2.28; "
     "pytorch/pytorch#123649)",
     "use a newer OS or a container (e.g. Ubuntu 22.04+/RHEL 8+), or a torch release built for this glibc"),
    (r"GLIBCXX_\d+\.\d+\.\d+'? not found",
     "an older libstdc++ was loaded before the one torch needs (common in conda environments)",
     "update libstdc++ (`conda install -c conda-forge libstdcxx-ng` in conda) or remove the old "
     "directory from LD_LIBRARY_PATH"),
    (r"lib(cudnn|cublas|cudart|cusparse|cufft|curand|cusolver|nccl|nvrtc|cupti|nvJitLink)[^\s:]*: "
     r"cannot open shared object file",
     "a CUDA library torch depends on is missing (its nvidia-* dependency wheel is not installed "
     "or is broken)",
     "{install}"),
    (r"No module named 'torch\._C'|partially initialized module 'torch'",
     "a local `torch` directory (e.g. a PyTorch source checkout) shadows the installed package",
     "run from another directory, or build/install that checkout"),
    (r"WinError 126|c10\.dll|fbgemm\.dll|torch_cpu\.dll",
     "a DLL torch needs could not be loaded, usually the Microsoft Visual C++ Redistributable is missing",
     "install https://aka.ms/vs/17/release/vc_redist.x64.exe and open a new terminal"),
]


@rule
@emits("torch.import-failed")
def torch_import_failed(snapshot: dict):
    """``import torch`` raised. The message says why; known causes get a specific fix."""
    if torch_status(snapshot) != "import_error":
        return
    ev = _error_evidence(snapshot)
    text = f"{ev.get('message', '')}\n{ev.get('stderr_tail', '')}"
    cause, fix = None, None
    for pattern, why, how in _IMPORT_CAUSES:
        if re.search(pattern, text):
            cause, fix = why, how
            break
    if fix == "{ld_fix}":
        ld = get(snapshot, "env.vars.LD_LIBRARY_PATH")
        hits, cmd = cuda_lib_dirs(ld) if isinstance(ld, str) else ([], "unset LD_LIBRARY_PATH")
        fix = f"`{cmd if hits else 'unset LD_LIBRARY_PATH'}`, then run again"
    if fix is None or fix == "{install}":
        # The install is there but broken: a plain `pip install` of the same version would
        # answer "Requirement already satisfied", so the engine's command reinstalls.
        fix = install_fix(snapshot)
        if " -m pip install " in fix and "--force-reinstall" not in fix:
            fix = fix.replace(" -m pip install ", " -m pip install --force-reinstall ", 1)
    first = (ev.get("message") or "import failed").splitlines()[-1][:200]
    yield Finding(
        id="torch.import-failed", severity=Severity.ERROR,
        title=f"`import torch` fails: {first}",
        evidence=ev, fix=fix, detail=cause,
    )


@rule
@emits("torch.import-crashed")
def torch_import_crashed(snapshot: dict):
    """``import torch`` killed the interpreter with a signal: a native-library problem."""
    if torch_status(snapshot) != "crashed":
        return
    ev = _error_evidence(snapshot)
    sig = _error(snapshot).get("signal")
    name = _SIGNALS.get(sig, f"signal {sig}") if isinstance(sig, int) else "a signal"
    ev["signal"] = sig if isinstance(sig, int) else None
    ev["signal_name"] = name
    yield Finding(
        id="torch.import-crashed", severity=Severity.ERROR,
        title=f"`import torch` crashes the interpreter ({name})",
        evidence=ev,
        fix="run `env -u LD_PRELOAD -u LD_LIBRARY_PATH "
            f"{python_cmd(snapshot)} -c 'import torch'`; if that works, remove the conflicting library "
            "directories from those variables, else reinstall torch in a fresh venv "
            "(`envcheck install`)",
        detail=_SIGNAL_HINTS.get(name),
    )


@rule
@emits("torch.import-hung")
def torch_import_hung(snapshot: dict):
    """``import torch`` (or the first CUDA query) did not finish within the probe's timeout."""
    if torch_status(snapshot) != "timeout":
        return
    ev = _error_evidence(snapshot)
    timeout = _error(snapshot).get("timeout_s")
    ev["timeout_s"] = timeout if isinstance(timeout, (int, float)) else None
    yield Finding(
        id="torch.import-hung", severity=Severity.ERROR,
        title=f"`import torch` did not finish within {ev['timeout_s'] or '?'} s",
        evidence=ev,
        fix=f"time it: `{python_cmd(snapshot)} -X importtime -c 'import torch' 2> importtime.log` (slow "
            "site-packages on a network filesystem show up there); check that `nvidia-smi` "
            "answers (a wedged driver hangs CUDA initialisation); or re-run with --timeout 120",
        detail="a hang is usually a slow (network) filesystem holding site-packages, a wedged "
               "GPU driver, or a site-customize/plugin that blocks on the network",
    )


@rule
@emits("torch.multiple-installs")
def torch_multiple_installs(snapshot: dict):
    """More than one torch distribution is visible: which one imports depends on sys.path
    order, and pip upgrades/uninstalls only touch one of them (mixed torch/torchvision builds)."""
    dists = dicts(get(snapshot, "torch.distributions", []))
    if len(dists) < 2:
        return
    listed = [f"{d.get('name') or 'torch'} {d.get('version') or '(no version)'} at "
              f"{d.get('location') or '?'}" for d in dists]
    py = python_cmd(snapshot)
    ev: dict[str, Any] = {"installed": listed}
    if torch_ok(snapshot):
        ev["imported"] = get(snapshot, "torch.version")
    yield Finding(
        id="torch.multiple-installs", severity=Severity.WARN,
        title=f"{len(dists)} torch installs are visible to this Python",
        evidence=ev,
        fix=f"remove them all: repeat `{py} -m pip uninstall -y torch` until pip says it is not "
            "installed (each run removes the first copy on sys.path; a conda copy needs "
            "`conda remove pytorch`), then install one (`envcheck install`)",
    )


# ---------------------------------------------------------------------------------- the build


@rule
@emits("torch.cpu-build-on-gpu-host")
def torch_cpu_build_on_gpu_host(snapshot: dict):
    """A CPU-only (or ROCm) torch on a machine with an NVIDIA GPU never uses the GPU. PyPI's
    torch for Windows and macOS is CPU-only (pytorch test-infra get_wheel_install_command;
    pytorch/pytorch#30664)."""
    build = torch_build(snapshot)
    if build not in ("cpu", "rocm") or gpu_present(snapshot) is not True:
        return
    names = [g.get("name") for g in gpus(snapshot) if isinstance(g.get("name"), str)]
    ev: dict[str, Any] = {
        "torch": get(snapshot, "torch.version"),
        "torch_cuda": None,
        "nvidia_gpus": names or len(pci_nvidia_gpus(snapshot) or []),
    }
    if build == "rocm":
        ev["torch_hip"] = get(snapshot, "torch.hip")
    detail = None
    if host_os(snapshot) == "windows":
        detail = "`pip install torch` from PyPI gives a CPU-only build on Windows; CUDA builds come from download.pytorch.org"
    yield Finding(
        id="torch.cpu-build-on-gpu-host", severity=Severity.ERROR,
        title=f"torch {ev['torch']} is a {'ROCm' if build == 'rocm' else 'CPU-only'} build, but this "
              "machine has an NVIDIA GPU",
        evidence=ev, fix=install_fix(snapshot), detail=detail,
    )


def _driver_max_cuda_too_old(snapshot: dict, torch_cuda: str) -> bool | None:
    drv = major_minor(get(snapshot, "nvidia.cuda_driver_version"))
    want = major_minor(torch_cuda)
    if drv is None or want is None:
        return None
    return drv[0] < want[0]


@rule
@emits("torch.driver-too-old")
def torch_driver_too_old(snapshot: dict):
    """The driver is older than the least one that runs torch's CUDA major (NVIDIA CUDA
    minor-version compatibility: 11.x >= 450.80.02, 12.x >= 525.60.13, 13.x >= 580 on Linux;
    https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
    torch then reports "The NVIDIA driver on your system is too old" (c10/cuda/CUDAFunctions.cpp)
    and cuda.is_available() is False."""
    if torch_build(snapshot) != "cuda":
        return
    cuda = get(snapshot, "torch.cuda")
    driver = get(snapshot, "nvidia.driver_version")
    os_name = driver_os(snapshot)
    required = ask_recommend("driver_minimum", cuda, os=os_name)
    required = required if isinstance(required, str) else None
    have, need = version_tuple(driver), version_tuple(required)
    reason = get(snapshot, "torch.cuda_unavailable_reason")
    torch_says = isinstance(reason, str) and bool(
        re.search(r"driver on your system is too old|driver version is insufficient", reason, re.I))
    if have is not None and need is not None:
        too_old = have < need
    else:
        too_old = _driver_max_cuda_too_old(snapshot, cuda)
        if too_old is None:
            too_old = torch_says
    if not too_old:
        return
    ev: dict[str, Any] = {
        "driver": driver if isinstance(driver, str) else None,
        "driver_max_cuda": get(snapshot, "nvidia.cuda_driver_version"),
        "torch": get(snapshot, "torch.version"),
        "torch_cuda": cuda,
        "required": f">= {required}" if required else None,
        "os": os_name,
    }
    if torch_says:
        ev["torch_warning"] = reason.strip()
    upgrade = (f"upgrade the NVIDIA driver to {required} or newer (https://www.nvidia.com/Download/index.aspx)"
               if required else "upgrade the NVIDIA driver")
    yield Finding(
        id="torch.driver-too-old", severity=Severity.ERROR,
        title=f"NVIDIA driver {ev['driver'] or '(unknown)'} is too old for torch "
              f"{ev['torch']} (built with CUDA {cuda})",
        evidence=ev, fix=install_fix(snapshot),
        detail=f"either install a torch build for an older CUDA that this driver runs, or {upgrade}",
    )


def _devices(snapshot: dict) -> list[tuple[str, Any]]:
    """(label, compute capability) per GPU: NVML's list (every physical GPU), else torch's."""
    out = [(f"{gpu_label(g)} sm_{g.get('compute_capability', '?').replace('.', '')}"
            if isinstance(g.get("compute_capability"), str) else gpu_label(g),
            g.get("compute_capability"))
           for g in gpus(snapshot) if parse_cc(g.get("compute_capability")) is not None]
    if out:
        return out
    for d in dicts(get(snapshot, "torch.devices", [])):
        if parse_cc(d.get("capability")) is not None:
            cc = parse_cc(d.get("capability"))
            out.append((f"cuda:{d.get('index')} ({d.get('name', 'GPU')}) sm_{cc}", d.get("capability")))
    return out


@rule
@emits("torch.arch-unsupported", "torch.arch-ptx-only")
def torch_arch_unsupported(snapshot: dict):
    """A GPU whose compute capability has no matching code in torch's arch list fails with
    "no kernel image is available for execution on the device": a new GPU on an old wheel
    (RTX 50xx sm_120 needs torch >= 2.7 cu128, pytorch/pytorch#150733) or an old GPU on a wheel
    that dropped it (Maxwell/Pascal gone from cu128+ in 2.8, pytorch/pytorch#157517; CUDA 13
    builds start at sm_75, CUDA 13.0 release notes). When only PTX matches, kernels are
    JIT-compiled at first use (slow start, no tuned kernels): a warning."""
    if torch_build(snapshot) != "cuda":
        return
    arch_list = get(snapshot, "torch.arch_list")
    if not as_list(arch_list):
        return
    none, ptx = [], []
    for label, cc in _devices(snapshot):
        support = arch_support(arch_list, cc)
        if support is None:
            none.append((label, parse_cc(cc)))
        elif support == "ptx":
            ptx.append(label)
    sms = [p[1] for p in (parse_arch(a) for a in arch_list) if p and p[0] == "sm"]
    base_ev = {"torch": get(snapshot, "torch.version"), "torch_cuda": get(snapshot, "torch.cuda"),
               "arch_list": list(arch_list)}
    if none:
        too_new = sms and all(cc > max(sms) for _, cc in none)
        why = ("newer than every architecture this build has code for" if too_new
               else "not covered by this build (it dropped or never had this architecture)")
        yield Finding(
            id="torch.arch-unsupported", severity=Severity.ERROR,
            title=f"torch {base_ev['torch']} has no kernels for {', '.join(lbl for lbl, _ in none)}",
            evidence={**base_ev, "gpus": [lbl for lbl, _ in none],
                      "build_range": f"sm_{min(sms)}..sm_{max(sms)}" if sms else None},
            fix=install_fix(snapshot),
            detail=f"the GPU's compute capability {', '.join(fmt_cc(c) for _, c in none)} is {why}; "
                   "CUDA code fails with 'no kernel image is available for execution on the device'",
        )
    if ptx:
        yield Finding(
            id="torch.arch-ptx-only", severity=Severity.WARN,
            title=f"torch {base_ev['torch']} runs on {', '.join(ptx)} only through PTX JIT compilation",
            evidence={**base_ev, "gpus": ptx},
            fix=install_fix(snapshot),
            detail="no native code (cubin) for this architecture: kernels are compiled by the driver "
                   "on first use (minutes, cached in ~/.nv/ComputeCache) and are not tuned for it",
        )


def _py_outside(py: tuple[int, int], rng: Any) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2):
        return None
    lo, hi = major_minor(rng[0]), major_minor(rng[1])
    if lo is None or hi is None or lo <= py <= hi:
        return None
    return lo, hi


def _mm(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


@rule
@emits("torch.python-unsupported")
def torch_python_unsupported(snapshot: dict):
    """Python outside the range a torch release ships wheels for (pytorch test-infra
    generate_binary_build_matrix.py, per release; ranges in recipes/). With torch installed:
    an unsupported combination (source build, stale pin). Without torch: `pip install torch`
    finds no wheel (Python too new) or silently falls back to an old release (too old)."""
    py = major_minor(get(snapshot, "python.version"))
    if py is None:
        return
    status = torch_status(snapshot)
    installed = _base_version(torch_version(snapshot)) if status != "not_installed" else None
    target = installed or (ask_recommend("newest_known_release") if status == "not_installed" else None)
    if not isinstance(target, str) or not target:
        return
    # Each platform's own range (recipes/torch_releases.json platforms.<p>.python): torch 2.5.x
    # had Python 3.13 wheels on linux-x86_64 only, so the union of platforms is too generous.
    platform = get(snapshot, "python.platform_tag")
    rng = (ask_recommend("python_range", target, platform) if isinstance(platform, str) else None) \
        or ask_recommend("python_range", target)
    outside = _py_outside(py, rng)
    if outside is None:
        return
    lo, hi = outside
    ev = {"python": _mm(py), "torch": target, "supported": f"{_mm(lo)}..{_mm(hi)}",
          "platform": platform if isinstance(platform, str) else None}
    if installed:
        sev = Severity.WARN if status == "ok" else Severity.ERROR
        title = f"Python {_mm(py)} is outside the range torch {target} supports ({_mm(lo)}-{_mm(hi)})"
        detail = None
    else:
        sev = Severity.ERROR if py > hi else Severity.WARN
        title = (f"Python {_mm(py)} is newer than any torch release has wheels for (torch {target}: "
                 f"up to {_mm(hi)})" if py > hi else
                 f"Python {_mm(py)} is older than torch {target} supports ({_mm(lo)}-{_mm(hi)})")
        detail = ("`pip install torch` would fail with 'Could not find a version that satisfies the "
                  "requirement torch'" if py > hi else
                  "`pip install torch` would silently install the last old release that supports it")
    yield Finding(id="torch.python-unsupported", severity=sev, title=title, evidence=ev,
                  fix=install_fix(snapshot), detail=detail)


@rule
@emits("torch.newer-than-known")
def torch_newer_than_known(snapshot: dict):
    """A torch release newer than recipes/ knows: arch/driver/Python conclusions may be stale."""
    v = torch_version(snapshot)
    if not v:
        return
    newer = ask_recommend("is_newer_than_known", v)
    newest = ask_recommend("newest_known_release")
    if newer is None and isinstance(newest, str):
        try:
            newer = Version(_base_version(v)).release[:2] > Version(newest).release[:2]
        except InvalidVersion:
            return
    if newer is not True:
        return
    yield Finding(
        id="torch.newer-than-known", severity=Severity.INFO,
        title=f"torch {v} is newer than the releases this envcheck knows",
        evidence={"torch": v, "newest_known": newest},
        fix="upgrade envcheck (`pip install -U envcheck`) for up-to-date compatibility data",
    )


# ---------------------------------------------------------------------------------- runtime


def _cvd_hides_all(snapshot: dict) -> bool:
    value = get(snapshot, "env.vars.CUDA_VISIBLE_DEVICES")
    if not isinstance(value, str):
        return False
    parsed = parse_visible_devices(value, gpus(snapshot), nvidia_gpu_count(snapshot))
    return not parsed["visible"]


def _cause_found_elsewhere(snapshot: dict) -> bool:
    """Another rule names the root cause (one cause, one finding): no driver or a broken one
    (nvidia.*), a container without GPU access, a too-old driver, CUDA_VISIBLE_DEVICES hiding
    every GPU, nvidia_uvm missing, or the NVSwitch fabric (fabric.*, CUDA error 802)."""
    from envcheck.rules.fabric import explains_cuda_unavailable
    from envcheck.rules.host import nvidia_uvm_missing

    status = nvml_status(snapshot)
    if status is not None and status != "ok":
        return True
    return (container_hides_gpu(snapshot) or _cvd_hides_all(snapshot)
            or explains_cuda_unavailable(snapshot)  # NVSwitch fabric / CUDA error 802
            or any(True for _ in torch_driver_too_old(snapshot))
            or any(True for _ in nvidia_uvm_missing(snapshot)))


def _unavailable_fix(reason: str, snapshot: dict) -> str:
    r = reason.lower()
    if "too old" in r or "insufficient" in r:
        return install_fix(snapshot)
    if "found no nvidia driver" in r:
        return "install the NVIDIA driver (https://www.nvidia.com/Download/index.aspx) and reboot"
    if "unknown error" in r:  # its text also mentions CUDA_VISIBLE_DEVICES, so test it first
        return ("load the UVM module (`sudo modprobe nvidia-uvm`); after a suspend/resume or an "
                "Xid error, reboot (`sudo dmesg | grep -i xid` shows driver errors)")
    if "cuda_visible_devices" in r or "no cuda-capable device" in r:
        return "check CUDA_VISIBLE_DEVICES (`unset CUDA_VISIBLE_DEVICES` shows every GPU)"
    return "run `nvidia-smi`; if it works, `python -c 'import torch; torch.cuda.init()'` shows the full error"


@rule
@emits("torch.cuda-unavailable")
def torch_cuda_unavailable(snapshot: dict):
    """A CUDA build of torch on a machine with an NVIDIA GPU, yet torch.cuda.is_available() is
    False. torch swallows the driver error into a warning (c10/cuda/CUDAFunctions.cpp); that
    warning text is the evidence. Not raised when CUDA_VISIBLE_DEVICES hides every GPU on
    purpose (env.cuda-visible-devices-hides-gpus says so)."""
    if torch_build(snapshot) != "cuda" or get(snapshot, "torch.cuda_available") is not False:
        return
    if gpu_present(snapshot) is not True or _cause_found_elsewhere(snapshot):
        return
    reason = get(snapshot, "torch.cuda_unavailable_reason")
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    yield Finding(
        id="torch.cuda-unavailable", severity=Severity.ERROR,
        title="torch cannot use the GPU: torch.cuda.is_available() is False",
        evidence={"torch": get(snapshot, "torch.version"), "torch_cuda": get(snapshot, "torch.cuda"),
                  "torch_warning": reason, "driver": get(snapshot, "nvidia.driver_version")},
        fix=_unavailable_fix(reason or "", snapshot),
    )


@rule
@emits("torch.sees-fewer-gpus")
def torch_sees_fewer_gpus(snapshot: dict):
    """torch sees fewer GPUs than the driver lists while nothing restricts visibility: a GPU
    failed CUDA initialisation (often after an Xid error) or is held in a bad state."""
    if torch_build(snapshot) != "cuda" or get(snapshot, "torch.cuda_available") is not True:
        return
    torch_count = get(snapshot, "torch.device_count")
    nvml_count = allocated_gpu_count(snapshot)  # GPUs outside this job's allocation do not count
    env_vars = get(snapshot, "env.vars")
    if not isinstance(torch_count, int) or not nvml_count or not isinstance(env_vars, dict):
        return
    if "CUDA_VISIBLE_DEVICES" in env_vars:
        return
    if any(get(g, "mig_mode.current") is True for g in gpus(snapshot)):
        return  # with MIG, CUDA enumerates MIG instances, not GPUs
    if torch_count >= nvml_count:
        return
    yield Finding(
        id="torch.sees-fewer-gpus", severity=Severity.WARN,
        title=f"torch sees {torch_count} GPU(s) but the driver lists {nvml_count}",
        evidence={"torch_device_count": torch_count, "nvml_gpu_count": nvml_count},
        fix="`sudo dmesg | grep -i xid` for driver errors; reset or reboot to recover the missing GPU",
    )


# ---------------------------------------------------------------------------------- compile


def _dev_headers_cmd(snapshot: dict) -> str:
    distro = str(get(snapshot, "host.os.distro_id") or "").lower()
    py = major_minor(get(snapshot, "python.version"))
    pyv = f"python{_mm(py)}" if py else "python3"
    if distro in ("ubuntu", "debian", "linuxmint", "pop"):
        return f"sudo apt-get install -y build-essential {pyv}-dev"
    if distro in ("rhel", "centos", "rocky", "almalinux", "fedora", "amzn", "ol"):
        return f"sudo dnf install -y gcc gcc-c++ {pyv}-devel"
    if host_os(snapshot) == "macos":
        return "xcode-select --install"
    return f"install a C compiler (gcc) and the {pyv} development headers (Python.h)"


@rule
@emits("torch.compile-prereqs-missing")
def torch_compile_prereqs_missing(snapshot: dict):
    """torch.compile (Inductor) needs Triton for GPU kernels (Linux CUDA/ROCm builds), plus a C
    compiler and Python.h to build Triton's launcher and CPU kernels; without them eager mode
    works but the first compiled call fails (torch._inductor 'InvalidCxxCompiler' /
    triton 'Python.h: No such file or directory')."""
    system = host_os(snapshot)
    if not torch_ok(snapshot) or system not in ("linux", "macos", "windows"):
        return
    version = version_tuple(torch_version(snapshot))
    if version is not None and version[0] < 2:
        return  # torch.compile arrived in torch 2.0: nothing to prepare on 1.x
    comp = as_dict(get(snapshot, "torch.compile"))
    if not comp:
        return
    missing: list[str] = []
    fixes: list[str] = []
    ev: dict[str, Any] = {}
    if system != "windows":  # the probe looks for `cc`; Windows' compiler is MSVC's cl.exe
        if "cc" in comp and comp["cc"] is None:
            missing.append("C compiler")
        if "python_headers" in comp and comp["python_headers"] is None:
            missing.append("Python headers (Python.h)")
        if missing:
            fixes.append(_dev_headers_cmd(snapshot))
    triton = as_dict(comp.get("triton"))
    if system == "windows" and torch_build(snapshot) == "cuda" and triton.get("available") is False:
        # No official Triton for Windows: torch.compile on a CUDA tensor fails with "Cannot find
        # a working triton installation" (pytorch/pytorch#136361, #137689, #90768).
        missing.append("triton (no official Windows build)")
        if isinstance(triton.get("error"), str):
            ev["triton_error"] = triton["error"][:500]
        fixes.append("use WSL2 for torch.compile on the GPU, or the community Windows build of "
                      "Triton (package triton-windows, woct0rdho/triton-windows) at the version "
                      "its README pairs with your torch; without it keep torch.compile off")
    elif (system == "linux" and torch_build(snapshot) in ("cuda", "rocm")
            and triton.get("available") is False):
        missing.append("triton")
        if isinstance(triton.get("error"), str):
            ev["triton_error"] = triton["error"][:500]
        py = python_cmd(snapshot)
        fixes.append(f"`{py} -m pip check` names the triton version torch requires; install exactly "
                     f"that one (`{py} -m pip install triton==<version>`)")
    if not missing:
        return
    ev["missing"] = missing
    yield Finding(
        id="torch.compile-prereqs-missing", severity=Severity.WARN,
        title=f"torch.compile will fail: missing {', '.join(missing)}",
        evidence=ev, fix="; ".join(fixes),
    )


# ---------------------------------------------------------------------------------- NCCL, WSL

_NCCL = recipes.load("nccl")


@rule
@emits("torch.nccl-too-old-for-gpu")
def torch_nccl_too_old_for_gpu(snapshot: dict):
    """The NCCL inside this torch predates support for the GPU's architecture: collectives fail
    with "unhandled cuda error" (RTX 5090 / sm_120 with NCCL < 2.26.2: NVIDIA/nccl-tests#287,
    #291). Minimums in recipes/nccl.json. An error with several GPUs (DDP, FSDP, tensor
    parallel need NCCL), a warning with one."""
    if torch_build(snapshot) != "cuda":
        return
    nccl = get(snapshot, "torch.nccl")
    have = version_tuple(nccl) if isinstance(nccl, str) else None
    if have is None:
        return
    ccs = {g.get("compute_capability") for g in gpus(snapshot) if isinstance(g.get("compute_capability"), str)}
    for entry in _NCCL.get("arch_minimums", []):
        need = version_tuple(entry.get("nccl_min"))
        if entry.get("compute_capability") not in ccs or need is None or have >= need:
            continue
        count = sum(1 for g in gpus(snapshot) if g.get("compute_capability") == entry["compute_capability"])
        yield Finding(
            id="torch.nccl-too-old-for-gpu", severity=Severity.ERROR if count > 1 else Severity.WARN,
            title=f"torch's NCCL {nccl} is too old for sm_{entry['compute_capability'].replace('.', '')} "
                  f"GPUs (needs {entry['nccl_min']} or newer): {entry.get('symptom', 'collectives fail')}",
            evidence={"torch": get(snapshot, "torch.version"), "nccl": nccl,
                      "gpus": entry.get("gpus"), "source": entry.get("source")},
            fix=f"install a torch whose NCCL is {entry['nccl_min']} or newer ({install_fix(snapshot)}); "
                f"or upgrade the NCCL wheel it uses (`{python_cmd(snapshot)} -m pip install -U "
                "nvidia-nccl-cu12`, where torch depends on it)",
        )
        return


@rule
@emits("torch.wsl-libcuda-unversioned-missing")
def wsl_libcuda_unversioned_missing(snapshot: dict):
    """Under WSL2 the driver's libraries live in /usr/lib/wsl/lib and the loader cache usually
    holds only libcuda.so.1: whatever dlopens the unversioned libcuda.so fails ("libcuda.so
    cannot found" from Triton, so torch.compile on the GPU; microsoft/WSL#8587,
    NVIDIA/cuda-python#17, triton-lang/triton#2019). torch itself loads libcuda.so.1 and works."""
    if get(snapshot, "host.wsl") is not True or torch_build(snapshot) != "cuda":
        return
    cache = as_dict(get(snapshot, "host.ld_cache_libcuda"))
    if cache.get("unversioned") is not False:
        return
    ld = get(snapshot, "env.vars.LD_LIBRARY_PATH")
    if isinstance(ld, str) and any(p.rstrip("/") == "/usr/lib/wsl/lib" for p in ld.split(":")):
        return  # the usual workaround is in place
    yield Finding(
        id="torch.wsl-libcuda-unversioned-missing", severity=Severity.WARN,
        title="WSL2: the loader cache has no unversioned libcuda.so, so Triton / torch.compile "
              "on the GPU cannot find the CUDA driver",
        evidence={"ld_cache": cache, "LD_LIBRARY_PATH": ld},
        fix="`export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH` (in ~/.bashrc); or "
            "`sudo ldconfig` once the driver update has recreated /usr/lib/wsl/lib/libcuda.so",
    )
