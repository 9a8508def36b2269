"""Rank results to rank 0 over plain TCP, with deadlines that name the ranks that failed.

Why not torch.distributed's own gather: a rank that hangs in a collective or dies takes the
collective - and any gather after it - down with it, and then nobody is left to say which rank
it was. This channel is independent of the process group (and of torch: the distributed mode's
supervising process can use it while the workload runs in a child it can kill):

* rank 0 runs a :class:`Collector` (a thread serving ``MASTER_ADDR:MASTER_PORT+1``, or
  ``ENVCHECK_REPORT_PORT``) and submits its own result directly;
* every other rank connects with a :class:`Reporter` (retrying until its deadline, since rank 0
  may start later), says ``hello``, reports each ``phase`` it enters, and sends its ``result``;
* :meth:`Collector.wait` returns as soon as every rank has a result or cannot send one any
  more, or at the deadline; :meth:`Collector.entries` then names each missing rank with why:
  *never joined*, *connection lost during <phase>* (the process died) or *no result after N s,
  last phase <phase>* (hung).

Messages are JSON lines: ``{"rank", "kind": "hello"|"phase"|"result"|"error", ...}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 64 * 1024 * 1024  # a rank's report is a few KiB to a few MiB
PORT_ENV = "ENVCHECK_REPORT_PORT"


def report_port(master_port: int, env: Mapping[str, str] | None = None) -> int:
    """The collector's port: ENVCHECK_REPORT_PORT, else the rendezvous port + 1."""
    env = os.environ if env is None else env
    raw = str(env.get(PORT_ENV, "")).strip()
    if raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    return master_port + 1 if master_port < 65535 else master_port - 1


@dataclass
class RankState:
    rank: int
    joined_at: float | None = None
    phase: str | None = None
    phase_at: float | None = None
    identity: dict = field(default_factory=dict)  # hostname, node_rank, local_rank
    result: Any = None
    has_result: bool = False
    lost: bool = False  # connection closed before a result
    error: str | None = None  # what the rank itself reported going wrong


class Collector:
    """Rank 0's side: a server thread that records what every rank said, and when."""

    def __init__(self, world_size: int, port: int, host: str = "", clock=time.monotonic):
        self.world_size = world_size
        self.clock = clock
        self.started = clock()
        self.ranks = {r: RankState(r) for r in range(world_size)}
        self._cond = threading.Condition()
        self._sock = socket.create_server((host, port), reuse_port=False, backlog=max(16, world_size))
        self._sock.settimeout(0.2)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="envcheck-collector", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    # -- recording -------------------------------------------------------------------------
    def record(self, msg: Mapping[str, Any]) -> None:
        """Apply one message (from the network, or rank 0's own via :meth:`submit`)."""
        try:
            rank = int(msg.get("rank"))
        except (TypeError, ValueError):
            return
        if rank not in self.ranks:
            return
        now = self.clock()
        with self._cond:
            st = self.ranks[rank]
            if st.joined_at is None:
                st.joined_at = now
            for key in ("hostname", "node_rank", "local_rank"):
                if key in msg:
                    st.identity[key] = msg[key]
            kind = msg.get("kind")
            if kind == "phase":
                st.phase, st.phase_at = str(msg.get("phase")), now
            elif kind == "result":
                st.result, st.has_result = msg.get("result"), True
            elif kind == "error":
                st.error = str(msg.get("error"))
            self._cond.notify_all()

    def submit(self, result: Any, **identity: Any) -> None:
        """Rank 0's own result."""
        self.record({"rank": 0, "kind": "hello", **identity})
        self.record({"rank": 0, "kind": "result", "result": result})

    def _lost(self, rank: int | None) -> None:
        if rank is None:
            return
        with self._cond:
            st = self.ranks.get(rank)
            if st and not st.has_result:
                st.lost = True
            self._cond.notify_all()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        rank = None
        buf = b""
        with conn:
            conn.settimeout(None)
            while True:
                try:
                    chunk = conn.recv(1 << 16)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                if len(buf) > MAX_LINE_BYTES:
                    break
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(msg, dict):
                        rank = msg.get("rank", rank)
                        self.record(msg)
        self._lost(rank if isinstance(rank, int) else None)

    # -- waiting ---------------------------------------------------------------------------
    def _settled(self) -> bool:
        return all(st.has_result or st.lost or st.error for st in self.ranks.values())

    def wait(self, deadline: float, join_deadline: float | None = None) -> bool:
        """Block until every rank has a result or is lost, or ``deadline`` (monotonic) passes.

        Ranks that have not said hello by ``join_deadline`` end the wait early: the run cannot
        complete without them. True when every rank delivered a result.
        """
        with self._cond:
            while not self._settled():
                now = self.clock()
                if now >= deadline:
                    break
                if join_deadline is not None and now >= join_deadline and any(
                        st.joined_at is None for st in self.ranks.values()):
                    break
                self._cond.wait(timeout=0.2)
            return all(st.has_result for st in self.ranks.values())

    def entries(self, expected_hosts: Mapping[int, str] | None = None) -> list[dict]:
        """One entry per rank for :func:`envcheck.validate.distributed.aggregate.cluster_report`."""
        now = self.clock()
        out = []
        with self._cond:
            for r, st in sorted(self.ranks.items()):
                ident = dict(st.identity)
                host = ident.get("hostname") or (expected_hosts or {}).get(r)
                error = st.error
                if not st.has_result and error is None:
                    if st.joined_at is None:
                        error = f"never joined within {now - self.started:.0f} s"
                    elif st.lost:
                        error = f"connection lost during {st.phase or 'start-up'} (the process exited or was killed)"
                    else:
                        since = now - (st.phase_at or st.joined_at)
                        error = f"no result after {since:.0f} s in {st.phase or 'start-up'} (hung?)"
                out.append({"rank": r, "local_rank": ident.get("local_rank"), "node_rank": ident.get("node_rank"),
                            "hostname": host, "report": st.result if st.has_result else None, "error": error})
        return out

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ReporterError(OSError):
    """Rank 0's collector could not be reached before the deadline."""


class Reporter:
    """A non-zero rank's side: connect (retrying), then hello / phase / result."""

    def __init__(self, addr: str, port: int, rank: int, deadline: float, clock=time.monotonic,
                 **identity: Any):
        self.rank = rank
        self.identity = identity
        last: Exception | None = None
        while True:
            try:
                self._sock = socket.create_connection((addr, port), timeout=5)
                break
            except OSError as exc:
                last = exc
                if clock() >= deadline:
                    raise ReporterError(f"cannot reach rank 0's collector at {addr}:{port}: {last}") from None
                time.sleep(0.2)
        self._sock.settimeout(30)
        self._send({"kind": "hello", **identity})

    def _send(self, msg: dict) -> None:
        data = json.dumps({"rank": self.rank, **msg}, default=str).encode() + b"\n"
        self._sock.sendall(data)

    def phase(self, name: str) -> None:
        self._send({"kind": "phase", "phase": name})

    def error(self, message: str) -> None:
        self._send({"kind": "error", "error": message})

    def result(self, result: Any) -> None:
        self._send({"kind": "result", "result": result})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def expected_hosts(hosts: tuple[str, ...] | list[str], world_size: int, local_world_size: int) -> dict[int, str]:
    """Where each rank should run under srun's default block distribution (for naming absentees)."""
    if not hosts or local_world_size < 1:
        return {}
    return {r: hosts[min(r // local_world_size, len(hosts) - 1)] for r in range(world_size)}
