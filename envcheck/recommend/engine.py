"""Pick the torch release and build for a machine, and say why (pure: Machine + recipes -> Plan).

The pick is the newest release (within the user's ``--torch`` constraint) for which
  1. the platform has a wheel and the wheel is built for this Python (free-threaded too), and
     the release's Requires-Python admits the exact interpreter (3.14.1, not just 3.14),
  2. the Linux wheel's manylinux glibc floor is <= the machine's glibc; the macOS wheel's tag
     floor (macosx_14_0) is <= the machine's macOS,
  3. some build of it has a cubin for EVERY GPU (same major, minor <= the GPU's; see
     data.cubin_runs_on) -- PTX alone is not counted: torch's own check (torch/cuda/__init__.py
     _check_cubins) ignores PTX, the CUDA libraries bundled with an older toolkit (cuBLAS,
     cuDNN) have no kernels for a newer architecture, and minor-version compatibility does not
     cover JIT-compiling PTX newer than the driver; and the cuDNN it bundles supports the GPU
     (cuDNN 9, bundled from torch 2.4, starts at compute capability 5.0),
  4. the driver runs that build's CUDA major (minor-version compatibility, recipes/cuda.json),
  5. the requested companions (torchvision/torchaudio) have a release for it whose
     Requires-Python admits the interpreter.
Before any release: the driver must be new enough to run each GPU at all
(recipes/driver_branches.json); Intel GPUs get the xpu build, AMD GPUs a ROCm build.
Among the builds of that release that pass, the newest CUDA wins (the PyPI build on a tie).
When no release passes, the blockers are the failures of the newest "near miss" (the release
with the fewest failed requirements): the smallest change that makes an install possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from envcheck.recommend import commands, data
from envcheck.recommend.data import Build, Release
from envcheck.recommend.machine import Gpu, Machine


@dataclass(frozen=True)
class Blocker:
    id: str
    message: str
    fix: str

    def to_dict(self) -> dict:
        return {"id": self.id, "message": self.message, "fix": self.fix}


@dataclass
class Plan:
    """What to install (or why nothing can be), the exact commands and the reasoning."""

    machine: Machine
    torch: str | None = None
    variant: str | None = None
    cuda: str | None = None
    index_url: str | None = None
    companions: dict = field(default_factory=dict)
    commands: dict = field(default_factory=lambda: {"pip": None, "uv": None, "conda": None})
    pip_args: list = field(default_factory=list)  # what follows `pip install`, for --run
    blockers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    constraint: str | None = None
    extras: tuple = ()
    already_installed: bool = False  # the installed torch is exactly this plan
    online: dict | None = None  # --online: the live index's verdict (recommend/online.py)

    @property
    def ok(self) -> bool:
        return self.torch is not None and not self.blockers

    def to_dict(self) -> dict:
        return {
            "torch": self.torch,
            "variant": self.variant,
            "cuda": self.cuda,
            "index_url": self.index_url,
            "companions": dict(self.companions),
            "commands": dict(self.commands),
            "blockers": [b.to_dict() for b in self.blockers],
            "notes": list(self.notes),
            "reasons": list(self.reasons),
            "constraint": self.constraint,
            "with": list(self.extras),
            "already_installed": self.already_installed,
            "online": self.online,
            "machine": self.machine.to_dict(),
            "newest_known_release": data.newest_known().text,
        }


@dataclass(frozen=True)
class _Failure:
    kind: str  # blocker id
    message: str
    fix: str


def _fmt_cc(cc: tuple[int, int]) -> str:
    return f"sm_{cc[0]}{cc[1]}"


def _py_key(v: str) -> Version:
    return Version(v.rstrip("t"))


def _py_range(versions) -> str:
    vs = sorted(versions, key=_py_key)
    return f"{vs[0]}-{vs[-1]}" if len(vs) > 1 else (vs[0] if vs else "none")


def _example_python(versions) -> str:
    """A sensible Python to suggest: the middle of the supported range (well-tested, not newest)."""
    vs = sorted(versions, key=_py_key)
    return vs[(len(vs) - 1 + 1) // 2] if vs else "3.12"


def _has_cubin(build: Build, gpu: Gpu) -> bool:
    return build.arch is not None and gpu.cc is not None and any(
        data.cubin_runs_on(a, gpu.cc) for a in build.arch)


def _cudnn_ok(build: Build, gpu: Gpu) -> bool:
    floor = data.cudnn_floor(build.cudnn)
    return floor is None or gpu.cc is None or gpu.cc >= floor


def _covers(build: Build, gpu: Gpu) -> bool:
    """A cubin that runs on the GPU, and a bundled cuDNN that supports it."""
    return _has_cubin(build, gpu) and _cudnn_ok(build, gpu)


def _ptx_only(build: Build, gpu: Gpu) -> bool:
    return build.arch is not None and gpu.cc is not None and not _covers(build, gpu) and any(
        data.ptx_runs_on(a, gpu.cc) for a in build.arch)


def _driver_need(build: Build, machine: Machine) -> str | None:
    return data.driver_minimum(build.cuda, machine.driver_os) if build.cuda else None


def _cuda_key(build: Build) -> tuple:
    return (build.cuda_version or (0, 0), build.index_url is None)


def _rocm_key(build: Build) -> tuple:
    return tuple(int(x) for x in (build.rocm or "0").split(".") if x.isdigit())


class _Evaluation:
    """Why one release does or does not fit the machine."""

    def __init__(self, release: Release, machine: Machine, extras: tuple):
        self.release = release
        self.machine = machine
        self.failures: list[_Failure] = []
        self.build: Build | None = None
        self.driver_only: list[tuple[Build, str]] = []  # builds that only lack a newer driver
        self.cpu_fallback = False  # no CPU build fits: PyPI's CUDA build, which runs on CPUs too
        self._check(extras)

    @property
    def ok(self) -> bool:
        return self.build is not None and not self.failures

    def _fail(self, kind: str, message: str, fix: str) -> None:
        self.failures.append(_Failure(kind, message, fix))

    def _check(self, extras: tuple) -> None:
        r, m = self.release, self.machine
        wheels = r.platforms.get(m.platform)
        if wheels is None:
            last = _last_release_for_platform(m.platform)
            self._fail(
                "platform.unsupported",
                f"torch {r.text} has no wheel for {m.platform}"
                + (f" (the last release that has one is {last})" if last else ""),
                (f"use torch {last} (--torch '=={last}')" if last else
                 "use another platform (Linux x86_64/aarch64, Windows x86_64, macOS arm64)")
                + (" or conda-forge" if m.platform == "macos-x86_64" else ""),
            )
            return
        self._check_python(wheels)
        self._check_macos(wheels)
        for extra in extras:
            need = (r.companions_python or {}).get(extra)
            if r.companions.get(extra) and need and m.python_full and not m.free_threaded and \
                    not SpecifierSet(need).contains(m.python_full, prereleases=True):
                self._fail(
                    "companion.python",
                    f"{extra} {r.companions[extra]} (for torch {r.text}) declares Requires-Python "
                    f"{need}, which excludes Python {m.python_full}",
                    f"use another Python patch release (e.g. a newer {m.python}.x) or leave {extra} out",
                )
            if r.companions.get(extra) is None:
                last = _last_companion(extra)
                self._fail(
                    "companion.unavailable",
                    f"{extra} has no release for torch {r.text}"
                    + (f" (its newest is for torch {last})" if last else ""),
                    f"leave {extra} out of --with" + (f", or use torch {last}" if last else ""),
                )
        self._choose_build()

    def _check_python(self, wheels) -> None:
        r, m = self.release, self.machine
        if m.python is None:
            return
        if m.free_threaded:
            have = wheels.free_threaded
            want = f"{m.python}t"
        else:
            have = wheels.python
            want = m.python
        if want in have:
            if m.python_full and r.requires_python and not m.free_threaded and not SpecifierSet(
                    r.requires_python).contains(m.python_full, prereleases=True):
                self._fail(
                    "python.unsupported",
                    f"torch {r.text} declares Requires-Python {r.requires_python}, which excludes "
                    f"Python {m.python_full}",
                    f"use another Python patch release than {m.python_full}",
                )
            return
        pool = wheels.free_threaded if m.free_threaded else wheels.python
        if not pool:
            self._fail(
                "python.unsupported",
                f"torch {r.text} has no free-threaded (Python {want}) wheel for {m.platform}",
                f"use a regular (GIL) Python, e.g. {_example_python(wheels.python)}",
            )
            return
        example = _example_python(pool)
        self._fail(
            "python.unsupported",
            f"torch {r.text} has {m.platform} wheels for Python {_py_range(pool)}, not {want}",
            f"install Python {example} (torch {r.text} supports {_py_range(pool)}) and re-run",
        )

    def _check_macos(self, wheels) -> None:
        r, m = self.release, self.machine
        if not (m.platform or "").startswith("macos") or not m.macos or not wheels.macos:
            return
        if Version(m.macos) < Version(wheels.macos):
            self._fail(
                "macos.too-old",
                f"torch {r.text}'s {m.platform} wheels are tagged for macOS >= {wheels.macos}; "
                f"this Mac runs macOS {m.macos}, where pip skips them",
                f"upgrade macOS to {wheels.macos} or newer",
            )

    def _glibc_ok(self, build: Build) -> bool:
        m = self.machine
        return not (m.platform.startswith("linux") and m.glibc and build.glibc
                    and Version(m.glibc) < Version(build.glibc))

    def _glibc_fail(self, builds) -> None:
        m, r = self.machine, self.release
        need = min((b.glibc for b in builds if b.glibc), key=Version, default="?")
        self._fail(
            "glibc.too-old",
            f"torch {r.text}'s {m.platform} wheels that fit need glibc >= {need}; this machine has {m.glibc}",
            f"move to a distribution with glibc >= {need} (e.g. RHEL/Alma/Rocky 8+, Ubuntu 20.04+, "
            "Debian 11+) or run in such a container",
        )

    def _choose_build(self) -> None:
        m = self.machine
        all_builds = self.release.builds.get(m.platform, ())
        builds = tuple(b for b in all_builds if self._glibc_ok(b))
        if all_builds and not builds:
            self._glibc_fail(all_builds)
            return
        nvidia, amd, intel = m.nvidia_gpus, m.amd_gpus, m.intel_gpus
        if intel and not nvidia and not amd:
            xpu = [b for b in builds if b.kind == "xpu"]
            if xpu:
                self.build = xpu[0]
                return
        if nvidia:
            known = [g for g in nvidia if g.cc is not None]
            fits = [b for b in all_builds if b.kind == "cuda" and b.arch is not None
                    and all(_covers(b, g) for g in known)]
            if fits and not any(self._glibc_ok(b) for b in fits):
                self._glibc_fail(fits)
                return
            self._choose_cuda(builds, nvidia)
        elif amd:
            self._choose_rocm(builds, amd)
        else:
            cpu = [b for b in builds if b.kind == "cpu"]
            pypi = [b for b in builds if b.index_url is None]
            # The PyPI build comes first; plain PyPI is the CPU build on Windows and macOS. A
            # CUDA build also runs on the CPU: the fallback when no CPU build fits (old glibc).
            self.build = cpu[0] if cpu else (pypi[0] if pypi else None)
            if self.build is not None and self.build.kind != "cpu":
                self.cpu_fallback = True
            if self.build is None:
                self._fail("platform.unsupported",
                           f"recipes list no CPU build of torch {self.release.text} for {m.platform}",
                           "pick another release with --torch")

    def _choose_cuda(self, builds: tuple[Build, ...], gpus: tuple[Gpu, ...]) -> None:
        m, r = self.machine, self.release
        cuda = [b for b in builds if b.kind == "cuda" and b.arch is not None]
        known = [g for g in gpus if g.cc is not None]
        covering = [b for b in cuda if all(_covers(b, g) for g in known)]
        if not covering:
            missing = [g for g in known if not any(_covers(b, g) for b in cuda)]
            if not missing:  # each GPU has a build, but no single build has all of them
                self._fail(
                    "gpu.mixed",
                    f"no single torch {r.text} build has kernels for all of "
                    + ", ".join(g.label for g in known),
                    "use one GPU generation per machine (or CUDA_VISIBLE_DEVICES) and plan per GPU",
                )
                return
            variants = ", ".join(b.variant for b in cuda) or "none"
            last = _last_release_covering(known, m) or _last_release_covering(missing, m)
            ptx = sorted({b.variant for b in cuda for g in missing if _ptx_only(b, g)})
            no_cudnn = sorted({f"cuDNN {b.cudnn}" for b in cuda for g in missing
                               if _has_cubin(b, g) and not _cudnn_ok(b, g)})
            self._fail(
                "gpu.unsupported",
                f"no torch {r.text} {m.platform} build ({variants}) has kernels for "
                + ", ".join(g.label for g in missing)
                + (f" (only PTX in {', '.join(ptx)}, which torch does not count as support)" if ptx else "")
                + (f" (it has cubins, but the bundled {', '.join(no_cudnn)} supports compute "
                   "capability 5.0 and newer only)" if no_cudnn else ""),
                (f"the last release that has them is torch {last[0]} ({last[1]}): use --torch '=={last[0]}'"
                 if last else "no PyTorch 2.x wheel supports this GPU; use a newer GPU or build torch "
                 "from source with TORCH_CUDA_ARCH_LIST set for it"),
            )
            return
        usable = []
        for b in covering:
            need = _driver_need(b, m)
            if m.driver and need and not data.driver_at_least(m.driver, need):
                self.driver_only.append((b, need))
            else:
                usable.append(b)
        if usable:
            self.build = max(usable, key=_cuda_key)
            return
        b, need = min(self.driver_only, key=lambda bn: data.driver_tuple(bn[1]) or (0,))
        variants = "/".join(sorted({x.variant for x, n in self.driver_only if n == need}))
        self._fail(
            "driver.too-old",
            f"torch {r.text}'s builds with kernels for this GPU ({variants}) need NVIDIA driver "
            f">= {need} (CUDA {b.cuda.split('.')[0]}.x minor-version compatibility); this machine "
            f"has {m.driver}",
            _driver_fix(need, gpus),
        )

    def _choose_rocm(self, builds: tuple[Build, ...], gpus: tuple[Gpu, ...]) -> None:
        r, m = self.release, self.machine
        rocm = [b for b in builds if b.kind == "rocm" and b.gfx]
        ok = [b for b in rocm if all(g.gfx in b.gfx for g in gpus)]
        if ok:
            self.build = max(ok, key=_rocm_key)
            return
        if not rocm:
            if m.platform == "linux-x86_64":
                self._fail("gpu.unsupported",
                           f"recipes know no ROCm build of torch {r.text} with a gfx target list",
                           "use an older torch (--torch) or check download.pytorch.org for a newer ROCm index")
            else:
                self._fail("gpu.unsupported",
                           f"torch {r.text} has no ROCm build for {m.platform} (ROCm wheels are Linux x86_64 only)",
                           "use Linux x86_64 for AMD GPUs")
            return
        self._fail("gpu.unsupported",
                   f"no torch {r.text} ROCm build ({', '.join(b.variant for b in rocm)}) targets "
                   + ", ".join(g.label for g in gpus),
                   "pick an older/newer release with --torch, or build torch for this gfx target")


def _driver_fix(need: str, gpus: tuple[Gpu, ...]) -> str:
    """Upgrade advice, capped by the last driver branch of the oldest GPU (Kepler: R470...)."""
    caps = [(data.last_driver_branch(g.cc), g) for g in gpus if g.cc]
    caps = [(row, g) for row, g in caps if row]
    for row, g in caps:
        if int(row["last_branch"]) < (data.driver_tuple(need) or (0,))[0]:
            return (f"no driver supports both: {g.name} ({row['architecture']}) is supported up to "
                    f"the R{row['last_branch']} driver branch, which is older than {need}; use an "
                    "older torch (--torch) or a newer GPU")
    branch = (data.driver_tuple(need) or (0,))[0]
    return f"upgrade the NVIDIA driver to >= {need} (R{branch} branch or newer)"


def _last_release_for_platform(platform: str | None) -> str | None:
    for r in data.releases():
        if platform in r.platforms:
            return r.text
    return None


def _last_companion(extra: str) -> str | None:
    for r in data.releases():
        if r.companions.get(extra):
            return r.text
    return None


def _last_release_covering(gpus: list[Gpu], machine: Machine) -> tuple[str, str] | None:
    """Newest release (any, ignoring --torch) with a build for this platform covering these GPUs,
    preferring one this machine's driver runs."""
    fallback = None
    for r in data.releases():
        for b in r.builds.get(machine.platform, ()):
            if b.kind == "cuda" and all(_covers(b, g) for g in gpus):
                need = _driver_need(b, machine)
                if not machine.driver or not need or data.driver_at_least(machine.driver, need):
                    return r.text, b.variant
                fallback = fallback or (r.text, b.variant)
    return fallback


# ------------------------------------------------------------------------------------- engine


def recommend(machine: Machine, torch_spec: SpecifierSet | str | None = None,
              extras: tuple | list = ()) -> Plan:
    """The install plan for ``machine`` (see the module docstring for the rules)."""
    spec = SpecifierSet(torch_spec) if isinstance(torch_spec, str) else torch_spec
    extras = tuple(e for e in ("torchvision", "torchaudio") if e in set(extras))
    plan = Plan(machine=machine, constraint=str(spec) if spec else None, extras=extras)
    if _machine_blockers(plan):
        return plan
    candidates = [r for r in data.releases() if spec is None or spec.contains(r.version, prereleases=True)]
    if not candidates:
        known = data.releases()
        plan.blockers.append(Blocker(
            "constraint.no-release",
            f"no torch release recipes know matches {spec} (known: {known[-1].text} to {known[0].text})",
            "widen --torch, or upgrade envcheck if that release is newer than its recipes",
        ))
        return plan
    evaluations = []
    for r in candidates:
        ev = _Evaluation(r, machine, extras)
        evaluations.append(ev)
        if ev.ok:
            _fill_plan(plan, ev, evaluations[:-1], spec)
            return plan
    _fill_blockers(plan, evaluations, spec)
    return plan


def _machine_blockers(plan: Plan) -> bool:
    m = plan.machine
    if m.platform is None:
        plan.blockers.append(Blocker(
            "platform.unknown",
            "this machine's platform is not one torch publishes wheels for, or could not be probed",
            "pass --platform (linux-x86_64, linux-aarch64, windows-x86_64, macos-arm64, macos-x86_64)",
        ))
    if m.python is None:
        plan.blockers.append(Blocker(
            "python.unknown", "the Python version is unknown (the python probe failed)",
            "pass --python X.Y, or --python PATH of a working interpreter",
        ))
    if m.driver:
        for g in m.nvidia_gpus:
            need = data.gpu_driver_minimum(g.name, g.cc, m.driver_os)
            if need and not data.driver_at_least(m.driver, need["driver"]):
                plan.blockers.append(Blocker(
                    "driver.too-old-for-gpu",
                    f"{g.label} needs NVIDIA driver >= {need['driver']} ({need['architecture']}"
                    + (f": the driver of CUDA {need['first_cuda']}, the first toolkit that supports it"
                       if need.get("first_cuda") else "")
                    + f"); this machine has {m.driver}, which cannot run this GPU with any torch",
                    f"install an NVIDIA driver >= {need['driver']} (R{need['branch']} branch or newer, "
                    "e.g. the R580 long-term-support branch), reboot, and re-run `envcheck install`",
                ))
                break
    if m.gpu_without_driver and not m.no_gpu:
        plan.blockers.append(Blocker(
            "driver.missing",
            "an NVIDIA GPU is on the PCI bus but no NVIDIA driver is loaded, so its compute "
            "capability (which decides the build) is unknown and torch could not use it",
            "install the NVIDIA driver (R580+; R580 is the last branch for Maxwell/Pascal/Volta), "
            "reboot, and re-run `envcheck install`; or plan now with --gpu NAME --driver VERSION",
        ))
    return bool(plan.blockers)


def _fill_plan(plan: Plan, ev: _Evaluation, newer: list[_Evaluation], spec) -> None:
    m, r, b = plan.machine, ev.release, ev.build
    plan.torch, plan.variant, plan.cuda = r.text, b.variant, b.cuda
    plan.index_url = b.index_url
    own = b.companions or {}
    plan.companions = {e: own.get(e, r.companions[e]) for e in plan.extras}
    plan.pip_args = commands.pip_args(r.text, plan.companions, b.index_url)
    plan.commands = commands.all_commands(plan, b)
    wheels = r.platforms[m.platform]
    py = f"{m.python}t" if m.free_threaded else m.python
    scope = f" within {spec}" if spec else ""
    plan.reasons.append(
        f"torch {r.text} is the newest release{scope} with a {m.platform} wheel for Python {py} "
        f"(it has {_py_range(wheels.free_threaded if m.free_threaded else wheels.python)})"
        + ("" if not newer else "; newer ones do not fit (see notes)")
    )
    if m.platform.startswith("linux") and b.glibc:
        plan.reasons.append(
            f"its {b.variant} Linux wheel needs glibc >= {b.glibc}: "
            + (f"this machine has {m.glibc}" if m.glibc else "glibc not known here, check `ldd --version`")
        )
    _gpu_reasons(plan, ev)
    _index_reasons(plan, r, b)
    _notes(plan, ev, newer)
    if m.externally_managed:
        plan.notes.append(f"{m.executable} is managed by the OS package manager (PEP 668): pip refuses to "
                          "install into it, so the command makes a venv (~/.venvs/torch) and installs there; "
                          "activate it with `source ~/.venvs/torch/bin/activate`")


def _gpu_reasons(plan: Plan, ev: _Evaluation) -> None:
    m, b = plan.machine, ev.build
    if b.kind == "cuda" and m.nvidia_gpus:
        archs = " ".join(str(a) for a in b.arch)
        for g in m.nvidia_gpus:
            if g.cc is None:
                plan.notes.append(f"{g.name}: compute capability unknown, so kernels for it were not checked")
                continue
            cubin = next(str(a) for a in b.arch if data.cubin_runs_on(a, g.cc))
            plan.reasons.append(
                f"{g.name} is {_fmt_cc(g.cc)}: the {b.variant} build has a {cubin} cubin that runs on it "
                f"(compiled for: {archs})"
            )
        need = _driver_need(b, m)
        if m.driver:
            plan.reasons.append(
                f"{b.variant} is CUDA {b.cuda}: needs driver >= {need} on {m.driver_os} "
                f"(CUDA {b.cuda.split('.')[0]}.x minor-version compatibility); this machine has {m.driver}"
            )
        else:
            plan.notes.append(
                f"NVIDIA driver not known: the {b.variant} build needs driver >= {need} "
                f"({m.driver_os}); pass --driver to check"
            )
        too_old = {x for x, _ in ev.driver_only}
        others = sorted({x.variant for x in ev.release.builds.get(m.platform, ())
                         if x.kind == "cuda" and x is not b and x not in too_old and x.arch is not None
                         and ev._glibc_ok(x) and all(_covers(x, g) for g in m.nvidia_gpus if g.cc)}
                        - {b.variant})
        if others:
            plan.reasons.append(f"{b.variant} is the newest CUDA among the builds that fit "
                                f"(also fit: {', '.join(others)})")
        if not b.verified:
            plan.notes.append(
                f"the {b.variant} arch list for torch {b.release} comes from PyTorch's build scripts and "
                "release notes, not from reading the wheel (download.pytorch.org is not checked by envcheck)"
            )
        if m.wsl:
            plan.notes.append("WSL: the driver is the Windows host's; do not install a Linux NVIDIA driver inside WSL")
    elif b.kind == "rocm" and m.amd_gpus:
        plan.reasons.append(
            f"{', '.join(g.label for g in m.amd_gpus)}: the {b.variant} build targets "
            + " ".join(b.gfx)
        )
        plan.notes.append("ROCm: the host's amdgpu kernel driver must suit ROCm "
                          f"{b.rocm}; envcheck does not check it")
    elif b.kind == "xpu":
        plan.reasons.append(f"{', '.join(g.label for g in m.intel_gpus)}: Intel GPUs run torch's xpu "
                            "build (PyTorch 'Getting Started on Intel GPU')")
        plan.notes.append("xpu: install Intel's GPU driver first (see PyTorch's 'Getting Started on Intel "
                          "GPU'); envcheck does not check the Intel driver or which Intel GPUs this build targets")
    elif ev.cpu_fallback:
        plan.reasons.append(f"no GPU: PyPI's {b.variant} build, used on the CPU (see notes)")
    else:
        if m.intel_gpus and not m.nvidia_gpus and not m.amd_gpus:
            plan.reasons.append(f"no xpu build of torch {b.release} for {m.platform} is known: the CPU build")
        elif m.no_gpu:
            plan.reasons.append("no GPU (--no-gpu): the CPU build")
        elif m.platform.startswith("macos"):
            plan.reasons.append("macOS wheels are CPU builds with Apple-GPU (MPS) support")
        else:
            plan.reasons.append("no GPU found: the CPU build")


def _index_reasons(plan: Plan, r: Release, b: Build) -> None:
    m = plan.machine
    pypi = r.builds[m.platform][0] if r.builds.get(m.platform) else None
    pypi_variant = pypi.variant if pypi and pypi.index_url is None else None
    if b.index_url is None:
        plan.reasons.append(f"plain PyPI `torch=={r.text}` is the {b.variant} build on {m.platform}: "
                            "no --index-url needed")
    else:
        plan.reasons.append(
            (f"PyPI's torch {r.text} for {m.platform} is the {pypi_variant} build" if pypi_variant
             else f"PyPI's torch {r.text} for {m.platform} is not this build")
            + f", so the command points pip at {b.index_url}"
        )
        if m.platform.startswith("windows") and b.kind == "cuda":
            plan.notes.append("on Windows, plain `pip install torch` is CPU-only: the --index-url is "
                              "what makes this a CUDA build")
        if b.kind == "cpu" and pypi_variant and pypi_variant.startswith("cu"):
            plan.notes.append(f"the CPU index avoids downloading PyPI's {pypi_variant} build and its "
                              "CUDA libraries (several GB) on a machine without an NVIDIA GPU")


def _notes(plan: Plan, ev: _Evaluation, newer: list[_Evaluation]) -> None:
    m, r, b = plan.machine, ev.release, ev.build
    for text in m.assumed:
        plan.notes.append(f"what-if: {text}")
    unused = [g for g in m.gpus if not m.no_gpu and g.vendor != {"cuda": "nvidia", "rocm": "amd",
                                                                  "xpu": "intel"}.get(b.kind, "")]
    if unused and b.kind in ("cuda", "rocm", "xpu"):
        plan.notes.append(
            f"{', '.join(g.label for g in unused)}: not used by this {b.variant} build (a torch build "
            "serves one GPU vendor); plan for it on its own with --gpu, in a separate environment")
    if newer:
        top = newer[0]
        what = "; ".join(f.message for f in top.failures)
        hardware = {"gpu.unsupported", "gpu.mixed", "platform.unsupported"}
        fixes = "; ".join(dict.fromkeys(f.fix for f in top.failures if f.kind not in hardware))
        todo = (f"To get it: {fixes}." if fixes and not any(f.kind in hardware for f in top.failures)
                else "It does not support this hardware/platform.")
        plan.notes.append(f"torch {top.release.text} is not installable here ({what}). {todo} "
                          f"You get {r.text} with {b.variant} now.")
    if b.kind == "cuda" and ev.driver_only:
        newer_cuda = [x for x, _ in ev.driver_only if (x.cuda_version or (0, 0)) > (b.cuda_version or (0, 0))]
        if newer_cuda:
            x = max(newer_cuda, key=_cuda_key)
            need = _driver_need(x, m)
            plan.notes.append(f"the {x.variant} build of torch {r.text} would need driver >= {need}")
    for extra in plan.extras:
        how = r.companions_how.get(extra, "")
        if "no release pins" in how:
            plan.notes.append(f"{extra} {r.companions[extra]} for torch {r.text}: {how}")
    if plan.extras and b.index_url:
        own = ", ".join(f"{k} {v}" for k, v in (b.companions or {}).items() if k in plan.extras)
        plan.notes.append(
            (f"{own}: this index's own pin (PyPI's newer companion is a build for another CUDA major). "
             if own else "")
            + f"the companion versions come from PyPI's METADATA; whether {b.index_url} carries them "
            "was not checked (`envcheck install --online` checks it)")
    if ev.cpu_fallback:
        plan.notes.append(f"no CPU-only build of torch {r.text} fits this glibc; PyPI's {b.variant} build "
                          "runs on CPUs too (it downloads CUDA libraries you will not use)")
    if m.free_threaded:
        plan.notes.append("free-threaded Python: torch marks these wheels experimental")
    if m.installed_torch:
        local = m.installed_torch.partition("+")[2]
        same_build = local == b.variant or (not local and b.index_url is None)
        if m.installed_torch.split("+")[0] == r.text and same_build:
            plan.already_installed = True
            plan.notes.append(f"torch {m.installed_torch} is already installed: it is already right, "
                              "nothing to do")
        else:
            plan.notes.append(f"torch {m.installed_torch} is installed; the command replaces it with "
                              f"{r.text} ({b.variant})")
    if plan.commands.get("conda"):
        plan.notes.append(commands.conda_note(r.text))


# How hard each kind of change is for the user, to find the smallest fix: dropping a companion
# is a flag; another Python or a driver upgrade is routine; a newer OS is a migration; another
# GPU or platform is new hardware.
_COST = {"companion.unavailable": 1, "companion.python": 1, "python.unsupported": 2,
         "driver.too-old": 2, "glibc.too-old": 4, "macos.too-old": 4, "gpu.mixed": 8, "gpu.unsupported": 10, "platform.unsupported": 10}


def _cost(ev: _Evaluation) -> int:
    return sum(_COST.get(kind, 5) for kind in {f.kind for f in ev.failures}) or 99


def _fill_blockers(plan: Plan, evaluations: list[_Evaluation], spec) -> None:
    """Nothing fits: report the failures of the newest near miss, the release needing the
    cheapest changes (see _COST)."""
    cheapest = min(_cost(ev) for ev in evaluations)
    near = next(ev for ev in evaluations if _cost(ev) == cheapest)
    seen = set()
    for f in near.failures:
        if (f.kind, f.message) in seen:
            continue
        seen.add((f.kind, f.message))
        plan.blockers.append(Blocker(f.kind, f.message, f.fix))
    if near is not evaluations[0]:
        plan.notes.append(f"the blockers are those of torch {near.release.text}, the newest release "
                          "that needs the smallest changes here")
    if spec is not None:
        unconstrained = recommend(plan.machine, None, plan.extras)
        if unconstrained.ok:
            plan.notes.append(f"outside --torch {spec}, torch {unconstrained.torch} "
                              f"({unconstrained.variant}) fits this machine as it is")
