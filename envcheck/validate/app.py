"""What ``envcheck validate`` does between parsing options and printing: checks the options
against the machine, then runs. Torch-free (the worker imports torch); the CLI stays wiring.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from envcheck import redact
from envcheck.validate import forkserver, output, runner
from envcheck.validate.config import (
    CHECK_NAMES,
    DEFAULT_BURN_IN_S,
    PROFILES,
    QUICK_BUDGET_S,
    QUICK_CHECKS,
    MiB,
    ValidateConfig,
)


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
            timeout: float | None = None, python: str | None = None, pool: Any = None) -> Prepared:
    """Import torch in a worker and probe the machine at the same time (both mostly wait).

    The preflight is the run's one torch import before the checks: the machine probes do not
    import torch (the summary takes torch's facts from the preflight). ``timeout`` bounds the
    torch import: the run's --budget when it has one, else runner.PREFLIGHT_TIMEOUT_S. With a
    ``pool`` (forkserver.Pool) the fork server's import is that one import."""
    timeout = float(timeout or runner.PREFLIGHT_TIMEOUT_S)
    box: dict[str, Any] = {}

    def probe() -> None:
        t = time.perf_counter()
        box["machine"] = runner.collect_machine(min(60.0, timeout), python=python)
        box["machine_s"] = round(time.perf_counter() - t, 3)

    thread = threading.Thread(target=probe, daemon=True) if machine else None
    if thread:
        thread.start()
    try:
        with runner.sigterm_as_interrupt():
            pre = runner.preflight(isolation=isolation, device=device, timeout=timeout, python=python, pool=pool)
            if thread:
                thread.join(timeout=min(90.0, timeout))
    except KeyboardInterrupt:  # the report must still be written: see runner.failed_report
        pre = runner.Preflight(False, {}, runner.INTERRUPTED_BEFORE_CHECKS)
    found = runner.with_torch(box.get("machine", {}), pre.info) if pre.ok else box.get("machine", {})
    return Prepared(pre, found, {"preflight_s": pre.seconds, "machine_s": box.get("machine_s"),
                                 "workers": {"preflight": pre.worker}})


@dataclass(frozen=True)
class Request:
    """Every option of ``envcheck validate`` that is not about output (see cli.py)."""

    checks_spec: str | None = None
    profile: str | None = None
    quick: bool = False
    budget: float | None = None
    gpus: int | None = None
    procs: int | None = None
    duration: float | None = None
    device: str | None = None
    timeout: float = 120.0
    allreduce_max_mib: int | None = None
    isolation: str = "subprocess"
    straggler_threshold: float = 0.10
    pairwise: bool = False
    python: str | None = None


def _check_request(req: Request, outputs: output.Outputs, env: Mapping[str, str]) -> tuple[Plan, Any, Any]:
    """Every usage check that needs no torch: (the plan, the launch or None, the target
    interpreter). UsageProblem."""
    from envcheck import outfile
    from envcheck.cluster import launch

    p = plan(req.checks_spec, req.profile, quick=req.quick, budget=req.budget)
    check_static(device=req.device, gpus=req.gpus, procs=req.procs, profile=p.profile, duration=req.duration)
    try:
        outputs.check()
    except (outfile.OutputError, ValueError) as exc:
        raise UsageProblem(str(exc)) from None
    try:
        launched = launch.detect(env)
    except launch.LaunchError as exc:
        raise UsageProblem(f"torchrun/srun environment: {exc}") from None
    check_pairwise(req.pairwise, launched=launched is not None, checks=p.checks)
    if launched is not None and (req.gpus is not None or req.procs is not None):
        raise UsageProblem("--gpus/--procs do not apply under torchrun/srun: every task is one rank")
    from envcheck import target  # which interpreter is judged: doctor and install decide it alike

    try:
        judged = target.resolve(req.python, env=env)
    except target.TargetError as exc:
        raise UsageProblem(str(exc)) from None
    return p, launched, judged


def _same_interpreter(a: str, b: str) -> bool:
    """Same interpreter in the same environment (a venv's bin/python and bin/python3 are; the
    base interpreter a venv links to is not: it lacks the venv's packages)."""
    import os

    try:
        return os.path.dirname(os.path.abspath(a)) == os.path.dirname(os.path.abspath(b)) and os.path.samefile(a, b)
    except OSError:
        return False


def main(req: Request, outputs: output.Outputs, *, env: Mapping[str, str], write: Callable[[str], None],
         progress: Callable[[str], None], listener: runner.Listener | None = None) -> int:
    """The whole of ``envcheck validate``: usage checks (UsageProblem, before any work), then
    the local mode, or one rank of a torchrun/srun job. Returns the exit code."""
    p, launched, judged = _check_request(req, outputs, env)
    own = _same_interpreter(judged.executable, sys.executable)
    if not own or req.python is not None:
        progress(f"validate: the workload runs under {judged.executable} ({judged.reason}); "
                 "choose another with --python PATH")
    req = dataclasses.replace(req, python=None if own else judged.executable)
    if launched is not None:
        from envcheck.validate.distributed import mode

        opts = mode.Options(checks=p.checks, profile=p.profile, device=req.device, duration=req.duration,
                            timeout=req.timeout, allreduce_max_mib=req.allreduce_max_mib, isolation=req.isolation,
                            straggler_threshold=req.straggler_threshold, budget=p.budget, pairwise=req.pairwise,
                            python=req.python)
        return mode.main(launched, opts, outputs, write=write, progress=progress)
    return run_local(req, p, outputs, write=write, progress=progress, listener=listener)


def run_local(req: Request, p: Plan, outputs: output.Outputs, *, write: Callable[[str], None],
              progress: Callable[[str], None], listener: runner.Listener | None = None) -> int:
    """This machine: one worker per check, the all-reduce ranks; the report always written."""
    started = time.perf_counter()
    deadline = time.monotonic() + p.budget if p.budget else None
    progress("validate: importing torch and probing the machine..." + (f" (budget {p.budget:g} s)" if p.budget else ""))
    with forkserver.Pool(req.python, enabled=req.isolation == "subprocess") as pool:
        prep = prepare(isolation=req.isolation, device=req.device, timeout=p.budget, python=req.python, pool=pool)
        persist = output.persister(outputs, progress)
        if not prep.preflight.ok:
            cfg = ValidateConfig(device=req.device or "cpu", profile=p.profile, budget=p.budget)
            report = runner.failed_report(cfg, p.checks, prep.preflight.error or "torch is not usable",
                                          machine=prep.machine)
            progress(f"envcheck: validate needs a working torch: {redact.scrub_text(str(prep.preflight.error))} "
                     "(`envcheck install` prints the right install command)")
        else:
            cfg = resolve(prep.preflight.info, device=req.device, gpus=req.gpus, procs=req.procs,
                          profile=p.profile, duration=req.duration, timeout=req.timeout,
                          allreduce_max_mib=req.allreduce_max_mib, budget=p.budget)
            report = runner.run(cfg, p.checks, prep.preflight.info, isolation=req.isolation, listener=listener,
                                persist=persist, machine=prep.machine, timings=prep.timings, deadline=deadline,
                                python=req.python, pool=pool)
    report.timings["total_s"] = round(time.perf_counter() - started, 3)
    return output.emit(report.to_dict(), outputs, write=write, progress=progress)
