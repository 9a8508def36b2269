"""Rank results to rank 0 over plain TCP, with deadlines that name the ranks that failed.

Why not torch.distributed's own gather: a rank that hangs in a collective or dies takes the
collective - and any gather after it - down with it, and then nobody is left to say which rank
it was. This channel is independent of the process group (and of torch: the distributed mode's
supervising process can use it while the workload runs in a child it can kill):

* rank 0 runs a :class:`Collector` - one ``selectors`` event loop on one background thread, on
  an ephemeral port of the address the job uses - and submits its own result in-process;
* every other rank connects with a :class:`Reporter`, proves it belongs to the job, reports each
  ``phase`` it enters, and sends its ``result``;
* :meth:`Collector.wait` returns as soon as every rank has a result or cannot send one any
  more, or at the deadline; :meth:`Collector.entries` then names each missing rank with why:
  *never joined*, *connection lost during <phase>* (the process died) or *no result after N s,
  last phase <phase>* (hung).

Trust (issue 10, class 8). The collector records nothing a process outside the job sends:

* on connect it sends ``{"kind": "challenge", "nonce"}``; the rank answers ``{"kind": "hello",
  "rank", "hmac"}`` with ``hmac = HMAC-SHA256(secret, nonce | rank)`` and its identity. The
  per-job secret reaches the ranks through the job's own rendezvous store
  (:mod:`envcheck.validate.distributed.join`), so only a process that can already join the
  process group can compute it;
* one identity per rank, first claim wins: a second connection claiming an authenticated rank
  is refused (and counted); rank 0 is never accepted from the network; a rank's result is
  accepted once;
* every result is checked (:func:`check_report`): a malformed one is that rank's failure;
* bounds: :data:`MAX_LINE_BYTES` per line (:data:`HELLO_MAX_BYTES` before authentication),
  :data:`MAX_CONN_BYTES` per connection, :data:`MAX_PENDING` unauthenticated connections at once
  (accepting pauses beyond it), :data:`AUTH_TIMEOUT_S` to authenticate. A connection that breaks
  a bound is closed; it counts as nothing unless it had authenticated, and then it is that
  rank's failure. Buffers are linear: one ``bytearray`` per connection, scanned for newlines
  from where the last scan stopped.

Scale (class 11): no thread per connection; accept runs until EAGAIN and survives EMFILE /
ENFILE / ECONNABORTED (it pauses briefly and goes on: the kernel's backlog holds the senders);
the open-files soft limit is raised toward the hard limit when the collector starts.

Messages are JSON lines; after the handshake ``{"kind": "phase"|"result"|"error", ...}``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.cluster.slurm import valid_node_name

# A real rank report is ~10 KB (checks, figures, machine and node summary; up to a few hundred
# KB with a pairwise table or NCCL transport details). 4 MiB leaves a wide margin while one
# connection can never make rank 0 hold or parse more than that at once.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_CONN_BYTES = 4 * MAX_LINE_BYTES  # everything one connection may send: result + phases
HELLO_MAX_BYTES = 4096  # before authentication: the hello is ~200 bytes
MAX_PENDING = 1024  # unauthenticated connections at once; beyond it, accepting pauses
AUTH_TIMEOUT_S = 5.0  # to answer the challenge, from the accept
ACCEPT_BACKOFF_S = 0.05  # after EMFILE/ENFILE: let connections close before accepting again
RECV_BYTES = 256 * 1024
PORT_ENV = "ENVCHECK_REPORT_PORT"  # a fixed port for the collector (firewalls); default ephemeral
MAX_NOTES = 20

# A peer's host name must be one node name (no "node[1-100]" or "a,b" that scontrol expands).
valid_hostname = valid_node_name


def report_port(env: Mapping[str, str] | None = None) -> int:
    """The collector's port: ENVCHECK_REPORT_PORT when an operator fixes one, else 0 (an
    ephemeral port, published through the job's store, that cannot collide with the launcher's)."""
    env = os.environ if env is None else env
    raw = str(env.get(PORT_ENV, "")).strip()
    if raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    return 0


def proof(secret: bytes, nonce: bytes, rank: int) -> str:
    """What a rank answers to the challenge: HMAC-SHA256(secret, nonce | rank), hex."""
    return hmac.new(secret, nonce + b"|" + str(int(rank)).encode(), hashlib.sha256).hexdigest()


def raise_nofile() -> dict[str, Any]:
    """Raise this process's open-files soft limit to its hard limit (best effort): rank 0 holds
    one connection per rank. Returns ``{"soft_before", "soft", "hard"}`` or ``{"error"}``."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if soft != resource.RLIM_INFINITY and soft < target:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                # e.g. macOS caps at OPEN_MAX; a smaller raise is still a raise
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, 1 << 16), hard))
        return {"soft_before": soft, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "hard": hard}
    except Exception as exc:  # noqa: BLE001 - best effort; the loop survives EMFILE anyway
        return {"error": f"{type(exc).__name__}: {exc}"}


# ---- what a result must look like ------------------------------------------------------------

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _kind(v: Any, *types: type) -> bool:
    return v is None or (isinstance(v, types) and not isinstance(v, bool))


def check_report(rep: Any) -> str | None:
    """Why ``rep`` is not a validate rank report (the shape rank 0's aggregation reads), or None.

    Checked: a dict; ``verdict`` a short string; ``reasons`` strings; ``checks`` dicts with a
    string ``name`` and ``status`` and dict ``metrics``/``details``/``error``; ``figures`` dicts
    with string ``check``/``metric``/``unit`` and a numeric ``value``; the dicts rank 0 reads
    (``machine``, ``versions``, ``node_summary``, ``options``) dicts. Size, depth and
    non-finite numbers are bounded at parsing (:data:`MAX_LINE_BYTES`; json's own recursion
    limit; NaN/Infinity refused), so nothing here walks the whole report."""
    if not isinstance(rep, dict):
        return f"the result is a {type(rep).__name__}, not a report object"
    verdict = rep.get("verdict")
    if not isinstance(verdict, str) or not 0 < len(verdict) <= 32:
        return "no verdict string"
    if not isinstance(rep.get("reasons", []), list) or not all(isinstance(r, str) for r in rep.get("reasons", [])):
        return "reasons is not a list of strings"
    checks = rep.get("checks", [])
    if not isinstance(checks, list):
        return "checks is not a list"
    for c in checks:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("status"), str):
            return "a check without a name and status"
        if not all(_kind(c.get(k), dict) for k in ("metrics", "details", "error")):
            return f"check {c['name'][:40]!r}: metrics/details/error are not objects"
        if not _kind(c.get("message"), str):
            return f"check {c['name'][:40]!r}: message is not a string"
    figures = rep.get("figures", [])
    if not isinstance(figures, list):
        return "figures is not a list"
    for f in figures:
        if not isinstance(f, dict) or not all(_kind(f.get(k), str) for k in ("check", "metric", "unit", "device")):
            return "a figure without string check/metric/unit"
        if not _kind(f.get("value"), int, float):
            return "a figure whose value is not a number"
    for key in ("machine", "versions", "node_summary", "options", "timings", "gpu_models"):
        if not _kind(rep.get(key), dict):
            return f"{key} is not an object"
    return None


# ---- rank 0 --------------------------------------------------------------------------------


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
    error: str | None = None  # what the rank itself reported going wrong, or what it broke


class _Conn:
    __slots__ = ("sock", "buf", "scan", "rank", "nonce", "deadline", "received", "out", "closed")

    def __init__(self, sock: socket.socket, nonce: bytes, deadline: float):
        self.sock, self.nonce, self.deadline = sock, nonce, deadline
        self.buf = bytearray()
        self.scan = 0  # where the next newline search starts
        self.rank: int | None = None
        self.received = 0
        self.out = b""
        self.closed = False


def _one_line(text: Any, limit: int = 300) -> str:
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Collector:
    """Rank 0's side: one event-loop thread that records what every rank of the job said, and when."""

    def __init__(self, world_size: int, port: int = 0, host: str = "127.0.0.1", secret: bytes | None = None,
                 clock=time.monotonic):
        self.world_size = world_size
        self.clock = clock
        self.started = clock()
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.ranks = {r: RankState(r) for r in range(world_size)}
        self.stats: dict[str, Any] = {"accepted": 0, "authenticated": 0, "refused": 0, "closed_unauthenticated": 0,
                                      "accept_errors": 0, "nofile": raise_nofile()}
        self.notes: list[str] = []  # refused claims and broken bounds, for the report
        self._cond = threading.Condition()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=min(65535, max(4096, world_size)))
        self._sock.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._listening = True
        self._resume_at = 0.0
        self._pending: collections.deque[_Conn] = collections.deque()  # by auth deadline
        self._npending = 0
        self._claimed: dict[int, _Conn] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="envcheck-collector", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def host(self) -> str:
        return self._sock.getsockname()[0]

    # -- recording -------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)

    def record(self, msg: Mapping[str, Any], rank: int = 0) -> None:
        """Apply one message of ``rank`` (rank 0's own, in-process, or an authenticated connection's)."""
        if rank not in self.ranks:
            return
        now = self.clock()
        with self._cond:
            st = self.ranks[rank]
            if st.joined_at is None:
                st.joined_at = now
            host = msg.get("hostname")
            if host is not None:
                if valid_hostname(host):
                    st.identity["hostname"] = host
                elif "hostname" not in st.identity:
                    st.identity["hostname"] = None
                    self._note(f"rank {rank} sent an invalid host name {_one_line(repr(host), 80)}: ignored")
            for key in ("node_rank", "local_rank"):
                v = msg.get(key)
                if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31:
                    st.identity[key] = v
            kind = msg.get("kind")
            if kind == "phase":
                st.phase, st.phase_at = _one_line(msg.get("phase"), 200), now
            elif kind == "result" and not st.has_result:
                why = check_report(msg.get("result"))
                if why is None:
                    st.result, st.has_result = msg.get("result"), True
                elif st.error is None:
                    st.error = f"sent a malformed report: {_one_line(why, 200)}"
            elif kind == "error" and st.error is None:
                st.error = _one_line(msg.get("error"), 2000)
            self._cond.notify_all()

    def submit(self, result: Any, **identity: Any) -> None:
        """Rank 0's own result."""
        self.record({"kind": "hello", **identity})
        self.record({"kind": "result", "result": result})

    def _broke(self, conn: _Conn, why: str) -> None:
        """``conn`` broke a bound: closed; the failure of its rank if it had authenticated."""
        if conn.rank is not None:
            with self._cond:
                st = self.ranks[conn.rank]
                if not st.has_result and st.error is None:
                    st.error = f"its result channel was closed: {why}"
                self._cond.notify_all()
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        if conn.rank is None:
            self._npending -= 1
            self.stats["closed_unauthenticated"] += 1
        else:
            with self._cond:
                st = self.ranks[conn.rank]
                if not st.has_result:
                    st.lost = True
                self._cond.notify_all()

    # -- the event loop --------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._closed:
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the loop never dies; one bad event is skipped
                self._note(f"collector: {type(exc).__name__}: {_one_line(exc, 200)}")
                time.sleep(0.01)
        for key in list(self._sel.get_map().values()):
            if isinstance(key.data, _Conn):
                with contextlib.suppress(OSError):
                    key.data.sock.close()
        with contextlib.suppress(OSError):
            self._sel.close()

    def _step(self) -> None:
        now = self.clock()
        timeout = 0.5
        if self._pending:
            timeout = min(timeout, max(0.0, self._pending[0].deadline - now))
        if not self._listening:
            timeout = min(timeout, max(0.0, self._resume_at - now))
        for key, mask in self._sel.select(timeout=max(0.005, timeout)):
            if key.data is None:
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                conn = key.data
                if mask & selectors.EVENT_WRITE:
                    self._flush(conn)
                if mask & selectors.EVENT_READ and not conn.closed:
                    self._read(conn)
        now = self.clock()
        while self._pending and (self._pending[0].closed or self._pending[0].rank is not None
                                 or self._pending[0].deadline <= now):
            conn = self._pending.popleft()
            if not conn.closed and conn.rank is None:
                self._close(conn)  # did not authenticate in time
        if not self._listening and now >= self._resume_at and self._npending < MAX_PENDING:
            self._sel.register(self._sock, selectors.EVENT_READ, None)
            self._listening = True

    def _pause_accept(self, seconds: float) -> None:
        if self._listening:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._sock)
            self._listening = False
        self._resume_at = self.clock() + seconds

    def _accept(self) -> None:
        while self._npending < MAX_PENDING:
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                self.stats["accept_errors"] += 1
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR):
                    continue  # that one connection, not the listener
                # EMFILE/ENFILE/ENOBUFS/ENOMEM or anything else: back off; the backlog waits
                self._pause_accept(ACCEPT_BACKOFF_S)
                return
            self.stats["accepted"] += 1
            sock.setblocking(False)
            nonce = secrets.token_bytes(16)
            conn = _Conn(sock, nonce, self.clock() + AUTH_TIMEOUT_S)
            conn.out = json.dumps({"kind": "challenge", "nonce": nonce.hex(), "v": 1}).encode() + b"\n"
            self._npending += 1
            self._pending.append(conn)
            try:
                self._sel.register(sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self._close(conn)
                continue
            self._flush(conn)
        self._pause_accept(0.0)  # too many unauthenticated connections: resume as they settle

    def _flush(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(conn.out) if conn.out else 0
        except BlockingIOError:
            n = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[n:]
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0), conn)

    def _read(self, conn: _Conn) -> None:
        for _ in range(8):
            try:
                chunk = conn.sock.recv(RECV_BYTES)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._lines(conn)
                self._close(conn)
                return
            conn.received += len(chunk)
            conn.buf += chunk
            if conn.received > MAX_CONN_BYTES:
                self._broke(conn, f"sent more than {MAX_CONN_BYTES >> 20} MiB")
                return
            if not self._lines(conn):
                return
            if len(chunk) < RECV_BYTES:
                break

    def _lines(self, conn: _Conn) -> bool:
        """Handle the complete lines in ``conn.buf``; False when the connection was closed."""
        buf, start = conn.buf, 0
        while not conn.closed:
            end = buf.find(b"\n", max(start, conn.scan))
            if end < 0:
                conn.scan = len(buf)
                break
            line = bytes(buf[start:end])
            start = conn.scan = end + 1
            self._message(conn, line)
        if conn.closed:
            return False
        if start:
            del buf[:start]
            conn.scan -= start
        cap = HELLO_MAX_BYTES if conn.rank is None else MAX_LINE_BYTES
        if len(buf) > cap:
            self._broke(conn, f"a line over {cap} bytes")
            return False
        return True

    def _message(self, conn: _Conn, line: bytes) -> None:
        cap = HELLO_MAX_BYTES if conn.rank is None else MAX_LINE_BYTES
        if len(line) > cap:
            self._broke(conn, f"a line over {cap} bytes")
            return
        try:
            msg = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            msg = None
        if conn.rank is None:
            self._hello(conn, msg)
        elif not isinstance(msg, dict):
            with self._cond:
                st = self.ranks[conn.rank]
                if not st.has_result and st.error is None:
                    st.error = "sent a malformed message: not a JSON object (or NaN/Infinity, or nested too deep)"
            self._close(conn)
        else:
            self.record(msg, conn.rank)

    def _hello(self, conn: _Conn, msg: Any) -> None:
        if not isinstance(msg, dict) or msg.get("kind") != "hello":
            self._close(conn)  # not a rank of this job: nothing is recorded
            return
        rank = msg.get("rank")
        mac = msg.get("hmac")
        if (not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank < self.world_size
                or not isinstance(mac, str)
                or not hmac.compare_digest(mac.encode("ascii", "replace"),
                                           proof(self.secret, conn.nonce, rank).encode())):
            self._close(conn)
            return
        if rank in self._claimed:
            self.stats["refused"] += 1
            self._note(f"a second connection claimed rank {rank}: refused (first claim wins)")
            with contextlib.suppress(OSError):
                conn.sock.send(json.dumps({"kind": "refused", "reason": f"rank {rank} is already claimed"}).encode()
                               + b"\n")
            self._close(conn)
            return
        conn.rank = rank
        self._npending -= 1
        self._claimed[rank] = conn
        self.stats["authenticated"] += 1
        conn.out += b'{"kind": "welcome"}\n'
        self._flush(conn)
        self.record(msg, rank)

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

    def summary(self) -> dict[str, Any]:
        """What the channel saw, for the cluster report: counts and the first notes."""
        with self._cond:
            return {**{k: v for k, v in self.stats.items()}, "notes": list(self.notes)}

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for s in (self._sock, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- the other ranks -----------------------------------------------------------------------


class ReporterError(OSError):
    """Rank 0's collector could not be reached (or refused this rank) before the deadline."""


class Reporter:
    """A non-zero rank's side: connect (retrying), answer the challenge, then phase / result."""

    def __init__(self, addr: str, port: int, rank: int, deadline: float, secret: bytes,
                 clock=time.monotonic, **identity: Any):
        self.rank = rank
        self.identity = identity
        last: Exception | None = None
        while True:
            try:
                self._sock = socket.create_connection((addr, port), timeout=5)
                self._handshake(secret, max(1.0, deadline - clock()))
                break
            except ReporterError:
                raise
            except OSError as exc:
                last = exc
                with contextlib.suppress(Exception):
                    self._sock.close()
                if clock() >= deadline:
                    raise ReporterError(f"cannot reach rank 0's collector at {addr}:{port}: {last}") from None
                time.sleep(0.2)
        self._sock.settimeout(30)

    def _readline(self, timeout: float) -> dict:
        self._sock.settimeout(timeout)
        buf = b""
        while b"\n" not in buf:
            chunk = self._sock.recv(HELLO_MAX_BYTES)
            if not chunk:
                raise ConnectionError("the collector closed the connection")
            buf += chunk
            if len(buf) > HELLO_MAX_BYTES:
                raise ConnectionError("the collector sent an oversized line")
        try:
            msg = json.loads(buf.split(b"\n", 1)[0])
        except ValueError:
            raise ConnectionError("the collector sent something that is not JSON") from None
        if not isinstance(msg, dict):
            raise ConnectionError("the collector sent something that is not an object")
        return msg

    def _handshake(self, secret: bytes, timeout: float) -> None:
        challenge = self._readline(min(timeout, 30.0))
        try:
            nonce = bytes.fromhex(str(challenge.get("nonce")))
        except ValueError:
            raise ConnectionError("the collector's challenge has no nonce") from None
        self._send({"kind": "hello", "hmac": proof(secret, nonce, self.rank), **self.identity})
        answer = self._readline(min(timeout, 30.0))
        if answer.get("kind") == "refused":
            raise ReporterError(f"rank 0's collector refused rank {self.rank}: {_one_line(answer.get('reason'))}")
        if answer.get("kind") != "welcome":
            raise ConnectionError("the collector did not accept this rank (wrong job secret?)")

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


# ---- where rank 0 listens ------------------------------------------------------------------


def _is_local(addr: str) -> bool:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return True
    return False


def _route_source(addr: str) -> str | None:
    """The local address this host uses to reach ``addr`` (no packet is sent: UDP connect)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((addr, 9))
        return s.getsockname()[0]
    return None


def listen_address(master_addr: str) -> tuple[str, str | None]:
    """``(bind, note)``: the address the collector binds, from the job's MASTER_ADDR.

    Loopback when MASTER_ADDR is loopback; MASTER_ADDR's own address when it is one of this
    host's; else the address this host uses to reach MASTER_ADDR (the interface the job's traffic
    uses). Only when none can be determined: all interfaces, and ``note`` says so."""
    try:
        infos = socket.getaddrinfo(master_addr, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addrs = list(dict.fromkeys(str(i[4][0]).split("%")[0] for i in infos))
    for a in addrs:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(a).is_loopback:
                return a, None
    for a in addrs:
        if _is_local(a):
            return a, None
    for a in addrs:
        src = _route_source(a)
        if src and _is_local(src):
            return src, None
    return "", (f"MASTER_ADDR {master_addr!r} gives no address of this host: the result channel listens on all "
                "interfaces (connections still need the job's secret)")


def expected_hosts(hosts: tuple[str, ...] | list[str], world_size: int, local_world_size: int) -> dict[int, str]:
    """Where each rank should run under srun's default block distribution (for naming absentees)."""
    if not hosts or local_world_size < 1:
        return {}
    return {r: hosts[min(r // local_world_size, len(hosts) - 1)] for r in range(world_size)}
