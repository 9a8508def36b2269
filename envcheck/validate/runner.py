"""Run the selected checks, each isolated, and always produce a report.

Isolation (default ``subprocess``): every check runs in its own worker process and session
(:mod:`envcheck.validate.worker`), so a crash, an OOM, a CUDA error that poisons the
context or a hang fails that check only; the worker and all its descendants are killed
when it ends, stalls (no progress event for ``timeout + 60`` s) or the run is interrupted.
``inprocess`` runs checks in this process (exceptions are still isolated; crashes are
not): for tests, and for the cluster mode where this process already is a torchrun rank.

The report is handed to ``persist`` after every check and at the end, also on Ctrl-C or
SIGTERM, so a report file exists whatever happens to the run. Nothing here imports torch.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from envcheck import proc, recipes
from envcheck import snapshot as snap
from envcheck.validate import certify as cert
from envcheck.validate import errors, forkserver, procs, watch
from envcheck.validate.checks import REGISTRY
from envcheck.validate.config import ValidateConfig
from envcheck.validate.results import FAIL, SKIP, CheckResult, ValidationReport

STALL_GRACE_S = 60.0  # on top of --timeout: lets the all-reduce's own watchdog report first
PREFLIGHT_TIMEOUT_S = 300.0  # a cold first `import torch` took 21 s on the CI host


class Listener:
    """Progress callbacks; the default does nothing."""

    def start(self, name: str, index: int, total: int) -> None: ...

    def progress(self, name: str, fraction: float, note: str) -> None: ...

    def end(self, result: CheckResult) -> None: ...


@dataclass
class Preflight:
    ok: bool
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    worker: str = "fresh"  # how the preflight's worker was started: "forked" or "fresh[: why]"


def _event(line: bytes) -> dict[str, Any]:
    """One JSON event line of a worker; {} for anything else (a library's stray output)."""
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def start_worker(request: dict[str, Any], env: dict[str, str], python: str | None,
                 pool: forkserver.Pool | None, deadline: float | None = None) -> tuple[proc.Child, str]:
    """A worker answering ``request``: forked by the run's fork server when it can, else a fresh
    interpreter (``python``). Returns the child and how it started ("forked" or "fresh[: why]").
    Raises OSError (a fresh worker cannot start) and forkserver.ServerFailed (no torch)."""
    why = ""
    if pool is not None:
        try:
            return pool.start(request, env, deadline), "forked"
        except forkserver.Unavailable as exc:
            why = f": {exc}"
    child = proc.start(procs.argv("envcheck.validate.worker", python=python), env=env,
                       stdin=json.dumps(request).encode())
    return child, "fresh" + why


def preflight(isolation: str = "subprocess", timeout: float = PREFLIGHT_TIMEOUT_S,
              device: str | None = None, python: str | None = None,
              pool: forkserver.Pool | None = None) -> Preflight:
    """Import torch (in a worker under ``python``, default this interpreter; or in the fork
    server of ``pool``, whose forked child answers) and describe it and its devices. The one
    torch import of a run's set-up."""
    t0 = time.perf_counter()
    if isolation == "inprocess":
        try:
            from envcheck.validate import worker

            return Preflight(True, worker.preflight(), None, round(time.perf_counter() - t0, 3))
        except Exception as exc:  # noqa: BLE001 - a broken torch is a finding
            return Preflight(False, {}, f"torch is not usable here: {type(exc).__name__}: {exc}",
                             round(time.perf_counter() - t0, 3))
    exe = python or sys.executable
    deadline = time.monotonic() + timeout
    env = procs.child_env(procs.expected_device(device) if pool is not None else device)
    try:
        child, kind = start_worker({"mode": "info"}, env, python, pool, deadline)
    except OSError as exc:
        return Preflight(False, {}, f"cannot run {exe}: {exc.strerror or exc}", round(time.perf_counter() - t0, 3))
    except forkserver.ServerFailed as failed:
        return _no_torch(exe, timeout, failed.hung, failed.returncode, failed.tail, t0, "forked")
    box: dict[str, Any] = {}
    with proc.Supervisor([child], deadline=deadline) as sup:
        reason = sup.watch(on_line=lambda _i, line: box.update(_event(line)),
                           poll=lambda: box.get("event") == "info", settle_s=5.0)
        tail = child.stderr_tail()
    if box.get("event") == "info":
        return Preflight(True, box["info"], None, round(time.perf_counter() - t0, 3), kind)
    return _no_torch(exe, timeout, reason == "deadline", child.returncode, tail, t0, kind)


def _no_torch(exe: str, timeout: float, hung: bool, returncode: int | None, tail: str, t0: float,
              kind: str) -> Preflight:
    """The failed preflight: torch hung or could not be imported (the last line of stderr)."""
    seconds = round(time.perf_counter() - t0, 3)
    if hung:
        return Preflight(False, {}, f"importing torch did not finish within {timeout:g} s (hung)", seconds, kind)
    msg, _ = errors.describe_exit(returncode if returncode is not None else -9, tail)
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    why = lines[-1].strip() if lines else msg
    return Preflight(False, {}, f"torch is not usable in {exe}: {why}", seconds, kind)


def machine_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The few snapshot facts a validation report needs (pure)."""
    g = snap.get
    gpus = []
    for gpu in g(snapshot, "nvidia.gpus", []) or []:
        if not isinstance(gpu, dict):
            continue
        pcie = snap.val(gpu.get("pcie"), {}) or {}
        gpus.append({
            "index": gpu.get("index"),
            "name": snap.val(gpu.get("name")),
            "memory_total_bytes": snap.get(gpu, "memory.total_bytes"),
            "compute_capability": snap.val(gpu.get("compute_capability")),
            "pcie": (f"gen{pcie.get('gen_current')} x{pcie.get('width_current')}"
                     if pcie.get("gen_current") is not None else None),
            "uuid": snap.val(gpu.get("uuid")),
        })
    return {
        "hostname": g(snapshot, "host.hostname"),
        "os": g(snapshot, "host.os.distro") or g(snapshot, "host.os.system"),
        "kernel": g(snapshot, "host.kernel"),
        "cpu": g(snapshot, "host.cpu.model"),
        "cpu_cores": g(snapshot, "host.cpu.logical_cores"),
        "ram_bytes": g(snapshot, "host.ram.total_bytes"),
        "container": g(snapshot, "host.container.kind"),
        "driver_version": g(snapshot, "nvidia.driver_version"),
        "cuda_driver_version": g(snapshot, "nvidia.cuda_driver_version"),
        "nvml": g(snapshot, "nvidia.nvml.status"),
        "gpus": gpus,
        "torch": {"status": g(snapshot, "torch.status"), "version": g(snapshot, "torch.version"),
                  "cuda": g(snapshot, "torch.cuda")},
        "python": g(snapshot, "python.version"),
    }


def collect_machine(timeout: float = 60.0, python: str | None = None) -> dict[str, Any]:
    """A machine summary from the doctor's probes, without importing torch (the preflight
    does: :func:`with_torch`); never raises."""
    try:
        from envcheck import probes

        return machine_summary(probes.collect(python=python, torch_timeout=timeout, import_torch=False))
    except Exception as exc:  # noqa: BLE001 - the summary is context, not a check
        return {"unavailable": f"probes failed: {type(exc).__name__}: {exc}"}


def with_torch(machine: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The machine summary with torch's facts from the preflight (the one torch import)."""
    if not machine or "unavailable" in machine:
        return machine
    return {**machine, "torch": {"status": "ok", "version": info.get("torch"), "cuda": info.get("cuda")}}


def versions(info: dict[str, Any]) -> dict[str, Any]:
    from envcheck import __version__

    dist = info.get("distributed") or {}
    # python_executable: the interpreter whose torch was validated (envcheck.target chose it)
    return {"envcheck": __version__, "python": info.get("python"), "python_executable": info.get("executable"),
            "torch": info.get("torch"),
            "cuda": info.get("cuda"), "cudnn": info.get("cudnn"), "nccl": info.get("nccl"),
            "hip": info.get("hip"), "triton": info.get("triton"), "gloo": dist.get("gloo")}


def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, a timeout) ends the run like Ctrl-C: report still written."""
    return proc.sigterm_raises(lambda _signum: KeyboardInterrupt())


def out_of_budget(name: str, budget: float | None, note: str = "") -> CheckResult:
    """The result of a check that was still running when the run's time budget ran out."""
    return CheckResult(name, FAIL, {}, f"did not finish within the run's {budget or 0:g} s budget"
                       + (f" (last: {note})" if note else "") + "; its processes were killed",
                       error={"kind": "budget", "type": "BudgetExceeded", "message": note, "traceback": ""})


class _Watched:
    """What a check's worker said, event by event (its stdout lines)."""

    def __init__(self, name: str, listener: Listener, sup: proc.Supervisor) -> None:
        self.name, self.listener, self.sup = name, listener, sup
        self.note = "starting"
        self.result: CheckResult | None = None

    def line(self, _index: int, raw: bytes) -> None:
        self.sup.moved()  # any line is progress
        event = _event(raw)
        if event.get("event") == "progress":
            self.note = str(event.get("note") or self.note)
            self.listener.progress(self.name, float(event.get("fraction") or 0.0), self.note)
        elif event.get("event") == "result":
            self.result = CheckResult.from_dict(event["result"])


def _run_subprocess(name: str, config: ValidateConfig, info: dict[str, Any], listener: Listener,
                    stall_s: float, deadline: float | None = None, python: str | None = None,
                    env: dict[str, str] | None = None,
                    pool: forkserver.Pool | None = None) -> tuple[CheckResult, str]:
    """One check in its own worker; (its result, how the worker started)."""
    request = {"mode": "check", "check": name, "config": config.to_dict(), "info": info}
    try:
        child, kind = start_worker(request, {**procs.child_env(config.device), **(env or {})}, python, pool,
                                   deadline)
    except forkserver.ServerFailed:  # a restarted server could not import torch: a fresh worker says why
        child, kind = start_worker(request, {**procs.child_env(config.device), **(env or {})}, python, None,
                                   deadline)
        kind += ": the fork server could not import torch"
    with proc.Supervisor([child], deadline=deadline, stall_s=stall_s) as sup:
        seen = _Watched(name, listener, sup)
        reason = sup.watch(on_line=seen.line, poll=lambda: seen.result is not None)
        tail = child.stderr_tail()
    if seen.result is not None:
        return seen.result, kind
    if reason == "deadline":
        return out_of_budget(name, config.budget, seen.note), kind
    if reason == "stall":
        return CheckResult(name, FAIL, {}, f"no progress for {stall_s:g} s (last: {seen.note}): the check hung; "
                           "its processes were killed",
                           error={"kind": "hang", "type": "Stall", "message": seen.note, "traceback": ""}), kind
    msg, error = errors.describe_exit(child.returncode if child.returncode is not None else -9, tail)
    return CheckResult(name, FAIL, {}, msg, error=error), kind


@dataclass
class _Run:
    """One run's fixed inputs: how each check is started and where the report goes."""

    config: ValidateConfig
    checks: list[str]
    info: dict[str, Any]
    isolation: str
    listener: Listener
    persist: Callable[[ValidationReport], None] | None
    registry: dict
    stall_s: float
    deadline: float | None
    python: str | None
    env: dict[str, str]
    pool: forkserver.Pool | None = None
    workers: dict[str, str] = field(default_factory=dict)

    def save(self, report: ValidationReport, final: bool) -> None:
        if self.persist is None:
            return
        try:
            self.persist(report if final else _as_if_stopped(report, self.checks))
        except Exception:  # noqa: BLE001 - a failed write must not end the run; the CLI reports it
            if final:
                raise

    def one(self, name: str) -> CheckResult:
        """Run (or skip) one check, isolated as asked, with NVML watched while it runs (issue 16:
        a new DBE, a hardware XID or throttling under load is judged into its result)."""
        watching = watch.begin(self.config.device, self.config.ndevices)
        return watch.finish(watching, self._one(name))

    def _one(self, name: str) -> CheckResult:
        why = self.registry[name].unmet(self.config, self.info)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return CheckResult(name, SKIP, {}, f"not run: the run's {self.config.budget or 0:g} s budget was spent")
        if why:
            return CheckResult(name, SKIP, {}, why)
        if self.isolation == "inprocess":
            from envcheck.validate import worker

            return worker.execute(name, self.config, self.info,
                                  lambda f, n="": self.listener.progress(name, f, n), registry=self.registry)
        result, self.workers[name] = _run_subprocess(name, self.config, self.info, self.listener, self.stall_s,
                                                     self.deadline, python=self.python, env=self.env,
                                                     pool=self.pool)
        return result


def new_report(config: ValidateConfig, info: dict[str, Any], machine: dict[str, Any] | None,
               timings: dict[str, Any] | None) -> ValidationReport:
    """An empty report for this run (devices, options, versions, machine)."""
    if config.device == "cuda":
        devices = [dict(d) for d in (info.get("devices") or [])[: config.ndevices]]
    else:
        devices = [{"index": 0, "name": (machine or {}).get("cpu") or "cpu"}]
    report = ValidationReport(device=config.device, devices=devices, world_size=config.world_size,
                              profile=config.profile, options=config.to_dict(), versions=versions(info),
                              machine=dict(machine or {}))
    report.timings = {**(timings or {}), "checks": {}, "workers": dict((timings or {}).get("workers") or {})}
    return report


def _interrupted(report: ValidationReport, current: str | None, checks: list[str], listener: Listener) -> None:
    """Ctrl-C/SIGTERM: the running check failed, the others were not run."""
    report.interrupted = True
    if current is not None:
        result = CheckResult(current, FAIL, {}, "interrupted (Ctrl-C or SIGTERM) while running; "
                             "its processes were killed",
                             error={"kind": "interrupted", "type": "KeyboardInterrupt", "message": "",
                                    "traceback": ""})
        report.checks.append(result)
        listener.end(result)


def run(
    config: ValidateConfig,
    checks: list[str],
    info: dict[str, Any],
    *,
    isolation: str = "subprocess",
    listener: Listener | None = None,
    persist: Callable[[ValidationReport], None] | None = None,
    machine: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    registry: dict | None = None,
    stall_grace: float = STALL_GRACE_S,
    deadline: float | None = None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    pool: forkserver.Pool | None = None,
) -> ValidationReport:
    """Run ``checks`` in order and return the certified report (also on Ctrl-C/SIGTERM).

    ``registry`` replaces the check table (in-process tests); ``stall_grace`` is added to
    ``config.timeout`` for the stall watchdog of subprocess workers. ``deadline``
    (``time.monotonic()``; the end of ``config.budget``) stops the run: the check running then
    fails and is killed (subprocess isolation; in-process it finishes first), and the checks
    not started are skipped. ``python``: the interpreter of the workers (default this one);
    ``env``: variables set for the workers only (this process's environment is not changed);
    ``pool``: the run's fork server (:mod:`envcheck.validate.forkserver`), else fresh workers.
    ``timings.workers`` says how each check's worker started ("forked", or "fresh: why").
    """
    ctx = _Run(config, checks, info, isolation, listener or Listener(), persist, registry or REGISTRY,
               float(config.timeout) + float(stall_grace), deadline, python, dict(env or {}), pool)
    t0 = time.perf_counter()
    report = new_report(config, info, machine, timings)
    ctx.workers = report.timings["workers"]
    current: str | None = None
    try:
        with sigterm_as_interrupt():
            ctx.save(report, False)
            for i, name in enumerate(checks):
                ctx.listener.start(name, i, len(checks))
                current, t = name, time.perf_counter()
                result = ctx.one(name)
                report.timings["checks"][name] = round(time.perf_counter() - t, 3)
                result.seconds = result.seconds or report.timings["checks"][name]
                report.checks.append(result)
                current = None
                ctx.listener.end(result)
                ctx.save(report, False)
    except KeyboardInterrupt:
        _interrupted(report, current, checks, ctx.listener)
    done = {c.name for c in report.checks}
    report.checks.extend(CheckResult(n, SKIP, {}, "not run: the run was interrupted") for n in checks if n not in done)
    report.timings["run_s"] = round(time.perf_counter() - t0, 3)
    finish(report)
    ctx.save(report, True)
    return report


def _as_if_stopped(report: ValidationReport, checks: list[str]) -> ValidationReport:
    """The report as it would read if the run died now (written before each check)."""
    copy = ValidationReport.from_dict(report.to_dict())
    done = {c.name for c in copy.checks}
    copy.checks.extend(CheckResult(n, SKIP, {}, "not run: the run ended before this check")
                       for n in checks if n not in done)
    copy.interrupted = True
    finish(copy)
    return copy


def finish(report: ValidationReport) -> ValidationReport:
    """Certify ``report`` in place from its checks and devices (pure apart from recipes)."""
    c = cert.certify(report.checks, report.devices, device_type=report.device, world_size=report.world_size,
                     specs=recipes.load("gpu_specs"), floors=recipes.load("validate_floors"),
                     interrupted=report.interrupted)
    report.verdict, report.reasons, report.figures, report.gpu_models = c.verdict, c.reasons, c.figures, c.gpu_models
    return report


INTERRUPTED_BEFORE_CHECKS = "interrupted (Ctrl-C or SIGTERM) before the checks started"


def failed_report(config: ValidateConfig, checks: list[str], reason: str,
                  machine: dict[str, Any] | None = None, interrupted: bool = False) -> ValidationReport:
    """No check could run (torch missing or broken, or interrupted during the preflight): still
    a full report. ``reason`` == INTERRUPTED_BEFORE_CHECKS (what :func:`app.prepare` reports
    for Ctrl-C) also marks the report interrupted, with every check skipped."""
    interrupted = interrupted or reason == INTERRUPTED_BEFORE_CHECKS
    report = ValidationReport(device=config.device, world_size=config.world_size, profile=config.profile,
                              options=config.to_dict(), machine=dict(machine or {}),
                              versions=versions({}), interrupted=interrupted)
    if interrupted:
        report.checks = [CheckResult(n, SKIP, {}, "not run: the run was interrupted") for n in checks]
    else:
        report.checks = [CheckResult(n, FAIL, {}, reason, error={"kind": "environment", "type": "TorchUnavailable",
                                                                "message": reason, "traceback": ""})
                         for n in checks]
    return finish(report)
