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

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from envcheck import recipes
from envcheck import snapshot as snap
from envcheck.validate import certify as cert
from envcheck.validate import errors, procs, watch
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


def _worker_cmd() -> list[str]:
    return [sys.executable, "-m", "envcheck.validate.worker"]


def preflight(isolation: str = "subprocess", timeout: float = PREFLIGHT_TIMEOUT_S,
              device: str | None = None) -> Preflight:
    """Import torch (in a worker) and describe it and its devices."""
    t0 = time.perf_counter()
    if isolation == "inprocess":
        try:
            from envcheck.validate import worker

            return Preflight(True, worker.preflight(), None, round(time.perf_counter() - t0, 3))
        except Exception as exc:  # noqa: BLE001 - a broken torch is a finding
            return Preflight(False, {}, f"torch is not usable here: {type(exc).__name__}: {exc}",
                             round(time.perf_counter() - t0, 3))
    proc = subprocess.Popen(_worker_cmd(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=procs.child_env(device), start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps({"mode": "info"}).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.kill_tree([proc.pid])
        proc.communicate()
        return Preflight(False, {}, f"importing torch did not finish within {timeout:g} s (hung)",
                         round(time.perf_counter() - t0, 3))
    finally:
        procs.kill_tree([proc.pid])
    for line in out.decode(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "info":
            return Preflight(True, event["info"], None, round(time.perf_counter() - t0, 3))
    msg, _ = errors.describe_exit(proc.returncode, err.decode(errors="replace"))
    tail = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    why = tail[-1].strip() if tail else msg
    return Preflight(False, {}, f"torch is not usable in {sys.executable}: {why}",
                     round(time.perf_counter() - t0, 3))


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


def collect_machine(timeout: float = 60.0) -> dict[str, Any]:
    """A machine summary from the doctor's probes; never raises."""
    try:
        from envcheck import probes

        return machine_summary(probes.collect(torch_timeout=timeout))
    except Exception as exc:  # noqa: BLE001 - the summary is context, not a check
        return {"unavailable": f"probes failed: {type(exc).__name__}: {exc}"}


def versions(info: dict[str, Any]) -> dict[str, Any]:
    from envcheck import __version__

    dist = info.get("distributed") or {}
    return {"envcheck": __version__, "python": info.get("python"), "torch": info.get("torch"),
            "cuda": info.get("cuda"), "cudnn": info.get("cudnn"), "nccl": info.get("nccl"),
            "hip": info.get("hip"), "triton": info.get("triton"), "gloo": dist.get("gloo")}


def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, a timeout) ends the run like Ctrl-C: report still written."""
    return procs.sigterm_raises(lambda _signum: KeyboardInterrupt())


def out_of_budget(name: str, budget: float | None, note: str = "") -> CheckResult:
    """The result of a check that was still running when the run's time budget ran out."""
    return CheckResult(name, FAIL, {}, f"did not finish within the run's {budget or 0:g} s budget"
                       + (f" (last: {note})" if note else "") + "; its processes were killed",
                       error={"kind": "budget", "type": "BudgetExceeded", "message": note, "traceback": ""})


def _run_subprocess(name: str, config: ValidateConfig, info: dict[str, Any], listener: Listener,
                    stall_s: float, deadline: float | None = None) -> CheckResult:
    request = json.dumps({"mode": "check", "check": name, "config": config.to_dict(), "info": info})
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(_worker_cmd(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                env=procs.child_env(config.device), start_new_session=True)
        lines: queue.Queue = queue.Queue()

        def reader() -> None:
            for raw in proc.stdout:  # type: ignore[union-attr]
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        result: CheckResult | None = None
        stalled = over = False
        last_note = "starting"
        try:
            proc.stdin.write(request.encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
            last = time.monotonic()
            while True:
                try:
                    raw = lines.get(timeout=0.25)
                except queue.Empty:
                    raw = b""
                if raw is None:
                    break
                if raw:
                    last = time.monotonic()
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue
                    if event.get("event") == "progress":
                        last_note = str(event.get("note") or last_note)
                        listener.progress(name, float(event.get("fraction") or 0.0), last_note)
                    elif event.get("event") == "result":
                        result = CheckResult.from_dict(event["result"])
                elif time.monotonic() - last > stall_s:
                    stalled = True
                    break
                if deadline is not None and time.monotonic() > deadline:
                    over = True
                    break
            if not (stalled or over):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
        finally:
            procs.kill_tree([proc.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if over:
            return out_of_budget(name, config.budget, last_note)
        if stalled:
            return CheckResult(name, FAIL, {}, f"no progress for {stall_s:g} s (last: {last_note}): the check hung; "
                               "its processes were killed",
                               error={"kind": "hang", "type": "Stall", "message": last_note, "traceback": ""})
        if result is not None:
            return result
        err.seek(0)
        tail = err.read()[-8000:].decode(errors="replace")
        msg, error = errors.describe_exit(proc.returncode if proc.returncode is not None else -9, tail)
        return CheckResult(name, FAIL, {}, msg, error=error)


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
) -> ValidationReport:
    """Run ``checks`` in order and return the certified report (also on Ctrl-C/SIGTERM).

    ``registry`` replaces the check table (in-process tests); ``stall_grace`` is added to
    ``config.timeout`` for the stall watchdog of subprocess workers. ``deadline``
    (``time.monotonic()``; the end of ``config.budget``) stops the run: the check running then
    fails and is killed (subprocess isolation; in-process it finishes first), and the checks
    not started are skipped.
    """
    listener = listener or Listener()
    registry = registry or REGISTRY
    t0 = time.perf_counter()
    if config.device == "cuda":
        devices = [dict(d) for d in (info.get("devices") or [])[: config.ndevices]]
    else:
        devices = [{"index": 0, "name": (machine or {}).get("cpu") or "cpu"}]
    report = ValidationReport(device=config.device, devices=devices, world_size=config.world_size,
                              profile=config.profile, options=config.to_dict(), versions=versions(info),
                              machine=dict(machine or {}))
    report.timings = dict(timings or {})
    report.timings["checks"] = {}
    stall_s = float(config.timeout) + float(stall_grace)
    current: str | None = None

    def save(final: bool) -> None:
        if persist is None:
            return
        snapshot = report if final else _as_if_stopped(report, checks)
        try:
            persist(snapshot)
        except Exception:  # noqa: BLE001 - a failed write must not end the run; the CLI reports it
            if final:
                raise

    try:
        with sigterm_as_interrupt():
            save(False)
            for i, name in enumerate(checks):
                spec = registry[name]
                listener.start(name, i, len(checks))
                current = name
                t = time.perf_counter()
                why = spec.unmet(config, info)
                watching = watch.begin(config.device, config.ndevices)  # issue 16: NVML during the check
                if deadline is not None and time.monotonic() >= deadline:
                    result = CheckResult(name, SKIP, {}, f"not run: the run's {config.budget or 0:g} s budget was spent")
                elif why:
                    result = CheckResult(name, SKIP, {}, why)
                elif isolation == "inprocess":
                    from envcheck.validate import worker

                    result = worker.execute(name, config, info,
                                            lambda f, n="", name=name: listener.progress(name, f, n),
                                            registry=registry)
                else:
                    result = _run_subprocess(name, config, info, listener, stall_s, deadline)
                result = watch.finish(watching, result)
                report.timings["checks"][name] = round(time.perf_counter() - t, 3)
                if not result.seconds:
                    result.seconds = report.timings["checks"][name]
                report.checks.append(result)
                current = None
                listener.end(result)
                save(False)
    except KeyboardInterrupt:
        report.interrupted = True
        if current is not None:
            result = CheckResult(current, FAIL, {}, "interrupted (Ctrl-C or SIGTERM) while running; "
                                 "its processes were killed",
                                 error={"kind": "interrupted", "type": "KeyboardInterrupt", "message": "",
                                        "traceback": ""})
            report.checks.append(result)
            listener.end(result)
    done = {c.name for c in report.checks}
    for name in checks:
        if name not in done:
            report.checks.append(CheckResult(name, SKIP, {}, "not run: the run was interrupted"))
    report.timings["run_s"] = round(time.perf_counter() - t0, 3)
    finish(report)
    save(True)
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


def write_atomic(path: str, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".envcheck-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
