"""Exact install commands for a plan: pip, uv, and conda where it applies (pure).

pip and uv get the same pinned requirements and the same index; conda gets conda syntax only
(channels with -c, match specs), never pip options, so no command mixes the two worlds (the
classic broken tutorial line `pip install torch cudatoolkit=11.3 -f ...` hands a conda spec to pip).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from packaging.version import Version

from envcheck.recommend import data

if TYPE_CHECKING:  # pragma: no cover
    from envcheck.recommend.data import Build
    from envcheck.recommend.engine import Plan


def pip_args(torch: str, companions: dict, index_url: str | None) -> list[str]:
    """What follows ``pip install``: pinned packages, then the index when PyPI's build is wrong."""
    args = [f"torch=={torch}"] + [f"{name}=={ver}" for name, ver in companions.items() if ver]
    if index_url:
        args += ["--index-url", index_url]
    return args


def _quote(text: str, windows: bool) -> str:
    if windows:
        return f'"{text}"' if any(c in text for c in ' &()^%!"') else text
    return shlex.quote(text)


def python_command(plan: Plan) -> str:
    """How to call the target interpreter: its path when probed, else the usual launcher."""
    m = plan.machine
    windows = (m.platform or "").startswith("windows")
    if m.executable:
        return _quote(m.executable, windows)
    if m.python:
        ver = m.python + ("t" if m.free_threaded else "")
        return f"py -{ver}" if windows else f"python{ver}"
    return "python"


def all_commands(plan: Plan, build: Build) -> dict:
    m = plan.machine
    windows = (m.platform or "").startswith("windows")
    args = " ".join(_quote(a, windows) for a in plan.pip_args)
    py = python_command(plan)
    pip = f"{py} -m pip install {args}"
    if m.externally_managed:
        # PEP 668: pip refuses the system Python ("externally-managed-environment"); a venv of
        # the user's own is the fix pip itself suggests.
        pip = f"{py} -m venv ~/.venvs/torch && ~/.venvs/torch/bin/python -m pip install {args}"
    if m.executable:
        uv_python = _quote(m.executable, windows)
    elif m.python:
        uv_python = m.python + ("t" if m.free_threaded else "")
    else:
        uv_python = None
    uv = "uv pip install " + (f"--python {uv_python} " if uv_python else "") + args
    return {"pip": pip, "uv": uv, "conda": conda_command(plan, build)}


def conda_command(plan: Plan, build: Build) -> str | None:
    """conda/mamba equivalent, or None where no conda channel ships this build.

    Up to torch 2.5.1 the official `pytorch` channel (with `pytorch-cuda=X.Y -c nvidia`, or
    `cpuonly`) -- pytorch.org previous-versions; the channel stopped after 2.5
    (pytorch/pytorch#138506). From 2.6 on: conda-forge (`pytorch-gpu` / `pytorch-cpu`), whose
    builds are conda-forge's own (not checked by envcheck).
    """
    recipe = data.conda_recipe()
    m = plan.machine
    version = Version(plan.torch)
    companions = " ".join(f"{n}=={v}" for n, v in plan.companions.items() if v)
    official = recipe.get("official_channel", {})
    # A CUDA build picked for a machine without a GPU (old glibc fallback): conda's CPU package.
    kind = build.kind if (m.nvidia_gpus or m.amd_gpus) else "cpu"
    if version <= Version(official.get("last_release", "0")):
        if m.platform not in official.get("platforms", []):
            return None
        minor = f"{version.major}.{version.minor}"
        if kind == "cuda":
            if build.cuda not in official.get("pytorch_cuda", {}).get(minor, []):
                return None
            extra, channels = f"pytorch-cuda={build.cuda}", "-c pytorch -c nvidia"
        elif kind == "cpu":
            extra = "" if m.platform.startswith("macos") else "cpuonly"
            channels = "-c pytorch"
        else:
            return None
        parts = [f"conda install pytorch=={plan.torch}", companions, extra, channels]
        return " ".join(p for p in parts if p)
    forge = recipe.get("conda_forge", {})
    if m.platform not in forge.get("platforms", []) or kind not in ("cuda", "cpu"):
        return None
    if m.platform.startswith("macos"):
        package = "pytorch"
    else:
        package = "pytorch-gpu" if kind == "cuda" else "pytorch-cpu"
    parts = [f"conda install -c conda-forge {package}=={plan.torch}", companions]
    return " ".join(p for p in parts if p)


def conda_note(torch: str) -> str:
    recipe = data.conda_recipe()
    last = recipe.get("official_channel", {}).get("last_release", "0")
    if Version(torch) <= Version(last):
        return ("conda: the official `pytorch` channel stopped after 2.5 (pytorch/pytorch#138506); "
                "the command above is the one pytorch.org gave for this release")
    return ("conda: conda-forge builds torch itself (its own CUDA versions and arch lists); envcheck "
            "checked the pip wheels, not conda-forge's packages, and cannot confirm this exact version "
            "is on conda-forge")
