"""Join a torchrun / srun launch as one rank, run this rank's work, and let rank 0 report.

Torch-free orchestration for the distributed mode of ``envcheck validate``: the caller passes
``work(phase)``, which runs this rank's checks (validate owns that part, and imports torch)
and returns its validate report dict; ``phase(name)`` tells rank 0 which check the rank is in,
so a hang is reported as "in allreduce". Every rank's report travels over
:mod:`envcheck.validate.distributed.channel`, independent of the process group, and rank 0 turns them into
the cluster report (:func:`envcheck.validate.distributed.aggregate.cluster_report`).

Time limits: ranks must say hello within ``join_timeout`` (rank 0 stops waiting early if one
never does) and the whole run ends at ``timeout``; ``work`` must itself bound its collectives
(validate's per-check timeout), since a rank stuck inside one cannot be interrupted from here.
On rank 0 a SIGTERM (torchrun tears the worker group down when one worker fails) ends the wait
and the partial report is still produced, naming the ranks that did not report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable

from envcheck import proc
from envcheck.cluster.launch import Launch
from envcheck.validate.distributed import aggregate, channel

Work = Callable[[Callable[[str], None]], Mapping[str, Any]]

DEFAULT_JOIN_TIMEOUT_S = 120.0


class _Terminated(Exception):
    pass


def _sigterm_raises():
    """SIGTERM -> _Terminated in the main thread, so rank 0 still writes what it has."""
    return proc.sigterm_raises(lambda signum: _Terminated(f"signal {signum}"))


def _identity(info: Launch, hostname: str) -> dict:
    return {"hostname": info.hostname or hostname, "node_rank": info.node_rank, "local_rank": info.local_rank}


def run(info: Launch, work: Work, *, timeout: float, hostname: str,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT_S, threshold: float = aggregate.DEFAULT_THRESHOLD,
        env: Mapping[str, str] | None = None, clock=time.monotonic) -> dict | None:
    """This rank's part of a distributed run. Rank 0 returns the cluster report; others None.

    Never raises for a failure of ``work``: it becomes that rank's error in rank 0's report
    (so a non-zero rank exits 0 and ``srun --kill-on-bad-exit`` does not kill rank 0 before it
    reports). A non-zero rank that cannot reach rank 0 raises :class:`channel.ReporterError`.
    """
    start = clock()
    port = channel.report_port(info.master_port, env)
    me = _identity(info, hostname)
    if info.rank != 0:
        with channel.Reporter(info.master_addr, port, info.rank, deadline=start + join_timeout,
                              clock=clock, **me) as rep:
            try:
                result = work(rep.phase)
            except Exception as exc:  # noqa: BLE001 - rank 0 reports it; this rank's job is done
                rep.error(f"{type(exc).__name__}: {exc}")
                return None
            rep.result(dict(result))
        return None

    reasons: list[str] = []
    with channel.Collector(info.world_size, port) as col, _sigterm_raises():
        try:
            col.record({"rank": 0, "kind": "hello", **me})
            try:
                result = work(lambda p: col.record({"rank": 0, "kind": "phase", "phase": p}))
                col.submit(dict(result), **me)
            except _Terminated:
                raise
            except Exception as exc:  # noqa: BLE001 - rank 0's own failure is part of the report
                col.record({"rank": 0, "kind": "error", "error": f"{type(exc).__name__}: {exc}"})
            col.wait(deadline=start + timeout, join_deadline=start + join_timeout)
        except _Terminated as exc:
            reasons.append(f"rank 0 was terminated ({exc}) before every rank reported")
        entries = col.entries(channel.expected_hosts(info.hosts, info.world_size, info.local_world_size))
    report = aggregate.cluster_report(entries, info.world_size, threshold)
    report["reasons"] = reasons + report["reasons"]
    report["launch"] = {"launcher": info.launcher, "master_addr": info.master_addr,
                        "master_port": info.master_port, "job_id": info.job_id}
    if reasons:
        report["interrupted"] = True
    return report
