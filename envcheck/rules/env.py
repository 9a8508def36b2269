"""Rules about environment variables (only the allowlisted ones the env probe recorded)."""

from __future__ import annotations

from typing import Any

from envcheck import recipes
from envcheck.findings import Finding, Severity
from envcheck.rules import rule
from envcheck.rules._util import (
    allocated_gpu_count,
    cuda_lib_dirs,
    emits,
    gpu_present,
    gpus,
    host_os,
    nvidia_gpu_count,
    parse_visible_devices,
    torch_build,
    torch_site_packages,
    version_tuple,
)
from envcheck.snapshot import get


def _var(snapshot: dict, name: str) -> str | None:
    value = get(snapshot, f"env.vars.{name}")
    return value if isinstance(value, str) else None


def _cvd(snapshot: dict) -> tuple[str, dict] | None:
    value = _var(snapshot, "CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return value, parse_visible_devices(value, gpus(snapshot), nvidia_gpu_count(snapshot))


@rule
@emits("env.cuda-visible-devices-hides-gpus")
def cuda_visible_devices_hides_gpus(snapshot: dict):
    """CUDA_VISIBLE_DEVICES decides which GPUs CUDA enumerates (CUDA C++ Programming Guide,
    "CUDA Environment Variables"). Empty, "-1" or "none" hides every GPU: torch then reports
    cuda.is_available() False on a healthy machine. A subset is normal under a scheduler (info)."""
    parsed = _cvd(snapshot)
    if parsed is None or gpu_present(snapshot) is not True:
        return
    value, p = parsed
    count = allocated_gpu_count(snapshot)  # GPUs outside the job's cgroup are not CVD's doing
    visible = p["visible"]
    ev: dict[str, Any] = {"CUDA_VISIBLE_DEVICES": value, "gpu_count": count, "visible": visible}
    if not visible:
        yield Finding(
            id="env.cuda-visible-devices-hides-gpus", severity=Severity.WARN,
            title=f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU from CUDA and torch",
            evidence=ev,
            fix="`unset CUDA_VISIBLE_DEVICES` (or list the GPUs to use, e.g. `export CUDA_VISIBLE_DEVICES=0`)",
        )
    elif count and len(set(map(str, visible))) < count:
        yield Finding(
            id="env.cuda-visible-devices-hides-gpus", severity=Severity.INFO,
            title=f"CUDA_VISIBLE_DEVICES={value!r} shows {len(visible)} of {count} GPUs",
            evidence=ev,
            fix="nothing to do if a scheduler set it; `unset CUDA_VISIBLE_DEVICES` shows every GPU",
        )


@rule
@emits("env.cuda-visible-devices-malformed")
def cuda_visible_devices_malformed(snapshot: dict):
    """CUDA stops reading CUDA_VISIBLE_DEVICES at the first invalid entry and hides every device
    after it (CUDA C++ Programming Guide, "CUDA Environment Variables": "0,2,-1,1" shows 0 and 2).
    An empty entry, a typo, an index beyond the GPU count or a UUID of another machine's GPU
    therefore silently drops GPUs."""
    parsed = _cvd(snapshot)
    if parsed is None:
        return
    value, p = parsed
    if p["invalid"] is None:
        return
    if p["invalid"].startswith("-") and not p["ignored"]:
        return  # "0,1,-1": a deliberate terminator with nothing after it
    yield Finding(
        id="env.cuda-visible-devices-malformed", severity=Severity.WARN,
        title=f"CUDA_VISIBLE_DEVICES={value!r} has an invalid entry {p['invalid']!r}",
        evidence={"CUDA_VISIBLE_DEVICES": value, "invalid_entry": p["invalid"], "why": p["reason"],
                  "visible": p["visible"], "ignored_after_it": p["ignored"],
                  "gpu_count": nvidia_gpu_count(snapshot)},
        fix="use comma-separated GPU indexes or full UUIDs from `nvidia-smi -L`, e.g. "
            "`export CUDA_VISIBLE_DEVICES=0,1`",
        detail="CUDA ignores the invalid entry and every entry after it",
    )


@rule
@emits("env.ld-library-path-shadows-cuda")
def ld_library_path_shadows_cuda(snapshot: dict):
    """LD_LIBRARY_PATH holds a CUDA library directory that can shadow the torch wheel's bundled
    nvidia-* libraries (pytorch/pytorch#111469, #131312, #134929, #152783; see
    _util._CUDA_LIB_DIR). Linux only; irrelevant to CPU-only torch builds."""
    value = _var(snapshot, "LD_LIBRARY_PATH")
    if not value or host_os(snapshot) not in ("linux", None):
        return
    if torch_build(snapshot) in ("cpu", "rocm"):
        return
    version = get(snapshot, "torch.version")
    local = version.split("+", 1)[1] if isinstance(version, str) and "+" in version else ""
    if local and not local.startswith("cu"):
        return  # a source/vendor build (e.g. NGC "+nv24.10") links the system CUDA on purpose
    hits, fix = cuda_lib_dirs(value, torch_site_packages(snapshot))
    if not hits:
        return
    import_failed = get(snapshot, "torch.status") == "import_error"
    yield Finding(
        id="env.ld-library-path-shadows-cuda",
        severity=Severity.ERROR if import_failed else Severity.WARN,
        title="LD_LIBRARY_PATH puts a system CUDA library directory before the torch wheel's own CUDA libraries",
        evidence={"LD_LIBRARY_PATH": value, "cuda_dirs": hits},
        fix=f"`{fix}` (in the shell profile or job script that sets it); pip-installed torch brings "
            "its own CUDA libraries",
        detail="the loader prefers LD_LIBRARY_PATH over the wheel's RPATH, so another CUDA version's "
               "libcublas/libnvJitLink/libcudnn gets loaded (pytorch/pytorch#111469)",
    )


# Debug switches that make every run slow when left on. Sources: CUDA_LAUNCH_BLOCKING makes every
# kernel launch synchronous (CUDA C++ Programming Guide, "CUDA Environment Variables");
# PYTORCH_NO_CUDA_MEMORY_CACHING disables the caching allocator (PyTorch docs, "CUDA semantics:
# memory management", meant for debugging); NCCL_DEBUG=TRACE logs every call (NCCL docs,
# "Environment Variables": TRACE "replayable trace information on every call").
_DEBUG_SWITCHES = {
    "CUDA_LAUNCH_BLOCKING": ("1", "every CUDA kernel launch waits for the kernel to finish"),
    "PYTORCH_NO_CUDA_MEMORY_CACHING": ("1", "torch's CUDA caching allocator is off (a cudaMalloc per tensor)"),
    "NCCL_DEBUG": ("TRACE", "NCCL writes a trace line for every collective"),
}


@rule
@emits("env.debug-setting-left-on")
def debug_setting_left_on(snapshot: dict):
    """Debugging environment variables that cost performance on every run."""
    found = {}
    for name, (bad, why) in _DEBUG_SWITCHES.items():
        value = _var(snapshot, name)
        if value is not None and value.strip().upper() == bad:
            found[name] = (value, why)
    if not found:
        return
    yield Finding(
        id="env.debug-setting-left-on", severity=Severity.WARN,
        title=f"debug setting(s) left on: {', '.join(found)}",
        evidence={name: f"{v} ({why})" for name, (v, why) in found.items()},
        fix="`unset " + " ".join(found) + "` unless you are debugging right now",
    )


@rule
@emits("env.nccl-transport-disabled")
def nccl_transport_disabled(snapshot: dict):
    """NCCL_P2P_DISABLE=1 forces GPU-to-GPU traffic through host memory instead of NVLink/PCIe P2P;
    NCCL_IB_DISABLE=1 forces inter-node traffic onto TCP sockets (NCCL docs, "Environment
    Variables"). Often left behind from a debugging session, they cut collective bandwidth."""
    off = {n: _var(snapshot, n) for n in ("NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_SHM_DISABLE")}
    off = {n: v for n, v in off.items() if v is not None and v.strip() == "1"}
    if not off:
        return
    if "NCCL_P2P_DISABLE" in off and not ((nvidia_gpu_count(snapshot) or 0) > 1):
        off.pop("NCCL_P2P_DISABLE")  # P2P only matters with two or more GPUs
    if not off:
        return
    yield Finding(
        id="env.nccl-transport-disabled", severity=Severity.INFO,
        title=f"NCCL transports disabled by {', '.join(off)}",
        evidence={**off, "gpu_count": nvidia_gpu_count(snapshot)},
        fix="`unset " + " ".join(off) + "` unless a known hardware problem needs it",
    )


_SHADOWING = recipes.load("cwd_shadowing")


@rule
@emits("env.cwd-shadows-module")
def cwd_shadows_module(snapshot: dict):
    """``python -c``, ``python -m`` and the interactive interpreter put the working directory
    first on sys.path (Python docs, "sys.path"), so a ``torch/`` package or a ``json.py`` there is
    imported instead of the installed torch or the standard library's module: "import torch"
    fails or gets the wrong code for every ``python`` the user starts here (issue 10, class 1).
    Python >= 3.11 leaves the cwd off with ``-P`` or PYTHONSAFEPATH (recipes/cwd_shadowing.json).
    doctor's own probe drops the cwd (envcheck/proc.py), so torch.* still judge the real torch."""
    found = get(snapshot, "host.cwd_shadowing")
    if not isinstance(found, list):
        return
    python = get(snapshot, "python.version")
    version = version_tuple(python)
    safe_from = version_tuple(_SHADOWING["path_rule"]["safe_path_from"])
    if _var(snapshot, "PYTHONSAFEPATH") and version is not None and version >= safe_from:
        return  # the user's python already leaves the cwd off sys.path
    known = {m["name"]: m for m in _SHADOWING["modules"]}
    if version is not None and version < safe_from:
        fix = (f"rename it or run from another directory (`python -P` / PYTHONSAFEPATH=1 need Python "
               f"\u2265 {_SHADOWING['path_rule']['safe_path_from']}; this is {python})")
    else:
        fix = "rename it, run from another directory, or use `python -P` / PYTHONSAFEPATH=1 (Python \u2265 3.11)"
    installed = bool(get(snapshot, "torch.distributions")) or get(snapshot, "torch.status") == "ok"
    for entry in found:
        name, path = (entry.get("module"), entry.get("path")) if isinstance(entry, dict) else (None, None)
        if name not in known or not isinstance(path, str):
            continue
        info = known[name]
        what = ("the installed torch" if name == "torch" and installed
                else f"the standard library's {name}" if info["kind"] == "stdlib" else name)
        yield Finding(
            id="env.cwd-shadows-module", severity=Severity.WARN,
            title=f"`{path}` in the working directory shadows {what} for `python` started here",
            evidence={"path": path, "module": name, "kind": entry.get("kind"), "role": info["why"],
                      "python": python},
            fix=fix,
            detail="`python -c`, `python -m` and the interactive interpreter put the working directory first "
                   "on sys.path (docs.python.org/3/library/sys.html#sys.path); doctor's own probe does not, "
                   "so the torch reported here is the installed one",
        )
