"""Probe: environment variables, through an allowlist.

Only names that change how CUDA, NCCL, PyTorch, compilers or launchers behave are read;
everything else (PATH, HOME, shell state, cloud credentials) is never looked at, because
doctor output gets pasted into public issues (an allowlist rather than a blocklist is what
reviewers asked of similar dumps: vllm-project/vllm#9293).

Section shape::

    {"vars": {"NCCL_DEBUG": "WARN", ...},   # allowlisted names that are set, with their value
     "redacted": ["NCCL_IB_PKEY", ...]}     # allowlisted names whose value was dropped

A name that looks secret (``*TOKEN*``, ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``, ...) is never
recorded even when a prefix allowlists it; a value that looks like a credential is dropped.
URL variables (pip index URLs) keep their value with the user info replaced by ``***``.

PATH is deliberately not recorded: it is long, personal (home directories), and no rule
needs it; the probes find compilers and interpreters themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from envcheck import redact

# Exact names. Each one is read by CUDA, NCCL, torch, a launcher, or names the interpreter.
NAMES = frozenset({
    # device selection and CUDA runtime behaviour
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING",
    "CUDA_DEVICE_MAX_CONNECTIONS", "CUDA_CACHE_PATH", "CUDA_CACHE_DISABLE", "CUBLAS_WORKSPACE_CONFIG",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    # where CUDA and shared libraries come from (LD_LIBRARY_PATH can shadow the wheel's libraries:
    # pytorch/pytorch#111469)
    "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "LD_LIBRARY_PATH", "LD_PRELOAD",
    # threads
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    # torch.distributed / torchrun rendezvous
    "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
    "GROUP_RANK", "GROUP_WORLD_SIZE",
    # Slurm job topology (not SLURM_* wholesale: job names, accounts, user names are personal)
    "SLURM_JOB_ID", "SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE",
    "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NODELIST", "SLURM_JOB_PARTITION",
    "SLURM_CPUS_PER_TASK", "SLURM_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE",
    "SLURM_GPUS_PER_TASK", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS",
    # which interpreter and packages
    "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME",
    "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
    "PIP_CONSTRAINT", "PIP_NO_CACHE_DIR",
    # model caches
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE",
    # compilers used by torch.compile
    "CC", "CXX",
})

# Prefixes of variables owned by the libraries envcheck diagnoses.
PREFIXES = (
    "NCCL_", "TORCH_", "PYTORCH_", "TORCHINDUCTOR_", "TORCHELASTIC_", "TORCHDYNAMO_",
    "TRITON_", "NVIDIA_", "CUDNN_", "NVTE_",
)

# Values that are URLs: the user info is stripped, the rest kept (the index host matters).
URL_NAMES = frozenset({"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"})


def allowlisted(name: str) -> bool:
    return name in NAMES or name.startswith(PREFIXES)


def probe(environ: Mapping[str, str] | None = None) -> dict:
    """Allowlisted variables that are set, minus anything that looks like a credential."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    redacted: list[str] = []
    for name in sorted(env):
        if not allowlisted(name):
            continue
        value = str(env[name])
        if redact.is_secret_name(name):
            redacted.append(name)
            continue
        if name in URL_NAMES:
            value = redact.strip_url_credentials(value)
        if redact.looks_secret(value):
            redacted.append(name)
            continue
        out[name] = value
    return {"vars": out, "redacted": redacted}
