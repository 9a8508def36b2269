"""The machine facts the install engine reasons about, read from a snapshot or given as what-ifs.

Pure: a snapshot dict (or CLI flag values) in, a :class:`Machine` out. Bad what-if input raises
:class:`InputError` with one line saying what is accepted (the CLI turns it into exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from envcheck import recipes
from envcheck import snapshot as snap

PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64")
EXTRAS = ("torchvision", "torchaudio")


class InputError(ValueError):
    """A what-if value envcheck cannot use; the message says what is accepted."""


@dataclass(frozen=True)
class Gpu:
    """One accelerator: an NVIDIA GPU by compute capability, or an AMD GPU by gfx target."""

    name: str
    cc: tuple[int, int] | None = None  # NVIDIA compute capability, (8, 6)
    gfx: str | None = None  # AMD LLVM target, "gfx90a"
    source: str = "probed"  # probed | flag | snapshot
    xpu: bool = False  # an Intel GPU served by torch's xpu builds

    @property
    def vendor(self) -> str:
        return "amd" if self.gfx else ("intel" if self.xpu else "nvidia")

    @property
    def label(self) -> str:
        if self.gfx:
            return f"{self.name} ({self.gfx})"
        if self.xpu:
            return f"{self.name} (Intel, xpu)"
        if self.cc is None:
            return f"{self.name} (compute capability unknown)"
        return f"{self.name} (sm_{self.cc[0]}{self.cc[1]})"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "vendor": self.vendor,
            "compute_capability": f"{self.cc[0]}.{self.cc[1]}" if self.cc else None,
            "gfx": self.gfx,
        }


@dataclass(frozen=True)
class Machine:
    """What decides which torch wheel fits. ``None`` means unknown (no conclusion drawn on it)."""

    platform: str | None
    python: str | None  # "3.12"
    free_threaded: bool = False
    python_full: str | None = None  # "3.14.1": Requires-Python is evaluated at the patch level
    macos: str | None = None  # "13.6": macOS wheels carry a minimum OS version in their tag
    glibc: str | None = None  # "2.35"; Linux only
    driver: str | None = None  # NVIDIA driver version, "570.124.06"
    gpus: tuple[Gpu, ...] = ()
    no_gpu: bool = False  # the user said: plan for CPU only
    gpu_without_driver: bool = False  # NVIDIA PCI device present but NVML cannot talk to it
    wsl: bool = False  # the driver is the Windows host's (NVIDIA CUDA on WSL guide)
    executable: str | None = None  # the interpreter commands should run with
    externally_managed: bool = False  # PEP 668: pip refuses to install into `executable`
    installed_torch: str | None = None
    sources: dict = field(default_factory=dict)  # fact -> "probed" | "flag" | "snapshot"
    assumed: tuple = ()  # what a what-if plan took from this machine or left out, in words

    @property
    def driver_os(self) -> str:
        """Which minimum-driver column applies: WSL uses the Windows host driver."""
        if self.wsl or (self.platform or "").startswith("windows"):
            return "windows"
        return "linux"

    @property
    def nvidia_gpus(self) -> tuple[Gpu, ...]:
        return () if self.no_gpu else tuple(g for g in self.gpus if g.vendor == "nvidia")

    @property
    def amd_gpus(self) -> tuple[Gpu, ...]:
        return () if self.no_gpu else tuple(g for g in self.gpus if g.vendor == "amd")

    @property
    def intel_gpus(self) -> tuple[Gpu, ...]:
        return () if self.no_gpu else tuple(g for g in self.gpus if g.vendor == "intel")

    def to_dict(self) -> dict:
        return {
            "platform": self.platform,
            "python": (self.python + ("t" if self.free_threaded else "")) if self.python else None,
            "python_full": self.python_full,
            "macos": self.macos,
            "glibc": self.glibc,
            "driver": self.driver,
            "gpus": [g.to_dict() for g in self.gpus],
            "no_gpu": self.no_gpu,
            "gpu_without_driver": self.gpu_without_driver,
            "wsl": self.wsl,
            "executable": self.executable,
            "externally_managed": self.externally_managed,
            "installed_torch": self.installed_torch,
            "sources": dict(self.sources),
            "assumed": list(self.assumed),
        }


# ------------------------------------------------------------------------------ parsing helpers

_MM = re.compile(r"(\d+)\.(\d+)")


def full_version(text: Any) -> str | None:
    """``"3.14.1"`` / ``"3.14.1+"`` -> ``"3.14.1"``; None unless it starts with X.Y.Z."""
    if not isinstance(text, str):
        return None
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text.strip())
    return ".".join(str(int(g)) for g in m.groups()) if m else None


def major_minor(text: Any) -> str | None:
    """``"3.11.9"`` -> ``"3.11"``; None when it does not start with X.Y."""
    if not isinstance(text, str):
        return None
    m = _MM.match(text.strip())
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else None


def parse_cc(text: Any) -> tuple[int, int] | None:
    """``"8.6"`` / ``[8, 6]`` / ``"sm_86"`` / ``"sm_120"`` -> (8, 6) / (12, 0)."""
    if isinstance(text, (list, tuple)) and len(text) == 2:
        try:
            return int(text[0]), int(text[1])
        except (TypeError, ValueError):
            return None
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    m = re.fullmatch(r"(\d+)\.(\d)", t)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(?:sm|compute)_?(\d)(\d)|(?:sm|compute)_?(\d\d)(\d)", t)
    if m:
        major, minor = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return int(major), int(minor)
    return None


def parse_driver(text: Any) -> tuple[int, ...] | None:
    """``"570.124.06"`` -> (570, 124, 6); None when malformed."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{2,4}(\.\d{1,3}){0,2}", text.strip()):
        return None
    return tuple(int(p) for p in text.strip().split("."))


def _tokens(name: str) -> list[str]:
    """Lower-case words of a GPU name without vendor/brand words (NVML says "NVIDIA GeForce …")."""
    words = re.split(r"[\s_\-/]+", name.lower().replace("(r)", " ").replace("(tm)", " "))
    noise = {"nvidia", "geforce", "tesla", "amd", "radeon", "instinct", "gpu", ""}
    return [w for w in words if w not in noise]


def _gpu_table() -> list[dict]:
    return recipes.load("gpus")["gpus"]


def gpu_names() -> list[str]:
    """Names --gpu accepts (for help and error messages)."""
    return [g["name"] for g in _gpu_table()]


def gpu_listing() -> str:
    """``install --list-gpus``: every known name with its compute capability / gfx target, and
    the other accepted forms."""
    rows = []
    for g in _gpu_table():
        what = (f"sm_{g['cc'].replace('.', '')} ({g['cc']})" if g.get("cc")
                else g.get("gfx") or ("xpu" if g.get("vendor") == "intel" else ""))
        aliases = ", ".join(g.get("aliases", []))
        rows.append((g["name"], what, g.get("architecture", ""), aliases))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [f"{'GPU'.ljust(w0)}  {'target'.ljust(w1)}  {'architecture'.ljust(w2)}  also accepted as"]
    lines += [f"{n.ljust(w0)}  {t.ljust(w1)}  {a.ljust(w2)}  {al}".rstrip() for n, t, a, al in rows]
    lines += ["", "Any other GPU: --gpu sm_XY or X.Y (NVIDIA compute capability, e.g. sm_86 or 8.6), "
              "or gfxNNNN (AMD LLVM target, e.g. gfx90a, gfx1100).",
              "Apple silicon: no --gpu; use --platform macos-arm64 (the macOS wheels include MPS)."]
    return "\n".join(lines) + "\n"


_APPLE = re.compile(r"(apple\s*)?m[1-9](\s*(pro|max|ultra))?|apple\b.*")


def resolve_gpu(text: str) -> Gpu:
    """A ``--gpu`` value: a name from recipes/gpus.json (case and brand words ignored; the
    longest matching name wins, so "H100 80GB HBM3" is an H100), ``sm_XY``, ``X.Y`` or ``gfxNNN``."""
    raw = (text or "").strip()
    if not raw:
        raise InputError("--gpu needs a value: a GPU name (e.g. 'RTX 4090', H100), sm_XY or gfxNNN")
    cc = parse_cc(raw)
    if cc is not None and (raw.lower().startswith("sm") or re.fullmatch(r"\d+\.\d", raw)):
        if cc[0] < 1:
            raise InputError(f"--gpu {raw!r}: a compute capability looks like sm_86 or 8.6")
        return Gpu(name=f"sm_{cc[0]}{cc[1]}", cc=cc, source="flag")
    if re.fullmatch(r"gfx[0-9a-f]{3,4}", raw.lower()):
        return Gpu(name=raw.lower(), gfx=raw.lower(), source="flag")
    query = _tokens(raw)
    joined = "".join(query)

    best: tuple[int, dict] | None = None
    for entry in _gpu_table():
        for alias in [entry["name"], *entry.get("aliases", [])]:
            toks = _tokens(alias)
            if not toks:
                continue
            if joined == "".join(toks) or query[: len(toks)] == toks:
                score = len("".join(toks))
                if best is None or score > best[0]:
                    best = (score, entry)
    if best is None and (_APPLE.fullmatch(raw.lower()) or (query and query[0] == "apple")):
        raise InputError(
            f"--gpu {raw!r}: Apple silicon GPUs are used through MPS by the macOS arm64 wheels; "
            "plan with --platform macos-arm64 (no --gpu needed)")
    if best is None:
        raise InputError(
            f"unknown GPU {raw!r}: give a known name (e.g. 'RTX 4090', A100, H100, T4, V100, "
            "'GTX 1080', B200, MI300X, 'Arc A770'), a compute capability (sm_86 or 8.6) or an AMD "
            "target (gfx90a); `envcheck install --list-gpus` lists the names"
        )
    entry = best[1]
    if entry.get("gfx"):
        return Gpu(name=entry["name"], gfx=entry["gfx"], source="flag")
    if entry.get("vendor") == "intel":
        return Gpu(name=entry["name"], xpu=True, source="flag")
    return Gpu(name=entry["name"], cc=parse_cc(entry["cc"]), source="flag")


# --------------------------------------------------------------------------------- snapshots

_NO_DRIVER = {"library_not_found", "driver_not_loaded"}


def machine_from_snapshot(snapshot: dict, source: str = "probed") -> Machine:
    """The facts the engine needs, read from a doctor snapshot (see the snapshot contract)."""
    get = snap.get
    platform = get(snapshot, "python.platform_tag") or get(snapshot, "host.platform")
    if platform not in PLATFORMS:
        platform = None
    version = get(snapshot, "python.version")
    gpus: list[Gpu] = []
    for g in get(snapshot, "nvidia.gpus", []) or []:
        if not isinstance(g, dict):
            continue
        name = snap.val(g.get("name")) or f"GPU {g.get('index', '?')}"
        gpus.append(Gpu(name=str(name), cc=parse_cc(snap.val(g.get("compute_capability"))),
                        source=source))
    nvml = get(snapshot, "nvidia.nvml.status")
    pci = get(snapshot, "host.pci_nvidia_devices", []) or []
    # PCI class 0x03xx = display controller (VGA 0x0300, 3D 0x0302); audio functions are 0x0403.
    pci_gpus = [d for d in pci if isinstance(d, dict) and str(d.get("class", "")).startswith("0x03")]
    installed = get(snapshot, "torch.version") if get(snapshot, "torch.status") == "ok" else None
    if get(snapshot, "torch.status") == "not_probed":  # probed without importing torch
        dists = get(snapshot, "torch.distributions", [])
        installed = dists[0].get("version") if isinstance(dists, list) and dists and \
            isinstance(dists[0], dict) else None
    facts = ("platform", "python", "glibc", "driver", "gpus")
    macos = get(snapshot, "host.distro_version") if get(snapshot, "host.distro_id") == "macos" else None
    return Machine(
        platform=platform,
        python=major_minor(version),
        python_full=full_version(version),
        macos=major_minor(macos),
        free_threaded=get(snapshot, "python.free_threaded") is True,
        glibc=major_minor(get(snapshot, "host.glibc")),
        driver=get(snapshot, "nvidia.driver_version") if isinstance(
            get(snapshot, "nvidia.driver_version"), str) else None,
        gpus=tuple(gpus),
        gpu_without_driver=bool(pci_gpus) and not gpus and nvml in _NO_DRIVER,
        wsl=get(snapshot, "host.wsl") is True,
        executable=get(snapshot, "python.executable"),
        externally_managed=get(snapshot, "python.externally_managed") is True,
        installed_torch=installed if isinstance(installed, str) else None,
        sources={f: source for f in facts},
    )


def apply_overrides(
    machine: Machine,
    *,
    gpus: list[str] | tuple[str, ...] = (),
    no_gpu: bool = False,
    driver: str | None = None,
    python: str | None = None,
    platform: str | None = None,
    glibc: str | None = None,
    macos: str | None = None,
) -> Machine:
    """What-if flags replace the matching probed facts. Raises InputError on bad values."""
    if gpus and no_gpu:
        raise InputError("--gpu and --no-gpu exclude each other: give GPUs, or say there is none")
    changes: dict[str, Any] = {}
    sources = dict(machine.sources)
    assumed: list[str] = list(machine.assumed)
    if platform is not None:
        if platform not in PLATFORMS:
            raise InputError(f"unknown platform {platform!r}: use one of {', '.join(PLATFORMS)}")
        changes["platform"] = platform
        probed = machine.platform is not None and sources.get("platform") != "flag"
        if platform != machine.platform and probed:
            # Another OS/CPU: this machine's interpreter, installed torch, glibc, WSL state, GPUs
            # and driver do not describe that machine; what the flags do not give is left out.
            changes.update(executable=None, externally_managed=False, wsl=False, installed_torch=None, macos=None)
            dropped = []
            if glibc is None and machine.glibc:
                changes["glibc"] = None
                dropped.append("glibc")
            if not (gpus or no_gpu) and (machine.gpus or machine.gpu_without_driver):
                changes.update(gpus=(), gpu_without_driver=False)
                dropped.append("GPUs")
            if driver is None and machine.driver:
                changes["driver"] = None
                dropped.append("driver")
            for fact in dropped:
                sources[{"GPUs": "gpus"}.get(fact, fact)] = "left out"
            if dropped and platform.startswith("macos"):
                assumed.append(f"this machine's {', '.join(dropped)} do not apply to {platform} (its wheels "
                               "are CPU + MPS builds) and were left out; give --macos X.Y to check the "
                               "wheels' macOS floor")
            elif dropped:
                assumed.append(f"this machine's {', '.join(dropped)} do not apply to {platform} and were "
                               "left out (give --gpu/--no-gpu, --driver" + (", --glibc" if platform.startswith(
                                   "linux") else "") + " to plan with them)")
            if python is None and machine.python:
                assumed.append(f"Python {machine.python}{'t' if machine.free_threaded else ''} is this "
                               "machine's, assumed for the other platform (give --python X.Y to change it)")
                sources["python"] = "assumed"
        sources["platform"] = "flag"
    if python is not None:
        m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(t?)", python.strip())
        if not m or int(m.group(1)) != 3:
            raise InputError(f"--python {python!r}: give a version like 3.12 or 3.14.1 (3.13t for free-threaded)")
        new = f"3.{int(m.group(2))}"
        changes.update(python=new, free_threaded=bool(m.group(4)), executable=None, externally_managed=False,
                       python_full=f"{new}.{int(m.group(3))}" if m.group(3) is not None else None)
        if machine.installed_torch and (new != machine.python
                                        or bool(m.group(4)) != machine.free_threaded):
            # The installed torch belongs to another interpreter: the plan does not replace it.
            changes["installed_torch"] = None
        sources["python"] = "flag"
    if glibc is not None:
        if not re.fullmatch(r"2\.\d{1,2}", glibc.strip()):
            raise InputError(f"--glibc {glibc!r}: give a version like 2.28 (see `ldd --version`)")
        changes["glibc"] = glibc.strip()
        sources["glibc"] = "flag"
    if macos is not None:
        if not re.fullmatch(r"1\d(\.\d{1,2})?", macos.strip()):
            raise InputError(f"--macos {macos!r}: give a macOS version like 13.6 or 14 (see `sw_vers`)")
        changes["macos"] = macos.strip() if "." in macos else f"{macos.strip()}.0"
        sources["macos"] = "flag"
    if driver is not None:
        if parse_driver(driver) is None:
            raise InputError(f"--driver {driver!r}: give an NVIDIA driver version like 570 or 570.124.06")
        changes["driver"] = driver.strip()
        sources["driver"] = "flag"
    if gpus:
        changes["gpus"] = tuple(resolve_gpu(g) for g in gpus)
        changes["gpu_without_driver"] = False
        changes["no_gpu"] = False
        sources["gpus"] = "flag"
    if no_gpu:
        changes.update(gpus=(), no_gpu=True, gpu_without_driver=False)
        sources["gpus"] = "flag"
    changes["sources"] = sources
    changes["assumed"] = tuple(dict.fromkeys(assumed))
    return replace(machine, **changes)


def what_if_machine(**flags: Any) -> Machine:
    """A machine described only by flags (nothing probed): unknown facts stay None.
    ``flags`` are :func:`apply_overrides`'s keywords (gpus, no_gpu, driver, python, platform, glibc,
    macos)."""
    return apply_overrides(Machine(platform=None, python=None, sources={}), **flags)


# ------------------------------------------------------------------------------- CLI values


def parse_torch_spec(text: str | None):
    """``--torch``: a PEP 440 specifier (">=2.4,<2.8", "==2.7.1"); a bare version means ==."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if text is None or not text.strip():
        return None
    raw = text.strip()
    if re.fullmatch(r"\d+(\.\d+){0,2}", raw):
        raw = f"=={raw}" if raw.count(".") == 2 else f"=={raw}.*"
    try:
        return SpecifierSet(raw)
    except InvalidSpecifier:
        raise InputError(
            f"--torch {text!r}: give a version specifier like '>=2.4,<2.8', '==2.7.1' or 2.7"
        ) from None


def parse_with(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``--with torchvision,torchaudio`` (comma-separated and/or repeated)."""
    names: list[str] = []
    for value in values or ():
        for part in str(value).split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in EXTRAS:
                raise InputError(f"--with {part.strip()!r}: accepted packages are {', '.join(EXTRAS)}")
            if name not in names:
                names.append(name)
    return tuple(names)


def python_version_flag(value: str | None) -> str | None:
    """``--python`` given as a version (3.12, 3.14.1, 3.13t) rather than an interpreter path."""
    if value and re.fullmatch(r"\d+\.\d+(\.\d+)?t?", value.strip()):
        return value.strip()
    return None
