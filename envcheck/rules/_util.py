"""Small pure helpers shared by the rules: safe access to snapshot values, version parsing,
CUDA_VISIBLE_DEVICES parsing, and how CUDA decides whether a build's code runs on a GPU.

Every helper treats a missing key, a wrong type and an ``na()`` marker as "unknown" (None or
an empty list), so a rule built on them never raises and never concludes from a missing fact.
"""

from __future__ import annotations

import re
from typing import Any

from envcheck import recommend
from envcheck.snapshot import get, is_na

GiB = 1024**3
MiB = 1024**2

# Fallback fix when the install engine cannot recommend a command for this machine.
INSTALL_FALLBACK = "run `envcheck install` for the exact torch install command that fits this machine"


# ---------------------------------------------------------------------------- safe access


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) and not is_na(value) else {}


def dicts(value: Any) -> list[dict]:
    """The object items of a list (na() markers and malformed items are skipped)."""
    return [v for v in as_list(value) if isinstance(v, dict) and not is_na(v)]


def num(value: Any) -> float | None:
    """A real number, or None (bools, strings and na() are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def flag(value: Any) -> bool | None:
    """True/False only when the snapshot says so explicitly; None when unknown."""
    return value if isinstance(value, bool) else None


def gpus(snapshot: dict) -> list[dict]:
    """The NVML GPU entries that are objects (a malformed entry is skipped, not fatal)."""
    return dicts(get(snapshot, "nvidia.gpus", []))


def gpu_label(gpu: dict) -> str:
    idx = gpu.get("index")
    name = gpu.get("name") if isinstance(gpu.get("name"), str) else None
    if not isinstance(idx, int):
        return name or "GPU ?"
    return f"GPU {idx} ({name})" if name else f"GPU {idx}"


def gpu_key(gpu: dict) -> str:
    """Short evidence key for a per-GPU fact: 'gpu3' (the NVML index)."""
    idx = gpu.get("index")
    return f"gpu{idx}" if isinstance(idx, int) else "gpu?"


def version_tuple(text: Any) -> tuple[int, ...] | None:
    """``"550.90.07"`` -> (550, 90, 7); ``"2.7.1+cu126"`` -> (2, 7, 1); None when unparseable."""
    if not isinstance(text, str):
        return None
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def major_minor(text: Any) -> tuple[int, int] | None:
    v = version_tuple(text)
    if v is None:
        return None
    return (v[0], v[1] if len(v) > 1 else 0)


def fmt_bytes(n: Any) -> str:
    """Binary units, one decimal: 85520809984 -> '79.6 GiB'."""
    v = num(n)
    if v is None:
        return "?"
    for unit, size in (("TiB", 1024**4), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(v) >= size:
            return f"{v / size:.1f} {unit}"
    return f"{int(v)} B"


# ---------------------------------------------------------------------------- machine facts


def host_os(snapshot: dict) -> str | None:
    """'linux' | 'windows' | 'macos' | None. WSL counts as 'windows' for driver questions
    only (see :func:`driver_os`); here it is 'linux' (the Python userland)."""
    system = get(snapshot, "host.os.system")
    platform = get(snapshot, "host.platform") or get(snapshot, "python.platform_tag")
    text = f"{system or ''} {platform or ''}".lower()
    if "linux" in text:
        return "linux"
    if "windows" in text:
        return "windows"
    if "darwin" in text or "macos" in text:
        return "macos"
    return None


def driver_os(snapshot: dict) -> str:
    """Which driver family the minimum-driver tables apply to. Under WSL the driver is the
    Windows host's (NVIDIA CUDA on WSL user guide: do not install a Linux driver in WSL),
    and NVML reports that Windows driver's version."""
    if get(snapshot, "host.wsl") is True or host_os(snapshot) == "windows":
        return "windows"
    return "linux"


def in_container(snapshot: dict) -> bool:
    return bool(get(snapshot, "host.container.kind"))


def pci_nvidia_gpus(snapshot: dict) -> list[dict] | None:
    """NVIDIA display-class PCI functions (class 0x03xxxx), or None when not probed.

    Consumer boards also expose an HDMI audio function (class 0x0403) and sometimes a USB-C
    controller (0x0c03) with NVIDIA's vendor id; those are not GPUs.
    """
    devices = get(snapshot, "host.pci_nvidia_devices")
    if not isinstance(devices, list):
        return None
    out = []
    for d in dicts(devices):
        cls = d.get("class")
        if isinstance(cls, str) and not cls.lower().startswith("0x03"):
            continue
        out.append(d)
    return out


def nvml_status(snapshot: dict) -> str | None:
    return get(snapshot, "nvidia.nvml.status")


def nvidia_gpu_count(snapshot: dict) -> int | None:
    """GPUs the driver reports (NVML), or None when NVML did not answer."""
    count = num(get(snapshot, "nvidia.gpu_count"))
    if count is not None:
        return int(count)
    if nvml_status(snapshot) == "ok":
        return len(gpus(snapshot))
    return None


def allocated_gpu_count(snapshot: dict) -> int | None:
    """GPUs this process may use: the NVML count less those refused as not allocated to this
    job (Slurm/cgroup device constraint: NO_PERMISSION on the handle)."""
    count = nvidia_gpu_count(snapshot)
    if count is None:
        return None
    refused = sum(1 for g in gpus(snapshot)
                  if as_dict(g.get("error")).get("class") == "not_allocated")
    return count - refused


def gpu_present(snapshot: dict) -> bool | None:
    """Is there an NVIDIA GPU in this machine? True / False / None (cannot tell)."""
    count = nvidia_gpu_count(snapshot)
    if count:
        return True
    pci = pci_nvidia_gpus(snapshot)
    if pci:
        return True
    if count == 0:
        return False
    no_driver = nvml_status(snapshot) in ("library_not_found", "driver_not_loaded")
    if no_driver and (pci is not None or host_os(snapshot) == "macos"):
        return False  # macOS has had no NVIDIA driver since CUDA 10.2 (High Sierra)
    return None


# ---------------------------------------------------------------------------- torch facts


def torch_status(snapshot: dict) -> str | None:
    return get(snapshot, "torch.status")


def torch_ok(snapshot: dict) -> bool:
    return torch_status(snapshot) == "ok"


def torch_build(snapshot: dict) -> str | None:
    """'cuda' | 'rocm' | 'cpu' for an importable torch, None when unknown."""
    if not torch_ok(snapshot):
        return None
    torch = as_dict(snapshot.get("torch"))
    if not torch:
        return None
    cuda, hip = torch.get("cuda"), torch.get("hip")
    if is_na(cuda) or is_na(hip):
        return None
    if isinstance(cuda, str) and cuda:
        return "cuda"
    if isinstance(hip, str) and hip:
        return "rocm"
    if cuda is None and "cuda" in torch and "hip" in torch:
        return "cpu"
    return None


def torch_version(snapshot: dict) -> str | None:
    """The torch version: from the import when it worked, else from installed metadata."""
    v = get(snapshot, "torch.version")
    if isinstance(v, str) and v:
        return v
    # distributions are in sys.path order: the first one is what `import torch` picks.
    dists = dicts(get(snapshot, "torch.distributions", []))
    first = dists[0].get("version") if dists else None
    return first if isinstance(first, str) and first else None


def python_cmd(snapshot: dict) -> str:
    exe = get(snapshot, "python.executable")
    return exe if isinstance(exe, str) and exe else "python"


def ask_recommend(name: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``envcheck.recommend.<name>``; None when it is absent or fails (missing or
    unreadable recipes): a rule then draws no conclusion instead of crashing."""
    fn = getattr(recommend, name, None)
    if not callable(fn):
        return None
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - no data, no conclusion
        return None


def install_fix(snapshot: dict) -> str:
    """The install engine's fix for this machine, so doctor and install never disagree."""
    try:
        fix = recommend.install_fix(snapshot)
    except Exception:  # noqa: BLE001 - the engine failing must not hide the finding
        fix = None
    return fix if isinstance(fix, str) and fix.strip() else INSTALL_FALLBACK


# ---------------------------------------------------------------------------- CUDA arch support


def parse_arch(entry: Any) -> tuple[str, int, str] | None:
    """``"sm_86"`` -> ("sm", 86, ""), ``"sm_90a"`` -> ("sm", 90, "a"), ``"compute_120"`` ->
    ("compute", 120, ""); None for anything else."""
    if not isinstance(entry, str):
        return None
    m = re.fullmatch(r"\s*(sm|compute)_(\d+)([af]?)\s*", entry)
    if not m:
        return None
    return m.group(1), int(m.group(2)), m.group(3)


def parse_cc(cc: Any) -> int | None:
    """``"8.6"`` or ``[8, 6]`` -> 86."""
    if isinstance(cc, str):
        m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", cc)
        return int(m.group(1)) * 10 + int(m.group(2)) if m else None
    if isinstance(cc, (list, tuple)) and len(cc) == 2 and all(num(x) is not None for x in cc):
        return int(cc[0]) * 10 + int(cc[1])
    return None


def arch_support(arch_list: Any, cc: Any) -> str | None:
    """How a build with ``arch_list`` (torch.cuda.get_arch_list()) runs on a GPU of capability ``cc``.

    'cubin' when it has machine code the GPU runs, 'ptx' when only PTX can be JIT-compiled
    for it, None when neither (the "no kernel image is available" case), 'unknown' when the
    inputs (or the recipes) do not allow a conclusion. The compatibility rule itself (a cubin
    for X.y runs on X.z with z >= y; integrated GPUs apart; sm_90a only on 9.0; PTX on any
    capability >= its own) is the install engine's, read from recipes/cuda.json
    ``cubin_compatibility`` (envcheck.recommend.data), so doctor and install agree.
    """
    from envcheck.recommend import data

    device = parse_cc(cc)
    texts = as_list(arch_list)
    if device is None or not texts:
        return "unknown"
    dev = (device // 10, device % 10)
    try:
        parsed = [data.Arch.parse(t) if isinstance(t, str) else None for t in texts]
        entries = [a for a in parsed if a is not None]
        if not entries:
            return "unknown"
        if any(data.cubin_runs_on(a, dev) for a in entries):
            return "cubin"
        if len(entries) < len(parsed):
            return "unknown"  # an entry we cannot read might be the one that matches
        if any(data.ptx_runs_on(a, dev) for a in entries):
            return "ptx"
    except Exception:  # noqa: BLE001 - recipes missing or malformed: no conclusion
        return "unknown"
    return None


def fmt_cc(code: int) -> str:
    return f"{code // 10}.{code % 10}"


# ---------------------------------------------------------------------------- LD_LIBRARY_PATH

# A directory on LD_LIBRARY_PATH that holds a CUDA toolkit's or cuDNN's libraries. The dynamic
# loader searches LD_LIBRARY_PATH before the RPATH the wheels use ($ORIGIN/../../nvidia/<lib>/lib),
# so a system libcublas/libnvJitLink/libcudnn of another version gets loaded instead of the
# wheel's own copy: "undefined symbol: __nvJitLinkAddData_12_1" and similar at import, or
# subtle version mismatches (pytorch/pytorch#111469, #131312, #134929, #152783). The CUDA
# forward-compatibility directory (.../cuda/compat) holds libcuda on purpose and is left alone.
_CUDA_LIB_DIR = re.compile(
    r"(^|/)(cuda|cuda-\d+(\.\d+)?|cudatoolkit[^/]*|cudnn[^/]*|nvhpc[^/]*)(/.*)?/(lib|lib64)/?$"
    r"|/targets/[^/]+-linux/lib/?$"
    r"|/site-packages/nvidia/[^/]+/lib/?$",
    re.IGNORECASE,
)


_WHEEL_LIB_DIR = re.compile(r"^(?P<site>.*/site-packages)/nvidia/[^/]+/lib/?$")


def cuda_lib_dirs(ld_library_path: str, torch_site: str | None = None) -> tuple[list[str], str]:
    """(the CUDA library directories in LD_LIBRARY_PATH, the shell command that removes them).

    A ``site-packages/nvidia/<lib>/lib`` directory holds the very nvidia-* wheels torch's RPATH
    points at: putting it on LD_LIBRARY_PATH is the widely posted workaround for pip cuDNN
    wheels that are not found (pytorch/pytorch#101314; paninski-lab/lightning-pose#460), not a
    shadowing. It counts only when it belongs to *another* environment than torch's
    (``torch_site``: the site-packages torch is installed in, when known)."""
    entries = ld_library_path.split(":")

    def shadows(entry: str) -> bool:
        entry = entry.rstrip("/")
        if not entry or "/compat" in entry or not _CUDA_LIB_DIR.search(entry):
            return False
        wheel = _WHEEL_LIB_DIR.match(entry)
        if wheel:
            return bool(torch_site) and wheel.group("site").rstrip("/") != torch_site.rstrip("/")
        return True

    hits = [e for e in entries if shadows(e)]
    kept = [e for e in entries if e and e not in hits]
    return hits, (f"export LD_LIBRARY_PATH={':'.join(kept)}" if kept else "unset LD_LIBRARY_PATH")


def torch_site_packages(snapshot: dict) -> str | None:
    """The site-packages directory the imported torch lives in (its distribution's location)."""
    for d in dicts(get(snapshot, "torch.distributions")):
        if d.get("name") == "torch" and isinstance(d.get("location"), str):
            return d["location"]
    return None


# ---------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES

# Values that deliberately hide every GPU: "-1" and "none" are the common idioms; Slurm's
# gres plugin historically exported "NoDevFiles" when a job had no GPU allocated.
_HIDE_ALL = {"-1", "none", "nodevfiles", "void"}


def parse_visible_devices(value: str, gpu_list: list[dict], count: int | None) -> dict:
    """What CUDA makes of CUDA_VISIBLE_DEVICES on this machine.

    CUDA reads the list left to right and stops at the first invalid entry: only the devices
    before it are visible (CUDA C++ Programming Guide, "CUDA Environment Variables"; e.g.
    "0,2,-1,1" shows devices 0 and 2). Entries are indexes or (prefixes of) GPU-/MIG- UUIDs.

    Returns {"visible": [indexes or uuids], "invalid": entry or None, "reason": str or None,
    "ignored": [entries after the invalid one], "hides_all_idiom": bool}.
    """
    raw = value.strip()
    result: dict[str, Any] = {"visible": [], "invalid": None, "reason": None, "ignored": [],
                              "hides_all_idiom": raw.lower() in _HIDE_ALL}
    if raw == "" or result["hides_all_idiom"]:
        return result
    tokens = [t.strip() for t in raw.split(",")]
    uuids = [g.get("uuid") for g in gpu_list if isinstance(g.get("uuid"), str)]
    for pos, tok in enumerate(tokens):
        reason = None
        if tok == "":
            reason = "empty entry"
        elif re.fullmatch(r"-?\d+", tok):
            idx = int(tok)
            if idx < 0:
                reason = "negative index (deliberately ends the list)"
            elif count is not None and idx >= count:
                reason = f"index {idx} but this machine has {count} GPU(s) (0..{count - 1})"
            else:
                result["visible"].append(idx)
        elif tok.upper().startswith(("GPU-", "MIG-")):
            if tok.upper().startswith("MIG-"):
                result["visible"].append(tok)  # MIG instance UUIDs are not in the NVML GPU list
            elif uuids and not any(u.lower().startswith(tok.lower()) for u in uuids):
                reason = "matches no GPU UUID on this machine"
            else:
                result["visible"].append(tok)
        else:
            reason = "neither a GPU index nor a GPU-/MIG- UUID"
        if reason is not None:
            result["invalid"], result["reason"] = tok, reason
            result["ignored"] = tokens[pos + 1:]
            break
    return result


def container_hides_gpu(snapshot: dict) -> bool:
    """Inside a container started without GPU access (no `--gpus`/CDI/device plugin): the host
    has an NVIDIA GPU and driver (its PCI device and kernel module are visible through
    /sys and /proc/modules, which containers share), but NVML and /dev/nvidia* are absent."""
    if not in_container(snapshot):
        return False
    if nvml_status(snapshot) not in ("library_not_found", "driver_not_loaded"):
        return False
    return bool(pci_nvidia_gpus(snapshot)) or get(snapshot, "host.kernel_modules.nvidia") is True


def emits(*ids: str):
    """Declare the finding ids a rule can produce (``fn.finding_ids``). The tests use it to
    prove every id is triggered by a fixture and that no rule emits an undeclared id."""

    def mark(fn):
        fn.finding_ids = tuple(ids)
        return fn

    return mark
