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

Who may report (issue 10, class 8): rank 0 listens on an ephemeral port of the address the job
uses (:func:`channel.listen_address`) and publishes ``{host, port, secret}`` under
:func:`channel_key` in the job's own rendezvous store (torch's TCPStore at
``MASTER_ADDR:MASTER_PORT``, read and written with the torch-free :mod:`envcheck.cluster.store`).
torchrun's agent already hosts that store (``TORCHELASTIC_USE_AGENT_STORE=True`` in its
workers); under srun or a plain ``env://`` launch nobody does until the all-reduce, so rank 0
starts a store-host child for the run (:func:`host_store`) and every rank's all-reduce child
joins it as a client (:func:`store_env`). ``ENVCHECK_JOB_SECRET``, when an operator sets the
same value on every rank, is the secret instead, and the store then carries no secret at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from envcheck import proc
from envcheck.cluster import store
from envcheck.cluster.launch import Launch
from envcheck.validate.distributed import aggregate, channel

Work = Callable[[Callable[[str], None]], Mapping[str, Any]]

DEFAULT_JOIN_TIMEOUT_S = 120.0


class _Terminated(Exception):
    pass


def _sigterm_raises():
    """SIGTERM -> _Terminated in the main thread, so rank 0 still writes what it has."""
    return proc.sigterm_raises(lambda signum: _Terminated(f"signal {signum}"))


SECRET_ENV = "ENVCHECK_JOB_SECRET"
AGENT_STORE_ENV = "TORCHELASTIC_USE_AGENT_STORE"  # torch/distributed/rendezvous.py reads it
STORE_HOST_WAIT_S = 120.0  # a cold `import torch` in the store-host child


def agent_store(env: Mapping[str, str]) -> bool:
    """True when the launcher (torchrun's agent) hosts the job's store at MASTER_ADDR:MASTER_PORT."""
    return env.get(AGENT_STORE_ENV) == "True"


def store_env(env: Mapping[str, str]) -> dict[str, str]:
    """What the all-reduce children need to join the store rank 0 hosts when the launcher does
    not (the same on every rank: decided from the launcher's variables alone)."""
    return {} if agent_store(env) else {AGENT_STORE_ENV: "True"}


def channel_key(info: Launch, env: Mapping[str, str]) -> str:
    run = f"{info.job_id or 'job'}/{env.get('TORCHELASTIC_RESTART_COUNT') or 0}"
    return f"envcheck/channel/{run}"


def job_secret(env: Mapping[str, str]) -> bytes | None:
    """The operator's ENVCHECK_JOB_SECRET (any string, the same on every rank), as 32 bytes."""
    raw = str(env.get(SECRET_ENV) or "")
    return hashlib.sha256(raw.encode("utf-8")).digest() if raw.strip() else None


class ChannelError(OSError):
    """The result channel could not be set up through the job's store (rank 0's side)."""


@contextlib.contextmanager
def host_store(info: Launch, env: Mapping[str, str], python: str | None = None) -> Iterator[str | None]:
    """Rank 0: host the job's TCPStore in a child for the run when the launcher does not.
    Yields None, or why the store could not be hosted (then rank 0 reports that it failed)."""
    if agent_store(env):
        yield None
        return
    from envcheck.validate import procs

    try:
        child = proc.start(procs.argv("envcheck.cluster.store", [info.master_addr, str(info.master_port)],
                                      python=python), env=dict(os.environ), stderr="file")
    except OSError as exc:
        yield f"cannot start the store host: {exc.strerror or exc}"
        return
    problem: str | None = None
    try:
        try:
            line = child.lines.get(timeout=STORE_HOST_WAIT_S)
            event = json.loads(line)
        except (queue.Empty, ValueError):
            event = {"event": "error", "error": "it did not start in time"}
        if not isinstance(event, dict):
            event = {"event": "error", "error": "it answered out of protocol"}
        if event.get("event") != "ready":
            problem = f"cannot host the job's store at {info.master_addr}:{info.master_port}: {event.get('error')}"
        yield problem
    finally:
        proc.kill_tree([child], wait=2.0)
        child.close()


def publish(info: Launch, env: Mapping[str, str], col: channel.Collector, advertised: str, deadline: float) -> None:
    """Rank 0: put where and how to report into the job's store."""
    record = {"v": 1, "host": advertised, "port": col.port,
              "secret": None if job_secret(env) else col.secret.hex()}
    try:
        with store.connect(info.master_addr, info.master_port, deadline) as client:
            client.set(channel_key(info, env), json.dumps(record).encode())
    except store.StoreError as exc:
        raise ChannelError(str(exc)) from None


def lookup(info: Launch, env: Mapping[str, str], deadline: float) -> tuple[str, int, bytes]:
    """A non-zero rank: rank 0's ``(host, port, secret)`` from the job's store, by ``deadline``."""
    try:
        with store.connect(info.master_addr, info.master_port, deadline) as client:
            raw = client.wait(channel_key(info, env), deadline)
        rec = json.loads(raw)
        secret = job_secret(env) or bytes.fromhex(str(rec["secret"]))
        return str(rec["host"]), int(rec["port"]), secret
    except store.StoreError as exc:
        raise channel.ReporterError(f"rank 0's result channel was not published in the job's store: {exc}") from None
    except (ValueError, KeyError, TypeError):
        raise channel.ReporterError("the job's store holds no usable result-channel record") from None


def _identity(info: Launch, hostname: str) -> dict:
    return {"hostname": info.hostname or hostname, "node_rank": info.node_rank, "local_rank": info.local_rank}


def run(info: Launch, work: Work, *, timeout: float, hostname: str,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT_S, threshold: float = aggregate.DEFAULT_THRESHOLD,
        env: Mapping[str, str] | None = None, clock=time.monotonic, python: str | None = None) -> dict | None:
    """This rank's part of a distributed run. Rank 0 returns the cluster report; others None.

    Never raises for a failure of ``work``: it becomes that rank's error in rank 0's report
    (so a non-zero rank exits 0 and ``srun --kill-on-bad-exit`` does not kill rank 0 before it
    reports). A non-zero rank that cannot reach rank 0 raises :class:`channel.ReporterError`.
    """
    start = clock()
    env = os.environ if env is None else env
    me = _identity(info, hostname)
    if info.rank != 0:
        host, port, secret = lookup(info, env, start + join_timeout)
        with channel.Reporter(host, port, info.rank, deadline=start + join_timeout, secret=secret,
                              clock=clock, **me) as rep:
            try:
                result = work(rep.phase)
            except Exception as exc:  # noqa: BLE001 - rank 0 reports it; this rank's job is done
                rep.error(f"{type(exc).__name__}: {exc}")
                return None
            rep.result(dict(result))
        return None

    reasons: list[str] = []
    interrupted = False
    bind, note = channel.listen_address(info.master_addr)
    secret = job_secret(env) or secrets.token_bytes(32)
    with channel.Collector(info.world_size, channel.report_port(env), host=bind, secret=secret) as col, \
            _sigterm_raises(), contextlib.ExitStack() as stack:
        try:
            col.record({"kind": "hello", **me})
            store_problem = stack.enter_context(host_store(info, env, python))
            if store_problem is None:
                try:
                    publish(info, env, col, bind or info.master_addr, start + join_timeout)
                except ChannelError as exc:
                    store_problem = str(exc)
            if store_problem is not None:
                col.record({"kind": "error", "error": f"rank 0 could not publish its result channel: {store_problem}"})
                reasons.append(f"the job's rendezvous store was not usable ({store_problem}): "
                               "no other rank could report")
            else:
                try:
                    result = work(lambda p: col.record({"kind": "phase", "phase": p}))
                    col.submit(dict(result), **me)
                except _Terminated:
                    raise
                except Exception as exc:  # noqa: BLE001 - rank 0's own failure is part of the report
                    col.record({"kind": "error", "error": f"{type(exc).__name__}: {exc}"})
                col.wait(deadline=start + timeout, join_deadline=start + join_timeout)
        except _Terminated as exc:
            reasons.append(f"rank 0 was terminated ({exc}) before every rank reported")
            interrupted = True
        entries = col.entries(channel.expected_hosts(info.hosts, info.world_size, info.local_world_size))
        seen = col.summary()
    if note:
        seen["notes"] = [note] + seen["notes"]
    report = _aggregate(entries, info.world_size, threshold)
    report["reasons"] = reasons + report["reasons"]
    report["channel"] = seen
    report["launch"] = {"launcher": info.launcher, "master_addr": info.master_addr,
                        "master_port": info.master_port, "job_id": info.job_id}
    if interrupted:
        report["interrupted"] = True
    return report


def _aggregate(entries: list[dict], world_size: int, threshold: float) -> dict:
    """The cluster report; a received report that still trips the aggregation (past
    :func:`channel.check_report`) becomes that rank's failure instead of rank 0's crash."""
    try:
        return aggregate.cluster_report(entries, world_size, threshold)
    except Exception:  # noqa: BLE001 - find the rank(s) whose report breaks it
        fixed = []
        for e in entries:
            if e.get("report") is not None and e.get("rank") != 0:
                try:
                    aggregate.cluster_report([e], world_size, threshold)
                except Exception as exc:  # noqa: BLE001
                    e = {**e, "report": None,
                         "error": f"sent a malformed report: {type(exc).__name__} in rank 0's aggregation"}
            fixed.append(e)
        return aggregate.cluster_report(fixed, world_size, threshold)
