"""What ``envcheck validate`` does between parsing options and printing: checks the options
against the machine, then runs. Torch-free (the worker imports torch); the CLI stays wiring.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from envcheck.validate import runner
from envcheck.validate.config import (
    CHECK_NAMES,
    DEFAULT_BURN_IN_S,
    PROFILES,
    QUICK_BUDGET_S,
    QUICK_CHECKS,
    MiB,
    ValidateConfig,
)
from envcheck.validate.results import ValidationReport


class UsageProblem(ValueError):
    """Options that cannot work on this machine (exit 2, one line)."""


def parse_checks(spec: str | None) -> list[str]:
    """``"cnn,gemm"`` -> ["cnn", "gemm"] in the canonical order; None/"all" -> all six."""
    if not spec or spec.strip().lower() == "all":
        return list(CHECK_NAMES)
    wanted = [s.strip().lower() for s in spec.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in CHECK_NAMES]
    if unknown:
        raise UsageProblem(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECK_NAMES)} (or all)")
    if not wanted:
        raise UsageProblem(f"--checks is empty; choose from {', '.join(CHECK_NAMES)} (or all)")
    return [c for c in CHECK_NAMES if c in wanted]


@dataclass(frozen=True)
class Plan:
    """What to run and for how long, from --checks/--profile/--quick/--budget."""

    checks: list[str]
    profile: str
    budget: float | None


def plan(checks_spec: str | None, profile: str | None, *, quick: bool = False,
         budget: float | None = None) -> Plan:
    """``--quick`` is the health-check set at ``--profile quick`` inside a 50 s budget;
    ``--checks`` narrows it, ``--budget`` changes the budget, ``--profile`` conflicts with it."""
    if quick and profile not in (None, "quick"):
        raise UsageProblem(f"--quick runs --profile quick; drop --profile {profile}")
    checks = parse_checks(checks_spec) if checks_spec or not quick else list(QUICK_CHECKS)
    if quick:
        return Plan(checks, "quick", QUICK_BUDGET_S if budget is None else float(budget))
    return Plan(checks, profile or "standard", None if budget is None else float(budget))


def check_pairwise(pairwise: bool, *, launched: bool, checks: list[str]) -> None:
    """--pairwise runs inside the all-reduce of a torchrun/srun job, nowhere else."""
    if pairwise and not launched:
        raise UsageProblem("--pairwise pairs the nodes of a multi-node job: start envcheck validate under "
                           "torchrun or srun (README: Clusters)")
    if pairwise and "allreduce" not in checks:
        raise UsageProblem("--pairwise is part of the allreduce check: add allreduce to --checks")


def check_static(*, device: str | None, gpus: int | None, procs: int | None, profile: str,
                 duration: float | None) -> None:
    """Option combinations that are wrong on any machine."""
    if profile not in PROFILES:
        raise UsageProblem(f"--profile must be one of {', '.join(PROFILES)}")
    if duration is not None and profile != "burn-in":
        raise UsageProblem("--duration only applies to --profile burn-in")
    if device == "cpu" and gpus is not None:
        raise UsageProblem("--gpus selects CUDA devices; with --device cpu the all-reduce ranks are set with --procs")
    if device == "cuda" and procs is not None:
        raise UsageProblem("--procs sets CPU all-reduce ranks; on GPUs there is one rank per device (--gpus N)")


def resolve(info: dict[str, Any], *, device: str | None, gpus: int | None, procs: int | None, profile: str,
            duration: float | None, timeout: float, allreduce_max_mib: int | None,
            seed: int = 1234, budget: float | None = None) -> ValidateConfig:
    """The run's config from the options and what torch sees (``info`` from the preflight)."""
    count = int(info.get("device_count") or 0)
    names = sorted({str(d.get("name")) for d in info.get("devices") or []})
    seen = f"{count} CUDA device(s) visible" + (f" ({', '.join(names)})" if names else "")
    if count == 0:
        why = info.get("cuda_error") or (
            f"torch {info.get('torch')} is a CPU-only build" if not info.get("cuda") else
            "no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them")
        seen = f"0 CUDA devices visible to torch ({why})"
    if gpus is not None and gpus > count:
        raise UsageProblem(f"--gpus {gpus}: {seen}" + ("; run without --gpus to validate the CPU path" if count == 0
                                                        else f"; use --gpus 1..{count}"))
    if device == "cuda" and count == 0:
        raise UsageProblem(f"--device cuda: {seen}")
    dev = device or ("cuda" if count > 0 else "cpu")
    if dev == "cuda" and procs is not None:
        raise UsageProblem("--procs sets CPU all-reduce ranks; on GPUs there is one rank per device (--gpus N)")
    cfg = ValidateConfig(device=dev, profile=profile, timeout=float(timeout), seed=seed, budget=budget,
                         duration=(float(duration) if duration is not None else
                                   (DEFAULT_BURN_IN_S if profile == "burn-in" else None)))
    if dev == "cuda":
        cfg.ndevices = gpus or count
    elif procs is not None:
        cfg.procs = procs
    if allreduce_max_mib is not None:
        cfg.allreduce_max_bytes = int(allreduce_max_mib) * MiB
    return cfg


@dataclass
class Prepared:
    """The preflight result and the machine summary, gathered concurrently."""

    preflight: runner.Preflight
    machine: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)


def prepare(isolation: str = "subprocess", device: str | None = None, machine: bool = True,
            timeout: float | None = None) -> Prepared:
    """Import torch in a worker and probe the machine at the same time (both mostly wait).

    ``timeout`` bounds the torch import: the run's --budget when it has one, else
    runner.PREFLIGHT_TIMEOUT_S."""
    timeout = float(timeout or runner.PREFLIGHT_TIMEOUT_S)
    box: dict[str, Any] = {}

    def probe() -> None:
        t = time.perf_counter()
        box["machine"] = runner.collect_machine(min(60.0, timeout))
        box["machine_s"] = round(time.perf_counter() - t, 3)

    thread = threading.Thread(target=probe, daemon=True) if machine else None
    if thread:
        thread.start()
    try:
        with runner.sigterm_as_interrupt():
            pre = runner.preflight(isolation=isolation, device=device, timeout=timeout)
            if thread:
                thread.join(timeout=min(90.0, timeout))
    except KeyboardInterrupt:  # the report must still be written: see runner.failed_report
        pre = runner.Preflight(False, {}, runner.INTERRUPTED_BEFORE_CHECKS)
    return Prepared(pre, box.get("machine", {}), {"preflight_s": pre.seconds, "machine_s": box.get("machine_s")})


def outputs_writer(report_path: str | None, junit_path: str | None,
                   on_error: Callable[[str], None]) -> Callable[[ValidationReport], None]:
    """persist(report): the JSON report and the JUnit file, each written atomically."""
    from envcheck.report import validate as render

    said: set[str] = set()

    def persist(report: ValidationReport) -> None:
        for path, text in ((report_path, render.to_json), (junit_path, render.to_junit)):
            if not path:
                continue
            try:
                runner.write_atomic(path, text(report))
            except OSError as exc:
                line = f"envcheck: cannot write {path}: {exc.strerror or exc}"
                if line not in said:  # once, not after every check
                    said.add(line)
                    on_error(line)

    return persist
