"""The distributed mode of ``envcheck validate``: this process is one rank of a torchrun/srun job.

When :func:`envcheck.cluster.launch.detect` finds a launcher, ``envcheck validate`` does not
spawn its own processes. Each rank (no torch in this module; workers import it):

1. imports torch in a worker and probes the machine (validate's preflight), and binds its
   device from what the task sees (:func:`pick_device`): a task given one GPU by its launcher
   (``srun --gpus-per-task=1``, one ``CUDA_VISIBLE_DEVICES`` entry) uses that GPU; a task that
   sees every GPU of the node uses the ``LOCAL_RANK``-th; CPU when there are none;
2. runs the per-device checks (cnn, amp, compile, gemm, memory) on that one device with
   validate's isolated runner (the workers' ``CUDA_VISIBLE_DEVICES`` narrowed to it);
3. runs the all-reduce with every rank of the job in a supervised child
   (:mod:`envcheck.validate.distributed.rank`: ``env://`` rendezvous, NCCL or gloo,
   world sweep then intra-node sweep), killed after ``--timeout`` seconds without progress;
4. certifies its own results, and sends its report to rank 0 over
   :mod:`envcheck.validate.distributed.channel`.

Rank 0 builds the cluster report (:mod:`envcheck.validate.distributed.aggregate`: per-node verdicts,
stragglers against the cluster median, ranks that failed, hung or never joined, by host) and
prints / writes it. Other ranks print nothing on stdout and exit 0 once their report is
delivered (so ``srun --kill-on-bad-exit`` never kills rank 0 before it reports); the exit code
of the job is rank 0's under srun. Under torchrun rank 0 also exits 0 once the report is out
(and says the verdict's code on stderr): a failed worker would hold every other node's agent at
torchrun's exit barrier for 300 s (``exit_barrier_timeout``, not settable from the torchrun
command line), so read the verdict from the report, ``--junit`` or ``--exit-codes`` line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from envcheck.cluster.launch import Launch
from envcheck.validate.distributed import join

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
    python: str | None = None  # --python: the interpreter of the workers and the all-reduce child

    @property
    def total_timeout(self) -> float:
        """Backstop for rank 0's wait; each check is bounded by its own timeout first."""
        if self.budget:
            return float(self.budget) + BUDGET_GRACE_S
        return (float(self.join_timeout or self.timeout) + PREFLIGHT_BUDGET_S
                + (len(self.checks) + 1) * (float(self.timeout) + 60.0))


@dataclass(frozen=True)
class Binding:
    """This rank's device: ``kind`` cuda|cpu; ``index`` among the GPUs this rank sees; ``visible``
    the CUDA_VISIBLE_DEVICES value that shows the per-device workers only that GPU."""

    kind: str
    index: int = 0
    visible: str | None = None


def pick_device(info: Launch, preflight: dict[str, Any], device: str | None,
                env: dict[str, str]) -> Binding:
    """Bind this rank from what it can see (pure). One visible GPU: that one, whatever
    LOCAL_RANK is (srun --gpus-per-task, --gpu-bind, a CUDA_VISIBLE_DEVICES set per task);
    several: the LOCAL_RANK-th (torchrun --nproc-per-node, srun with every GPU visible)."""
    count = int(preflight.get("device_count") or 0)
    if device == "cpu" or count == 0:
        if device == "cuda":
            raise RankProblem("--device cuda: torch sees no GPU on this node")
        return Binding("cpu")
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if len(visible) < count:
        visible = [str(i) for i in range(count)]
    if count == 1:
        return Binding("cuda", 0, visible[0])
    if info.local_rank >= count:
        raise RankProblem(f"{info.local_world_size} ranks on this node but this task sees {count} GPUs: "
                          "start one task per GPU (srun --ntasks-per-node / torchrun --nproc-per-node), "
                          "or give each task its own GPU (srun --gpus-per-task=1)")
    return Binding("cuda", info.local_rank, visible[info.local_rank])


def narrowed_info(preflight: dict[str, Any], dev: str, index: int) -> dict[str, Any]:
    """What the per-device workers will see once CUDA_VISIBLE_DEVICES holds only this rank's
    GPU (``index`` among the GPUs the rank sees)."""
    if dev != "cuda":
        return dict(preflight)
    d = dict((preflight.get("devices") or [])[index])
    d["index"] = 0
    return {**preflight, "device_count": 1, "devices": [d]}


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
    elif out.get("pairwise_summary"):
        details["pairwise_summary"] = out["pairwise_summary"]
    if out.get("consensus"):
        details["consensus"] = out["consensus"]  # issue 17: rank 0 compares the digests
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
    brief = out.get("pairwise_summary") or {}
    if pw.get("rounds"):
        runs = [m for r in pw["rounds"] for m in r]
        msg += f"; pairwise: {sum(1 for m in runs if m.get('passed'))}/{len(runs)} node pairs passed"
    elif brief.get("pairs"):
        msg += f"; pairwise: {brief.get('passed')}/{brief.get('pairs')} node pairs passed"
    return CheckResult("allreduce", PASS, metrics, msg, details=details)


def shared_once(details: dict[str, Any], rank: int, local_rank: int) -> dict[str, Any]:
    """What is the same on many ranks is sent once (issue 10, class 11; pure).

    Every rank gets the same world sweep rows (MAX/SUM-reduced) and computes the same pairwise
    table: only rank 0 sends them (rank.py already sends the others a pairwise count). A node's
    ranks share its intra-node sweep rows and its NCCL facts (RDMA ports, NCCL's parsed summary,
    NCCL_* environment): only its local rank 0 sends them; its other ranks send their transport
    and whether it fell back to sockets, with the summary and environment only when it did
    (to explain why). Each rank's own figures are in its metrics."""
    out = dict(details)
    if rank != 0:
        out.pop("rows", None)
        if "pairwise" in out:
            from envcheck.validate.distributed.rank import pairwise_summary

            out["pairwise_summary"] = pairwise_summary(out.pop("pairwise"))
    if local_rank != 0:
        out.pop("intranode_rows", None)
        rec = out.get("nccl_transport")
        if isinstance(rec, dict):
            keep = ("transport", "socket_fallback") + (("summary", "env") if rec.get("socket_fallback") else ())
            out["nccl_transport"] = {k: rec[k] for k in keep if k in rec}
    return out


NCCL_LOG_CAP = 4 * 1024 * 1024  # bytes of the child's stderr read for NCCL's INIT/NET lines


def transport_record(backend: str, log: str, env: dict[str, str], rdma: dict[str, Any] | None) -> dict[str, Any]:
    """This rank's NCCL transport (issue 14 point 3), parsed from the child's stderr, with what
    explains a socket fallback: its NCCL_* variables and its node's RDMA ports. Pure."""
    from envcheck.validate import nccl_transport as nt

    if backend != "nccl":
        return {"transport": nt.NOT_APPLICABLE_GLOO}
    summary = nt.parse(log)
    rdma = rdma or {"active_ports": 0, "ports": [], "peermem": None, "memory_peers": None}
    return {"transport": summary["transport"], "summary": summary,
            "nccl_debug": "user's NCCL_DEBUG=" + env["NCCL_DEBUG"] if env.get("NCCL_DEBUG") else "envcheck (INFO, INIT,NET)",
            "env": {k: env[k] for k in nt.ENV_KEYS if k in env}, "rdma": rdma,
            "socket_fallback": nt.socket_fallback(summary, int(rdma.get("active_ports") or 0))}


def node_rdma() -> dict[str, Any]:
    """This node's RDMA ports and peermem, from the doctor's network probe (sysfs only)."""
    from envcheck.probes import network
    from envcheck.validate import nccl_transport as nt

    try:
        return nt.rdma_ports(network.rdma_devices(), network.peermem())
    except Exception as exc:  # noqa: BLE001 - context for the report, never the end of the run
        return {"active_ports": 0, "ports": [], "peermem": None, "memory_peers": None,
                "unavailable": f"{type(exc).__name__}: {exc}"}


class _Marks:
    """The all-reduce child's events: progress marks, its result or its error."""

    def __init__(self, sup, phase: Callable[[str], None]) -> None:
        self.sup, self.phase = sup, phase
        self.out: dict[str, Any] | None = None
        self.error: str | None = None
        self.last: str | None = None
        self.count = 0

    def line(self, _index: int, raw: bytes) -> None:
        import json

        try:
            ev = json.loads(raw)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        if ev.get("event") == "mark":
            self.count, self.last = self.count + 1, str(ev.get("text"))
            self.sup.moved()  # only a mark is progress: the child marks every collective
            self.phase(f"allreduce: {self.last}")
        elif ev.get("event") == "result":
            self.out = ev.get("result")
        elif ev.get("event") == "error":
            self.error = str(ev.get("error"))


def run_allreduce(info: Launch, binding: Binding, params: dict[str, Any], timeout: float,
                  phase: Callable[[str], None], deadline: float | None = None, budget: float | None = None,
                  python: str | None = None) -> Any:
    """Run this rank's all-reduce child under the supervisor: killed (with its tree) when it
    makes no progress for ``timeout`` or is still running at ``deadline`` (monotonic; the end
    of the run's ``budget``)."""
    import json

    from envcheck import proc
    from envcheck.validate import procs

    env = procs.child_env(binding.kind)
    env.update(info.torch_env())
    env.update(join.store_env(os.environ))  # the job's store: the launcher's, or the one rank 0 hosts
    backend = "nccl" if binding.kind == "cuda" else "gloo"
    args = [json.dumps({**params, "device": binding.kind, "index": binding.index, "timeout": timeout})]
    child = proc.start(procs.argv("envcheck.validate.distributed.rank", args, python=python), env=env)
    with proc.Supervisor([child], deadline=deadline, stall_s=timeout, interval=0.2) as sup:
        seen = _Marks(sup, phase)
        reason = sup.watch(on_line=seen.line, poll=lambda: seen.out is not None or seen.error is not None,
                           settle_s=10.0)
        tail = child.stderr_tail(2000).strip() if seen.out is None else ""
        nccl_log = child.stderr_tail(NCCL_LOG_CAP) if backend == "nccl" else ""
    record = transport_record(backend, nccl_log, dict(os.environ), node_rdma() if backend == "nccl" else None)
    if reason == "deadline":
        from envcheck.validate.runner import out_of_budget

        res = out_of_budget("allreduce", budget, seen.last or "start-up")
        res.metrics = {"world_size": info.world_size, "progress_marks": seen.count, "last_mark": seen.last}
        res.details = {**(res.details or {}), "nccl_transport": record, "span": (seen.out or {}).get("span")}
        return res
    res = allreduce_result(world=info.world_size, backend=backend, timeout=timeout, out=seen.out,
                           error=seen.error, exit_code=child.returncode, hung=reason == "stall",
                           last_mark=seen.last, marks=seen.count, stderr_tail=tail)
    res.details = {**(res.details or {}), "nccl_transport": record, "span": (seen.out or {}).get("span")}
    return res


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


def _allreduce_params(cfg, opts: Options, binding: Binding) -> dict[str, Any]:
    from envcheck.validate.config import CPU_ALLREDUCE_MAX_BYTES, GPU_ALLREDUCE_MAX_BYTES

    p = cfg.check_params("allreduce")
    default = GPU_ALLREDUCE_MAX_BYTES if binding.kind == "cuda" else CPU_ALLREDUCE_MAX_BYTES
    out = {"max_bytes": cfg.allreduce_max_bytes or default, "min_bytes": p["min_bytes"], "factor": p["factor"],
           "warmup": p["warmup"], "iters": p["iters"]}
    if opts.pairwise:
        out["pairwise"] = {"threshold": opts.straggler_threshold}
    return out


SPAN_CHECKS = ("collectives", "ddp")  # run across every rank in the all-reduce child (issue 16 point 4)


def span_params(cfg, checks: list[str]) -> dict[str, Any]:
    """The parameters of the selected checks that span all ranks, as the local checks use them."""
    out: dict[str, Any] = {}
    if "collectives" in checks:
        from envcheck.validate.checks.collectives import OPS

        p = cfg.check_params("collectives")
        out["collectives"] = {**{k: int(p[k]) for k in ("min_bytes", "max_bytes", "factor", "warmup", "iters")},
                              "ops": [o for o in p.get("ops", OPS) if o in OPS]}
    if "ddp" in checks:
        out["ddp"] = {**cfg.check_params("ddp"), "seed": int(cfg.seed)}
    return out


def _collectives_result(out: dict[str, Any], world: int, backend: str):
    from envcheck.validate.checks.collectives import summarize
    from envcheck.validate.config import human_bytes
    from envcheck.validate.results import FAIL, PASS, CheckResult

    metrics: dict[str, Any] = {"world_size": world, "backend": backend}
    m, problems, skipped = summarize(out)
    problems = [p.replace("rank 0's output", "this rank's output") for p in problems]  # each rank's own
    metrics.update(m, max_bytes=out.get("max_bytes"))
    details = {"ops": out.get("ops") or {}}
    for op, res in (out.get("ops") or {}).items():
        for row in res.get("rows") or []:
            if row.get("wrong_ranks"):
                text = (f"{op} at {human_bytes(int(row['bytes']))}: wrong output on rank(s) "
                        + ", ".join(map(str, row["wrong_ranks"])))
                chunk = int(row["bytes"]) // 4 // max(1, world)
                if op in ("all_gather", "all_to_all") and row.get("first_wrong_index") is not None and chunk:
                    # block s of the output came from rank s: the first wrong element names its sender
                    text += f" (first wrong element in rank {int(row['first_wrong_index']) // chunk}'s block)"
                problems.append(text)
    if problems:
        return CheckResult("collectives", FAIL, metrics, "; ".join(problems + skipped), details=details)
    ran = [o for o, r in (out.get("ops") or {}).items() if "rows" in r]
    if not ran:
        return CheckResult("collectives", FAIL, metrics, f"{backend} supports none of the collectives: "
                           + "; ".join(skipped), details=details)
    bw = ", ".join(f"{o} {metrics[f'{o}_busbw_GBps'] or 0:.2f}" for o in ran)
    msg = (f"{world} rank(s) over {backend}, all ranks of the job: {', '.join(ran)} exact at every size up to "
           f"{human_bytes(int(out.get('max_bytes') or 0))}; busbw GB/s at the largest: {bw}")
    return CheckResult("collectives", PASS, metrics, "; ".join([msg] + skipped), details=details)


def _ddp_result(out: dict[str, Any], p: dict[str, Any], backend: str):
    from envcheck.validate.checks.ddp import judge
    from envcheck.validate.results import FAIL, PASS, CheckResult

    problems, metrics = judge(out, float(p["loss_drop"]), float(p["fsdp_rtol"]))
    metrics["backend"] = backend
    if problems:
        return CheckResult("ddp", FAIL, metrics, "; ".join(problems), details={"ranks": out})
    fsdp = (f"FSDP2 identical across ranks, within {metrics['fsdp_max_rel_diff_vs_ddp']:.2g} of DDP"
            if "fsdp_skipped" not in metrics else f"FSDP2 skipped: {metrics['fsdp_skipped']}")
    return CheckResult("ddp", PASS, metrics,
                       f"{metrics['world_size']} rank(s) over {backend}, all ranks of the job: DDP replicas "
                       f"bit-identical after {p['steps']} steps ({metrics['params']} parameters); {fsdp}",
                       details={"ranks": out})


def span_results(params: dict[str, Any], span: dict[str, Any] | None, world: int, backend: str,
                 child) -> list:
    """CheckResults of the checks that ran across all ranks (pure): from the child's ``span``
    output, or failed with the all-reduce child's own failure when they never ran."""
    from envcheck.validate.results import FAIL, CheckResult

    results = []
    for name in (n for n in SPAN_CHECKS if n in params):
        out = (span or {}).get(name)
        if not isinstance(out, dict):
            why = child.message if child.status == "fail" else "the all-reduce child returned no result for it"
            results.append(CheckResult(name, FAIL, {"world_size": world, "backend": backend},
                                       f"{name} across all ranks did not run: {why}",
                                       error={"kind": "rank_failed", "type": "CollectiveFailure", "message": "",
                                              "traceback": ""}))
        elif out.get("error"):
            results.append(CheckResult(name, FAIL, {"world_size": world, "backend": backend},
                                       f"{name} across all ranks failed: {out['error']}",
                                       error={"kind": "exception", "type": "CollectiveFailure",
                                              "message": str(out["error"]), "traceback": ""}))
        elif name == "collectives":
            results.append(_collectives_result(out, world, backend))
        else:
            results.append(_ddp_result(out, params[name], backend))
    return results


def _add_allreduce(report, info: Launch, opts: Options, cfg, binding: Binding, listener: _PhaseListener,
                   phase: Callable[[str], None], progress: Callable[[str], None], deadline: float | None) -> None:
    """This rank's part of the world all-reduce, and of the checks that span all ranks
    (collectives, ddp: run by the same child after it), appended to its report in check order."""
    from envcheck.validate.config import CHECK_NAMES

    phase("allreduce")
    progress("allreduce (all ranks)...")
    t0 = time.perf_counter()
    span = span_params(cfg, opts.checks)
    result = run_allreduce(info, binding, {**_allreduce_params(cfg, opts, binding), "span": span},
                           float(opts.timeout), phase, deadline=deadline, budget=opts.budget, python=opts.python)
    result.seconds = round(time.perf_counter() - t0, 3)
    span_out = result.details.pop("span", None)
    result.details = shared_once(result.details, info.rank, info.local_rank)
    report.timings.setdefault("checks", {})["allreduce"] = result.seconds
    backend = "nccl" if binding.kind == "cuda" else "gloo"
    for res in span_results(span, span_out, info.world_size, backend, result):
        listener.end(res)
        report.checks.append(res)
    listener.end(result)
    if "allreduce" in opts.checks:
        report.checks.append(result)
    report.checks.sort(key=lambda c: CHECK_NAMES.index(c.name) if c.name in CHECK_NAMES else 99)


def rank_report(info: Launch, opts: Options, phase: Callable[[str], None],
                progress: Callable[[str], None]) -> dict[str, Any]:
    """This rank's validate report (dict), per-device checks + its part of the world all-reduce;
    its checks are forked by this rank's fork server (one torch import) where it can."""
    from envcheck.validate import forkserver

    with forkserver.Pool(opts.python, enabled=opts.isolation == "subprocess") as pool:
        return _rank_report(info, opts, phase, progress, pool)


def _rank_report(info: Launch, opts: Options, phase: Callable[[str], None],
                 progress: Callable[[str], None], pool: Any) -> dict[str, Any]:
    from envcheck.validate import app
    from envcheck.validate import runner as vrunner
    from envcheck.validate.config import ValidateConfig

    deadline = time.monotonic() + opts.budget if opts.budget else None
    phase("preflight")
    prep = app.prepare(isolation=opts.isolation, device=opts.device, timeout=opts.budget, python=opts.python,
                       pool=pool)
    if not prep.preflight.ok:
        cfg = ValidateConfig(device=opts.device or "cpu", profile=opts.profile, budget=opts.budget)
        report = vrunner.failed_report(cfg, opts.checks, prep.preflight.error or "torch is not usable",
                                       machine=prep.machine)
        report.world_size = info.world_size
        return with_node_summary(report.to_dict(), info)
    binding = pick_device(info, prep.preflight.info, opts.device, dict(os.environ))
    info_one = narrowed_info(prep.preflight.info, binding.kind, binding.index)
    cfg = app.resolve(info_one, device=binding.kind, gpus=1 if binding.kind == "cuda" else None, procs=None,
                      profile=opts.profile, duration=opts.duration, timeout=opts.timeout,
                      allreduce_max_mib=opts.allreduce_max_mib, budget=opts.budget)
    listener = _PhaseListener(phase, progress)
    env = {"CUDA_VISIBLE_DEVICES": binding.visible} if binding.kind == "cuda" else {}
    report = vrunner.run(cfg, [c for c in opts.checks if c != "allreduce" and c not in SPAN_CHECKS], info_one,
                         isolation=opts.isolation,
                         listener=listener, machine=prep.machine, timings=prep.timings, deadline=deadline,
                         python=opts.python, env=env, pool=pool)
    if "allreduce" in opts.checks or any(c in opts.checks for c in SPAN_CHECKS):
        _add_allreduce(report, info, opts, cfg, binding, listener, phase, progress, deadline)
    report.world_size = info.world_size
    report.options = {**report.options, "distributed": launch_options(info)}
    vrunner.finish(report)
    return with_node_summary(report.to_dict(), info)


def launch_options(info: Launch) -> dict[str, Any]:
    """The launch as this rank reports it: the step's host list (one name per node, the same on
    every rank: 4096 names at 4096 nodes) only in rank 0's report, a count elsewhere (issue 10,
    class 11)."""
    d = info.to_dict()
    if info.rank != 0:
        d["hosts"] = len(d.get("hosts") or [])
    return d


NODE_MACHINE_KEYS = ("hostname", "driver_version")  # what the other local ranks keep of ``machine``


def with_node_summary(rep: dict[str, Any], info: Launch) -> dict[str, Any]:
    """Issue 17 drift: a node's local rank 0 adds its node's summary (once per node). The node's
    machine summary (CPU, memory, every GPU, torch) is the same on all its ranks: its other
    ranks keep only its hostname and driver (consensus groups digests by driver; issue 10,
    class 11)."""
    if info.local_rank == 0:
        from envcheck.validate.distributed.drift import node_summary

        rep["node_summary"] = node_summary(rep.get("machine"), rep.get("versions"), os.environ)
    elif isinstance(rep.get("machine"), dict):
        rep["machine"] = {k: rep["machine"][k] for k in NODE_MACHINE_KEYS if k in rep["machine"]}
    return rep


def run(info: Launch, opts: Options, progress: Callable[[str], None], hostname: str) -> dict | None:
    """This rank's part; rank 0 returns the cluster report, the other ranks None."""
    say = progress if info.rank == 0 else (lambda _m: None)
    return join.run(
        info, lambda phase: rank_report(info, opts, phase, say),
        timeout=opts.total_timeout, join_timeout=float(opts.join_timeout or opts.timeout), hostname=hostname,
        threshold=opts.straggler_threshold, python=opts.python,
    )


def main(info: Launch, opts: Options, outputs, *, write: Callable[[str], None],
         progress: Callable[[str], None]) -> int:
    """The whole distributed run for this rank; rank 0 hands the cluster report to validate's
    output stage. Returns the exit code."""
    import socket

    from envcheck.validate import output
    from envcheck.validate.distributed import channel

    if info.rank == 0:
        progress(f"validate: distributed mode, rank 0 of {info.world_size} ({info.launcher}, "
                 f"rendezvous {info.master_addr}:{info.master_port})")
    try:
        rep = run(info, opts, progress, socket.gethostname().split(".")[0])
    except channel.ReporterError as exc:
        progress(f"envcheck: rank {info.rank}: {exc}")
        return 1
    except OSError as exc:  # rank 0 could not listen for the other ranks' results
        port = channel.report_port() or "(ephemeral)"
        progress(f"envcheck: rank 0 cannot listen on port {port} for the other ranks' results "
                 f"({exc.strerror or exc}); unset ENVCHECK_REPORT_PORT or set it to a free port")
        return 2
    if rep is None:
        return 0
    return output.emit(rep, outputs, write=write, progress=progress, cluster=True, launcher=info.launcher)
