"""recipes/ data for the install engine, read once into small typed records (pure, cached).

Files: recipes/torch_releases.json (releases, wheels per platform, variants and their compiled
architectures, companions), recipes/cuda.json (driver minimums, which cubin runs on which GPU),
recipes/gpus.json (GPU names -> compute capability), recipes/driver_branches.json (least driver per
GPU generation). recipes/README.md describes them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from envcheck import recipes

PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"


@dataclass(frozen=True)
class Arch:
    """One entry of a build's arch list: ``sm_86`` (cubin) or ``compute_120`` (PTX)."""

    kind: str  # "sm" | "compute"
    cc: tuple[int, int]
    suffix: str = ""  # "a" (arch-specific) | "f" (family) | ""

    @classmethod
    def parse(cls, text: str) -> Arch | None:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)([af]?)", text.strip())
        if not m:
            return None
        return cls(m.group(1), (int(m.group(2)), int(m.group(3))), m.group(4))

    def __str__(self) -> str:
        return f"{self.kind}_{self.cc[0]}{self.cc[1]}{self.suffix}"


@dataclass(frozen=True)
class Build:
    """An installable torch build: one variant of one release for one platform."""

    release: str
    platform: str
    variant: str  # "cu128" | "cpu" | "rocm6.4" | "xpu"
    kind: str  # "cuda" | "cpu" | "rocm" | "xpu"
    cuda: str | None
    rocm: str | None
    arch: tuple[Arch, ...] | None  # None: not known (unverified and no source)
    gfx: tuple[str, ...] | None
    index_url: str | None  # None: plain PyPI
    verified: bool
    glibc: str | None = None  # Linux: least glibc its wheels need
    cudnn: str | None = None  # cuDNN major it bundles ("9"), CUDA builds only
    # this index's own companion pins, when they differ from PyPI's (not part of the identity)
    companions: dict | None = field(default=None, hash=False, compare=False)

    @property
    def cuda_version(self) -> tuple[int, int] | None:
        if not self.cuda:
            return None
        major, minor = self.cuda.split(".")[:2]
        return int(major), int(minor)


@dataclass(frozen=True)
class PlatformWheels:
    python: tuple[str, ...]
    free_threaded: tuple[str, ...]
    glibc: str | None
    glibc_note: str | None
    macos: str | None = None  # least macOS version its wheels install on (from the wheel tags)


@dataclass(frozen=True)
class Release:
    version: Version
    text: str
    requires_python: str | None
    platforms: dict  # platform -> PlatformWheels
    builds: dict  # platform -> tuple[Build, ...]  (PyPI's build first)
    companions: dict  # "torchvision" -> "0.26.0" | None
    companions_how: dict  # "torchvision" -> how the pairing is known (METADATA pin or requirement)
    companions_python: dict = None  # "torchvision" -> its Requires-Python ("" when none declared)


def _arch_list(items) -> tuple[Arch, ...] | None:
    if items is None:
        return None
    out = [Arch.parse(a) for a in items]
    return tuple(a for a in out if a is not None)


def _kind(variant: str) -> str:
    if variant.startswith("cu"):
        return "cuda"
    if variant.startswith("rocm"):
        return "rocm"
    return variant  # cpu, xpu


def macos_floor(tags) -> str | None:
    """Least macOS a set of wheel tags installs on: ``macosx_14_0_arm64`` -> "14.0" (PEP 425
    platform tags; pip on macOS 13 skips a macosx_14_0 wheel)."""
    found = []
    for tag in tags or ():
        m = re.fullmatch(r"macosx_(\d+)_(\d+)_\w+", str(tag))
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
    return "{}.{}".format(*min(found)) if found else None


def _cudnn_of(release: str, deps: dict | None) -> str | None:
    """cuDNN major of a CUDA build: the PyPI wheel's nvidia-cudnn pin, else recipes/cuda.json's
    per-release rule (RELEASE.md's compatibility matrix)."""
    for name, ver in (deps or {}).items():
        if name.startswith("nvidia-cudnn") and ver:
            return str(ver).split(".")[0]
    from packaging.specifiers import SpecifierSet

    for row in cuda_recipe().get("cudnn", {}).get("bundled_by_torch", []):
        if SpecifierSet(row["torch"]).contains(Version(release)):
            return row["cudnn"]
    return None


def cudnn_floor(major: str | None) -> tuple[int, int] | None:
    """Least compute capability a cuDNN major supports (recipes/cuda.json cudnn.cc_floor)."""
    row = cuda_recipe().get("cudnn", {}).get("cc_floor", {}).get(str(major)) if major else None
    return tuple(int(x) for x in row["cc_min"].split(".")) if row else None


def _cuda_of(variant: str, declared: str | None) -> str | None:
    if declared:
        return declared
    m = re.fullmatch(r"cu(\d+)(\d)", variant)
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


def _release(text: str, data: dict) -> Release:
    platforms: dict = {}
    builds: dict = {}
    for plat, p in data.get("platforms", {}).items():
        platforms[plat] = PlatformWheels(
            python=tuple(p.get("python", [])),
            free_threaded=tuple(p.get("free_threaded", [])),
            glibc=p.get("glibc"),
            glibc_note=p.get("glibc_note"),
            macos=macos_floor(p.get("wheel_tags")) if plat.startswith("macos") else None,
        )
        plist: list[Build] = []
        pypi = p.get("pypi_build")
        pypi_variant = pypi.get("variant") if isinstance(pypi, dict) else None
        if pypi_variant:
            plist.append(Build(
                release=text, platform=plat, variant=pypi_variant, kind=_kind(pypi_variant),
                cuda=_cuda_of(pypi_variant, pypi.get("cuda")), rocm=None,
                arch=_arch_list(pypi.get("arch_list", [])), gfx=None, index_url=None,
                verified=not str(pypi.get("verified", data.get("verified", ""))).startswith("unverified"),
                glibc=p.get("glibc"),
                cudnn=_cudnn_of(text, pypi.get("cuda_deps")) if _kind(pypi_variant) == "cuda" else None,
            ))
        for variant, v in data.get("variants", {}).items():
            vp = v.get("platforms", {}).get(plat)
            if vp is None or variant == pypi_variant:
                continue
            kind = v.get("kind") or _kind(variant)
            plist.append(Build(
                release=text, platform=plat, variant=variant, kind=kind,
                cuda=_cuda_of(variant, v.get("cuda")) if kind == "cuda" else None,
                rocm=v.get("rocm"),
                arch=_arch_list(vp.get("arch_list")) if kind == "cuda" else None,
                gfx=tuple(vp["arch_list"]) if kind == "rocm" and vp.get("arch_list") else None,
                index_url=PYTORCH_INDEX.format(variant=variant),
                verified=not str(v.get("verified", "")).startswith("unverified"),
                glibc=vp.get("glibc", p.get("glibc")),
                cudnn=_cudnn_of(text, None) if kind == "cuda" else None,
                companions={k: x for k, x in v["companions"].items() if k in ("torchvision", "torchaudio")}
                if isinstance(v.get("companions"), dict) else None,
            ))
        builds[plat] = tuple(plist)
    comp = data.get("companions", {})
    return Release(
        version=Version(text), text=text, requires_python=data.get("requires_python"),
        platforms=platforms, builds=builds,
        companions={k: comp.get(k) for k in ("torchvision", "torchaudio")},
        companions_how=dict(comp.get("how", {})),
        companions_python=dict(comp.get("requires_python", {})),
    )


@functools.lru_cache(maxsize=1)
def releases() -> tuple[Release, ...]:
    """Every torch release recipes know, newest first."""
    data = recipes.load("torch_releases")["releases"]
    return tuple(sorted((_release(k, v) for k, v in data.items()), key=lambda r: r.version,
                        reverse=True))


def release(text: str) -> Release | None:
    """The release with this version (local label like ``+cu126`` ignored)."""
    try:
        want = Version(text.split("+")[0])
    except (InvalidVersion, AttributeError):
        return None
    for r in releases():
        if r.version == want:
            return r
    return None


# ------------------------------------------------------------------------------------- CUDA


def cuda_recipe() -> dict:
    return recipes.load("cuda")


def driver_minimum(cuda: str, os: str = "linux") -> str | None:
    """Least driver that runs a build for CUDA ``cuda`` (minor-version compatibility)."""
    major = str(cuda).split(".")[0].strip()
    entry = cuda_recipe()["minor_version_compatibility"]["majors"].get(major)
    if not entry:
        return None
    return entry.get("windows" if os == "windows" else "linux")


def driver_tuple(text: str | None) -> tuple[int, ...] | None:
    if not isinstance(text, str):
        return None
    m = re.match(r"\s*(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def driver_at_least(have: str, need: str) -> bool:
    """Compare driver versions numerically, padding: "580.65.06" >= "580"."""
    h, n = driver_tuple(have) or (0,), driver_tuple(need) or (0,)
    width = max(len(h), len(n))
    return h + (0,) * (width - len(h)) >= n + (0,) * (width - len(n))


def last_driver_branch(cc: tuple[int, int]) -> dict | None:
    """The last driver branch that supports a GPU of this capability, when one is announced."""
    for row in cuda_recipe()["driver_branches"]:
        lo, hi = (tuple(int(x) for x in row[k].split(".")) for k in ("cc_min", "cc_max"))
        if lo <= cc <= hi:
            return row
    return None


@functools.lru_cache(maxsize=1)
def _cubin_rules() -> tuple[dict, set]:
    rules = cuda_recipe()["cubin_compatibility"]
    exact = {tuple(int(x) for x in k.split(".")): {tuple(int(y) for y in v.split(".")) for v in vals}
             for k, vals in rules["runs_only_on"].items()}
    integrated = {tuple(int(x) for x in k.split(".")) for k in rules["integrated_gpus"]}
    return exact, integrated


def cubin_runs_on(arch: Arch, device: tuple[int, int]) -> bool:
    """NVIDIA binary compatibility as torch applies it: a cubin for X.y runs on X.z, z >= y
    (CUDA C++ Programming Guide, "Binary Compatibility"), except that integrated (Tegra) GPUs
    and discrete GPUs do not share cubins and arch-specific code (sm_90a) runs only on its own
    capability (torch/cuda/__init__.py DEVICE_REQUIREMENT; recipes/cuda.json cubin_compatibility)."""
    if arch.kind != "sm":
        return False
    exact, integrated = _cubin_rules()
    if arch.suffix == "a":
        return device == arch.cc
    if arch.cc in exact:
        return device in exact[arch.cc]
    if device in integrated:
        return False
    return device[0] == arch.cc[0] and device[1] >= arch.cc[1]


def ptx_runs_on(arch: Arch, device: tuple[int, int]) -> bool:
    """PTX for X.y can be JIT-compiled for any capability >= X.y (CUDA C++ Programming Guide)."""
    return arch.kind == "compute" and arch.suffix != "a" and device >= arch.cc


@functools.lru_cache(maxsize=1)
def _driver_generations() -> tuple[dict, ...]:
    return tuple(recipes.load("driver_branches").get("generations", []))


def gpu_driver_minimum(name: str, cc: tuple[int, int] | None, os: str = "linux") -> dict | None:
    """The least driver that runs this GPU at all (recipes/driver_branches.json): the product's own
    minimum when one is listed, else its generation's (the first CUDA toolkit's GA driver).
    Returns {"driver", "branch", "architecture", "source"} or None when none is known."""
    col = "windows" if os == "windows" else "linux"
    rec = recipes.load("driver_branches")
    words = re.split(r"[\s_\-/]+", (name or "").lower())
    for row in rec.get("products", []):
        if row.get(col) and row["gpu"].lower() in words:
            return {"driver": row[col], "branch": row["branch"], "architecture": row["gpu"],
                    "source": row["source"]}
    if cc is None:
        return None
    text = f"{cc[0]}.{cc[1]}"
    for row in _driver_generations():
        if text in row["cc"] and row.get(col):
            return {"driver": row[col], "branch": row["branch"], "architecture": row["architecture"],
                    "source": row["source"], "first_cuda": row["first_cuda"]}
    return None


# -------------------------------------------------------------------------------------- misc


def newest_known() -> Release:
    return releases()[0]


def conda_recipe() -> dict:
    return recipes.load("torch_releases").get("conda", {})
