"""The distributed mode of ``envcheck validate``: this process is one rank of a torchrun/srun job.

When :func:`envcheck.cluster.launch.detect` finds a launcher, ``envcheck validate`` does not
spawn its own processes. Each rank (no torch in this module; workers import it):

1. imports torch in a worker and probes the machine (validate's preflight), and picks its
   device: ``cuda:LOCAL_RANK`` of the GPUs the task sees (CPU when there are none);
2. runs the per-device checks (cnn, amp, compile, gemm, memory) on that one device with
   validate's isolated runner (``CUDA_VISIBLE_DEVICES`` narrowed to it for the workers);
3. runs the all-reduce with every rank of the job in a supervised child
   (``python -m envcheck.validate.cluster_rank``: ``env://`` rendezvous, NCCL or gloo,
   world sweep then intra-node sweep), killed after ``--timeout`` seconds without progress;
4. certifies its own results, and sends its report to rank 0 over
   :mod:`envcheck.cluster.channel`.

Rank 0 builds the cluster report (:mod:`envcheck.cluster.aggregate`: per-node verdicts,
stragglers against the cluster median, ranks that failed, hung or never joined, by host) and
prints / writes it. Other ranks print nothing on stdout and exit 0 once their report is
delivered (so ``srun --kill-on-bad-exit`` never kills rank 0 before it reports); the exit code
of the job is rank 0's under srun. Under torchrun rank 0 also exits 0 once the report is out
(and says the verdict's code on stderr): a failed worker would hold every other node's agent at
torchrun's exit barrier for 300 s (``exit_barrier_timeout``, not settable from the torchrun
command line), so read the verdict from the report, ``--junit`` or ``--exit-codes`` line.
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

from envcheck.cluster import distributed
from envcheck.cluster.launch import Launch

PREFLIGHT_BUDGET_S = 300.0  # validate's own cap on a cold `import torch` in a worker
BUDGET_GRACE_S = 10.0  # with --budget: how long rank 0 waits past it for the other ranks' reports


class RankProblem(ValueError):
    """This rank cannot take part as launched (e.g. more ranks on the node than GPUs)."""


@dataclass
class Options:
    checks: list[str]
    profile: str = "standard"
    device: str | None = None
    duration: float | None = None
    timeout: float = 120.0
    allreduce_max_mib: int | None = None
    isolation: str = "subprocess"
    join_timeout: float | None = None  # default: timeout
    straggler_threshold: float = 0.10  # aggregate.DEFAULT_THRESHOLD
    budget: float | None = None  # --budget / --quick: every rank ends its work by then
    pairwise: bool = False  # --pairwise: 2-node all-reduces over node pairs to name a bad node
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_timeout(self) -> float:
        """Backstop for rank 0's wait; each check is bounded by its own timeout first."""
        if self.budget:
            return float(self.budget) + BUDGET_GRACE_S
        return (float(self.join_timeout or self.timeout) + PREFLIGHT_BUDGET_S
                + (len(self.checks) + 1) * (float(self.timeout) + 60.0))


def pick_device(info: Launch, preflight: dict[str, Any], device: str | None,
                env: dict[str, str]) -> tuple[str, str | None]:
    """("cuda", the CUDA_VISIBLE_DEVICES entry of this rank) or ("cpu", None). Pure."""
    count = int(preflight.get("device_count") or 0)
    if device == "cpu" or count == 0:
        if device == "cuda":
            raise RankProblem("--device cuda: torch sees no GPU on this node")
        return "cpu", None
    if info.local_rank >= count:
        raise RankProblem(f"{info.local_world_size} ranks on this node but torch sees {count} GPU(s): "
                          "start one task per GPU (srun --ntasks-per-node / torchrun --nproc-per-node)")
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(visible) < count:
        visible = [str(i) for i in range(count)]
    return "cuda", visible[info.local_rank]


def narrowed_info(preflight: dict[str, Any], dev: str, local_rank: int) -> dict[str, Any]:
    """What the per-device workers will see once CUDA_VISIBLE_DEVICES holds only this rank's GPU."""
    if dev != "cuda":
        return dict(preflight)
    d = dict((preflight.get("devices") or [])[local_rank])
    d["index"] = 0
    return {**preflight, "device_count": 1, "devices": [d]}


def _setenv(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _env(**values: str | None):
    """Environment variables set (None: unset) inside, restored after."""
    old = {k: os.environ.get(k) for k in values}
    try:
        _setenv(values)
        yield
    finally:
        _setenv(old)


# ---- the all-reduce child ----------------------------------------------------------------


def _last_row(sweep: dict[str, Any] | None) -> dict[str, Any]:
    rows = (sweep or {}).get("rows") or []
    return rows[-1] if rows else {}


def allreduce_result(*, world: int, backend: str, timeout: float, out: dict[str, Any] | None,
                     error: str | None, exit_code: int | None, hung: bool, last_mark: str | None,
                     marks: int, stderr_tail: str = ""):
    """The CheckResult of this rank's part of the distributed all-reduce. Pure."""
    from envcheck.validate.config import human_bytes
    from envcheck.validate.results import FAIL, PASS, CheckResult

    metrics: dict[str, Any] = {"world_size": world, "backend": backend, "progress_marks": marks,
                               "last_mark": last_mark}
    details: dict[str, Any] = {}
    if stderr_tail:
        details["log_tail"] = stderr_tail
    where = f"'{last_mark}'" if last_mark else "start-up"
    if error:
        # gloo/NCCL messages carry source locations and decorations; keep the sentence, in ASCII.
        from envcheck.validate.errors import backend_message

        error = backend_message(error)
    if hung:
        return CheckResult("allreduce", FAIL, metrics,
                           f"all-reduce hung on this rank: no progress for {timeout:g} s after {where}; "
                           "its process was killed", details=details,
                           error={"kind": "hang", "type": "AllReduceHang", "message": "", "traceback": ""})
    if out is None:
        how = (f"was killed by signal {-exit_code}" if exit_code is not None and exit_code < 0
               else f"exited with code {exit_code}")
        msg = f"all-reduce rank process {how} after {where}" + (f": {error}" if error else "")
        return CheckResult("allreduce", FAIL, metrics, msg, details=details,
                           error={"kind": "rank_failed", "type": "AllReduceFailure", "message": error or "",
                                  "traceback": ""})
    w, intra = out.get("world") or {}, out.get("intranode")
    nnodes = int(out.get("num_nodes") or 1)
    wl, il = _last_row(w), _last_row(intra)
    details["rows"] = w.get("rows") or []
    if intra:
        details["intranode_rows"] = intra.get("rows") or []
    if out.get("pairwise"):
        details["pairwise"] = out["pairwise"]
    # busbw_GBps is what certification judges against the GPUs' NVLink figure: only the
    # intra-node sweep measures NVLink; the world sweep crosses the network when nnodes > 1.
    busbw = il.get("busbw_GBps") if intra else (wl.get("busbw_GBps") if nnodes == 1 else None)
    wrong = int(w.get("wrong") or 0) + int((intra or {}).get("wrong") or 0)
    metrics.update({
        "num_nodes": nnodes,
        "nccl_version": out.get("nccl_version"),
        "sizes": len(details["rows"]),
        "max_bytes": w.get("max_bytes"),
        "busbw_GBps": busbw,
        "world_algbw_GBps": wl.get("algbw_GBps"),
        "world_busbw_GBps": wl.get("busbw_GBps"),
        "intranode_busbw_GBps": il.get("busbw_GBps") if intra else None,
        "wrong": wrong,
    })
    if wrong:
        return CheckResult("allreduce", FAIL, metrics,
                           f"{wrong} wrong element(s) in the all-reduce sums (world or intra-node)", details=details)
    msg = (f"{world} rank(s) on {nnodes} node(s) over {backend}, exact sums at {len(details['rows'])} sizes "
           f"up to {human_bytes(int(w.get('max_bytes') or 0))}; world busbw {wl.get('busbw_GBps') or 0:.2f} GB/s")
    if intra:
        msg += f", intra-node busbw {il.get('busbw_GBps') or 0:.2f} GB/s"
    pw = out.get("pairwise") or {}
    if pw.get("rounds"):
        runs = [m for r in pw["rounds"] for m in r]
        msg += f"; pairwise: {sum(1 for m in runs if m.get('passed'))}/{len(runs)} node pairs passed"
    return CheckResult("allreduce", PASS, metrics, msg, details=details)


def run_allreduce(info: Launch, dev: str, params: dict[str, Any], timeout: float,
                  phase: Callable[[str], None], deadline: float | None = None, budget: float | None = None) -> Any:
    """Run this rank's all-reduce child; kill it (and its tree) when it stalls for ``timeout``
    or is still running at ``deadline`` (monotonic; the end of the run's ``budget``)."""
    from envcheck.validate import procs

    env = procs.child_env(dev)
    env.update(info.torch_env())
    backend = "nccl" if dev == "cuda" else "gloo"
    cmd = [sys.executable, "-m", "envcheck.validate.cluster_rank", json.dumps({**params, "device": dev,
                                                                                 "timeout": timeout})]
    events: queue.Queue = queue.Queue()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)

        def read() -> None:
            for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    events.put(json.loads(line))
            events.put(None)

        threading.Thread(target=read, daemon=True).start()
        out = error = last = None
        marks, hung, over, eof = 0, False, False, False
        last_move = time.monotonic()
        try:
            while not eof:
                try:
                    ev = events.get(timeout=0.2)
                except queue.Empty:
                    ev = {}
                if ev is None:
                    eof = True
                elif ev.get("event") == "mark":
                    marks, last, last_move = marks + 1, str(ev.get("text")), time.monotonic()
                    phase(f"allreduce: {last}")
                elif ev.get("event") == "result":
                    out = ev.get("result")
                elif ev.get("event") == "error":
                    error = str(ev.get("error"))
                if not eof and time.monotonic() - last_move > timeout:
                    hung = True
                    break
                if not eof and deadline is not None and time.monotonic() > deadline:
                    over = True
                    break
        finally:
            # Reap it ourselves first: kill_tree's reaping would hide the exit status.
            if not (hung or over):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            procs.kill_tree([proc.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace").strip() if out is None else ""
    if over:
        from envcheck.validate.runner import out_of_budget

        res = out_of_budget("allreduce", budget, last or "start-up")
        res.metrics = {"world_size": info.world_size, "progress_marks": marks, "last_mark": last}
        return res
    return allreduce_result(world=info.world_size, backend=backend, timeout=timeout, out=out, error=error,
                            exit_code=proc.returncode, hung=hung, last_mark=last, marks=marks, stderr_tail=tail)


# ---- one rank ----------------------------------------------------------------------------


class _PhaseListener:
    """validate's runner Listener -> the channel's phase + stderr progress."""

    def __init__(self, phase: Callable[[str], None], progress: Callable[[str], None]):
        self._phase, self._progress = phase, progress

    def start(self, name: str, index: int, total: int) -> None:
        self._phase(name)
        self._progress(f"{name} ({index + 1}/{total})...")

    def progress(self, name: str, fraction: float, note: str) -> None: ...

    def end(self, result) -> None:
        self._progress(f"{result.name}: {result.status} {result.message}".rstrip())


def rank_report(info: Launch, opts: Options, phase: Callable[[str], None],
                progress: Callable[[str], None]) -> dict[str, Any]:
    """This rank's validate report (dict), per-device checks + its part of the world all-reduce."""
    from envcheck.validate import app
    from envcheck.validate import runner as vrunner
    from envcheck.validate.config import (
        CHECK_NAMES,
        CPU_ALLREDUCE_MAX_BYTES,
        GPU_ALLREDUCE_MAX_BYTES,
        ValidateConfig,
    )

    deadline = time.monotonic() + opts.budget if opts.budget else None
    phase("preflight")
    prep = app.prepare(isolation=opts.isolation, device=opts.device, timeout=opts.budget)
    if not prep.preflight.ok:
        cfg = ValidateConfig(device=opts.device or "cpu", profile=opts.profile, budget=opts.budget)
        report = vrunner.failed_report(cfg, opts.checks, prep.preflight.error or "torch is not usable",
                                       machine=prep.machine)
        report.world_size = info.world_size
        return report.to_dict()
    dev, visible = pick_device(info, prep.preflight.info, opts.device, dict(os.environ))
    info_one = narrowed_info(prep.preflight.info, dev, info.local_rank)
    cfg = app.resolve(info_one, device=dev, gpus=1 if dev == "cuda" else None, procs=None, profile=opts.profile,
                      duration=opts.duration, timeout=opts.timeout, allreduce_max_mib=opts.allreduce_max_mib,
                      budget=opts.budget)
    local = [c for c in opts.checks if c != "allreduce"]
    listener = _PhaseListener(phase, progress)
    with _env(CUDA_VISIBLE_DEVICES=visible if dev == "cuda" else os.environ.get("CUDA_VISIBLE_DEVICES")):
        report = vrunner.run(cfg, local, info_one, isolation=opts.isolation, listener=listener,
                             machine=prep.machine, timings=prep.timings, deadline=deadline)
    if "allreduce" in opts.checks:
        phase("allreduce")
        progress("allreduce (all ranks)...")
        params = cfg.check_params("allreduce")
        max_bytes = cfg.allreduce_max_bytes or (GPU_ALLREDUCE_MAX_BYTES if dev == "cuda" else CPU_ALLREDUCE_MAX_BYTES)
        t0 = time.perf_counter()
        ar = {"max_bytes": max_bytes, "min_bytes": params["min_bytes"], "factor": params["factor"],
              "warmup": params["warmup"], "iters": params["iters"]}
        if opts.pairwise:
            ar["pairwise"] = {"threshold": opts.straggler_threshold}
        result = run_allreduce(info, dev, ar, float(opts.timeout), phase,
                                deadline=deadline, budget=opts.budget)
        result.seconds = round(time.perf_counter() - t0, 3)
        report.timings.setdefault("checks", {})["allreduce"] = result.seconds
        listener.end(result)
        report.checks.append(result)
        report.checks.sort(key=lambda c: CHECK_NAMES.index(c.name) if c.name in CHECK_NAMES else 99)
    report.world_size = info.world_size
    report.options = {**report.options, "distributed": info.to_dict()}
    vrunner.finish(report)
    return report.to_dict()


def run(info: Launch, opts: Options, progress: Callable[[str], None], hostname: str) -> dict | None:
    """This rank's part; rank 0 returns the cluster report, the other ranks None."""
    say = progress if info.rank == 0 else (lambda _m: None)
    return distributed.run(
        info, lambda phase: rank_report(info, opts, phase, say),
        timeout=opts.total_timeout, join_timeout=float(opts.join_timeout or opts.timeout), hostname=hostname,
        threshold=opts.straggler_threshold,
    )


# ---- rank 0's outputs (what the CLI calls) ----------------------------------------------


def drain_nodes(report: dict[str, Any], apply=None) -> list:
    """--drain in a cluster run: each node by its own verdict (rank 0 runs scontrol for all)."""
    from envcheck.cluster import slurm
    from envcheck.cluster.exitmodes import Outcome

    apply = apply or slurm.apply
    done = []
    for n in report.get("nodes") or []:
        host = n.get("hostname")
        if not host:
            continue
        bad = n.get("verdict") in ("failed", "degraded")
        why = [f["metric"] for f in n.get("straggler_figures") or []]
        why += [str(r["rank"]) for r in n.get("ranks") or [] if r.get("error") or r.get("verdict") == "failed"]
        outcome = Outcome("fail" if bad else "ok", bad, f"validate {n.get('verdict')}" +
                          (" (straggler)" if n.get("straggler") else ""), tuple(
                              f"rank {w}" if w.isdigit() else w for w in why) if bad else ())
        done.append(apply(outcome, node=str(host)))
    return done


def _html(rep: dict) -> str:
    from envcheck.report.html import render_html

    return render_html(rep)


def main(info: Launch, opts: Options, *, fmt: str, color: bool, report_path: str | None, junit_path: str | None,
         exit_codes: str, prom_file: str | None, drain: bool, write: Callable[[str], None],
         progress: Callable[[str], None], html_path: str | None = None) -> int:
    """The whole distributed run for this rank; returns the exit code."""
    import socket

    from envcheck.cluster import atomic, channel, exitmodes, prom
    from envcheck.report import cluster as render

    if info.rank == 0:
        progress(f"validate: distributed mode, rank 0 of {info.world_size} ({info.launcher}, "
                 f"rendezvous {info.master_addr}:{info.master_port})")
    try:
        rep = run(info, opts, progress, socket.gethostname().split(".")[0])
    except channel.ReporterError as exc:
        progress(f"envcheck: rank {info.rank}: {exc}")
        return 1
    except OSError as exc:  # rank 0 could not listen for the other ranks' results
        port = channel.report_port(info.master_port)
        progress(f"envcheck: rank 0 cannot listen on port {port} for the other ranks' results "
                 f"({exc.strerror or exc}); set MASTER_PORT or ENVCHECK_REPORT_PORT to a free port")
        return 2
    if rep is None:
        return 0
    for path, text in ((report_path, lambda: json.dumps(rep, indent=2, sort_keys=True) + "\n"),
                       (junit_path, lambda: render.to_junit(rep)),
                       (prom_file, lambda: prom.validate_text(rep, time.time())),
                       (html_path, lambda: _html(rep))):
        if path:
            try:
                atomic.write_text(path, text())
            except OSError as exc:
                progress(f"envcheck: cannot write {path}: {exc.strerror or exc}")
    outcome = exitmodes.validate_outcome(rep)
    decision = exitmodes.decide(outcome, exit_codes)
    if decision.line is not None:
        write(decision.line)
    elif fmt == "json":
        write(json.dumps(rep, indent=2, sort_keys=True) + "\n")
    else:
        write(render.to_text(rep, color=color))
    if drain:
        for res in drain_nodes(rep):
            progress(res.message)
    code = decision.code
    if exit_codes == "default":
        code = 0 if rep.get("verdict") in ("certified", "passed") else 1
    if code and info.launcher == "torchrun":
        # A failed worker makes torchrun's other agents wait at its exit barrier (300 s, not
        # configurable from the torchrun command line) before they give up: the verdict is in
        # the report, and the job ends now.
        progress(f"envcheck: verdict {rep.get('verdict')} (exit {code} without torchrun); exiting 0 so "
                 "torchrun's other agents are not held at its exit barrier")
        return 0
    return code
