"""A warm worker for validate: one process that has imported torch, forking one child per check.

A fresh worker pays for a whole interpreter and ``import torch`` (about 1.5 s per check on the
CI host, issue 9). The fork server (``python -m envcheck.validate.forkserver FD``, started
through :mod:`envcheck.proc` under the interpreter being validated, with envcheck loaded from
this envcheck's files like every worker) imports torch and the check modules once, then forks
one child per request: the preflight's info request and each check. Isolation is unchanged:

- each child is its own process and session (``setsid``; with ``PR_SET_PDEATHSIG`` on Linux it
  dies with the server, which dies with envcheck), so a crash, an abort or an OOM fails that
  check only; the runner supervises it with the same :class:`envcheck.proc.Supervisor`
  (deadline, stall watchdog) and kills its whole tree; the server reports its exit status;
- a child gets the runner's stdout pipe and stderr file (passed over a Unix socket,
  SCM_RIGHTS: unix(7)), the environment the runner chose, and answers exactly like a fresh
  worker (:func:`envcheck.validate.worker.serve`), ending with ``os._exit`` (no teardown).

Fork after ``import torch`` is safe only while CUDA is untouched in the server: the CUDA driver
does not survive ``fork`` once initialised (CUDA C Programming Guide, "Initialization"; PyTorch's
multiprocessing notes: "the CUDA runtime does not support the fork start method"). The server
runs no torch op and calls nothing that initialises CUDA (the preflight's device queries run
in a forked child); before every fork it checks ``torch.cuda.is_initialized()`` and, on Linux,
that the driver (libcuda, if loaded) answers CUDA_ERROR_NOT_INITIALIZED, and refuses otherwise.
torch's intra-op thread pool is created lazily by the first parallel op, which the server never
runs; OpenBLAS (loaded with numpy) starts threads at import and re-creates them after fork
through its own ``pthread_atfork`` handlers.

Where the server cannot be used (not Linux or macOS, a refusal, a server that died or does not
answer), the runner starts a fresh worker as before and notes why in ``timings.workers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from array import array
from typing import Any

_HEADER = struct.Struct("!I")
_MAX_FDS = 4
SUPPORTED = sys.platform.startswith("linux") or sys.platform == "darwin"
READY_TIMEOUT_S = 300.0  # as runner.PREFLIGHT_TIMEOUT_S: a cold first `import torch`
REPLY_TIMEOUT_S = 15.0  # a fork answers in milliseconds; longer means the server is stuck
POLL_S = 0.02  # how often the server looks for exited children
DISABLE_ENV = "ENVCHECK_FORKSERVER"  # "0": fresh workers only (to compare the two: bench/)


# --------------------------------------------------------------------------- wire format


def send(sock: socket.socket, obj: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    """One length-prefixed JSON message; ``fds`` ride with its first byte (SCM_RIGHTS)."""
    body = json.dumps(obj, default=str).encode()
    data = _HEADER.pack(len(body)) + body
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", fds).tobytes())] if fds else []
    sent = sock.sendmsg([data], anc)
    if sent < len(data):
        sock.sendall(data[sent:])


def _recv_exact(sock: socket.socket, n: int, got: bytes = b"") -> bytes | None:
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            return None
        got += chunk
    return got


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors sent with it; (None, []) at end-of-file."""
    fds: list[int] = []
    head, anc, _flags, _addr = sock.recvmsg(_HEADER.size, socket.CMSG_SPACE(_MAX_FDS * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array("i")
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
            fds.extend(arr)
    head = _recv_exact(sock, _HEADER.size, head) if head else None
    if head is None:
        for fd in fds:
            os.close(fd)
        return None, []
    body = _recv_exact(sock, _HEADER.unpack(head)[0])
    if body is None:
        return None, fds
    return json.loads(body), fds


# --------------------------------------------------------------------------- the server


def cuda_touched() -> str | None:
    """Why forking now would be unsafe for CUDA, or None (checked before every fork)."""
    from envcheck.validate import faults

    if faults.active("forkserver", "cuda") is not None:
        return "torch initialised CUDA in the fork server (injected fault)"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "torch initialised CUDA in the fork server"
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:  # only if already loaded: RTLD_NOLOAD never loads the driver
        lib = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    count = ctypes.c_int(0)
    try:
        code = lib.cuDeviceGetCount(ctypes.byref(count))
    except Exception:  # noqa: BLE001 - an odd driver: do not fork over it
        return "the CUDA driver is loaded in the fork server and cannot be queried"
    # 3 = CUDA_ERROR_NOT_INITIALIZED: cuInit was never called here (CUDA driver API reference)
    return None if code == 3 else "the CUDA driver was initialised in the fork server"


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: prctl(2)
    if os.getppid() != parent:
        os._exit(137)


def _child(sock: socket.socket, request: dict[str, Any], env: dict[str, str], fds: list[int],
           parent: int) -> None:
    """In the forked child: become a worker with the runner's pipe and file, then end."""
    code = 70
    try:
        os.setsid()
        _die_with_parent(parent)
        sock.close()
        events_fd, err_fd = fds[0], fds[1]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(err_fd, 2)
        os.dup2(err_fd, 1)  # stray prints go to stderr, as in a fresh worker
        for fd in (null, err_fd, *fds[2:]):
            os.close(fd)
        sys.stdout = sys.stderr
        os.environ.clear()
        os.environ.update(env)
        events = os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")
        from envcheck.validate import worker

        code = worker.serve(request, events)
    except BaseException:  # noqa: BLE001 - the runner reads the traceback from stderr
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
        code = 1
    finally:
        from envcheck.proc import exit_now

        exit_now(code)


def _fork(sock: socket.socket, msg: dict[str, Any], fds: list[int], import_s: float) -> int | None:
    why = cuda_touched() if len(fds) >= 2 else "the request came without its pipe and file"
    if why:
        for fd in fds:
            os.close(fd)
        send(sock, {"op": "refused", "why": why})
        return None
    request = dict(msg.get("request") or {})
    if request.get("mode") == "info":
        request["torch_import_s"] = import_s
    env = dict(msg.get("env") or os.environ)
    parent = os.getpid()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        _child(sock, request, env, fds, parent)
    for fd in fds:
        os.close(fd)
    send(sock, {"op": "forked", "pid": pid})
    return pid


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        send(sock, {"op": "exit", "pid": pid, "code": code})


def _preload() -> None:
    """What every check imports anyway; a failure is left to the check that needs it."""
    from envcheck.validate import worker  # noqa: F401
    from envcheck.validate.checks import REGISTRY

    for spec in REGISTRY.values():
        with contextlib.suppress(Exception):
            spec.load()
    with contextlib.suppress(Exception):
        import torch.distributed  # noqa: F401


def main(argv: list[str]) -> int:
    from envcheck.validate import faults

    sock = socket.socket(fileno=int(argv[0]))
    sock.setblocking(True)
    if faults.active("forkserver", "exit") is not None:
        return 3
    send(sock, {"op": "hello", "pid": os.getpid()})
    t0 = time.perf_counter()
    import torch  # noqa: F401 - the one import every child shares

    import_s = round(time.perf_counter() - t0, 3)
    _preload()
    why = cuda_touched()
    send(sock, {"op": "ready", "torch_import_s": import_s, "refuse": why})
    children: set[int] = set()
    try:
        while True:
            readable, _, _ = select.select([sock], [], [], POLL_S if children else None)
            if readable:
                msg, fds = recv(sock)
                if msg is None:
                    break
                if msg.get("op") == "fork":
                    pid = _fork(sock, msg, fds, import_s)
                    if pid is not None:
                        children.add(pid)
                else:
                    for fd in fds:
                        os.close(fd)
            _reap(sock, children)
    except (BrokenPipeError, ConnectionError):
        pass
    finally:  # the runner is gone or done: no child outlives the server
        import signal

        for pid in list(children):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
    return 0


# --------------------------------------------------------------------------- the runner's side


class Unavailable(Exception):
    """The fork server cannot run this request: start a fresh worker (the message says why)."""


class ServerFailed(Exception):
    """The server died or hung while importing torch: torch itself is the problem.
    ``hung`` is True for a deadline; ``tail`` is the server's stderr."""

    def __init__(self, hung: bool, tail: str, returncode: int | None) -> None:
        super().__init__("hung" if hung else f"exited {returncode}")
        self.hung, self.tail, self.returncode = hung, tail, returncode


class _Forked:
    """The Popen-like face of a child the server forked (what proc.Child and kill_tree use)."""

    stdin = None

    def __init__(self, pid: int, stdout: Any, server: Server) -> None:
        self.pid, self.stdout, self.server = pid, stdout, server
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        import signal

        if self.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)


class Server:
    """The runner's handle on one fork server process (started with ``env``)."""

    def __init__(self, python: str | None, env: dict[str, str], deadline: float) -> None:
        from envcheck import proc
        from envcheck.validate import procs

        self.env = dict(env)
        self.replies: Any = __import__("queue").Queue()
        self.exits: dict[int, int] = {}
        self.lock = threading.Lock()
        self.closed = threading.Event()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.child = proc.start(procs.argv("envcheck.validate.forkserver", [str(theirs.fileno())], python=python),
                                    env=env, stdout="devnull", stderr="file", pass_fds=(theirs.fileno(),))
        except OSError as exc:
            ours.close()
            raise Unavailable(f"the fork server did not start: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        self.sock = ours
        threading.Thread(target=self._read, daemon=True).start()
        hello = self._reply(min(deadline, time.monotonic() + 60.0))
        if hello is None or hello.get("op") != "hello":
            self.close()
            raise Unavailable("the fork server did not start" + self._why())
        ready = self._reply(deadline)
        if ready is None or ready.get("op") != "ready":
            hung = time.monotonic() >= deadline
            if not hung:  # it closed the socket while exiting: wait for its status
                with contextlib.suppress(Exception):
                    self.child.popen.wait(timeout=5.0)
            tail = self.child.stderr_tail()
            code = self.child.returncode
            self.close()
            raise ServerFailed(hung, tail, code)
        self.torch_import_s = ready.get("torch_import_s")
        self.refuse: str | None = ready.get("refuse")

    def _why(self) -> str:
        lines = [ln for ln in self.child.stderr_tail(2000).splitlines() if ln.strip()]
        return f": {lines[-1].strip()}" if lines else ""

    def _read(self) -> None:
        try:
            while True:
                msg, fds = recv(self.sock)
                for fd in fds:
                    os.close(fd)
                if msg is None:
                    break
                if msg.get("op") == "exit":
                    with self.lock:
                        self.exits[int(msg["pid"])] = int(msg["code"])
                else:
                    self.replies.put(msg)
        except (OSError, ValueError):
            pass
        finally:
            self.closed.set()
            self.replies.put(None)

    def _reply(self, deadline: float) -> dict[str, Any] | None:
        import queue

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                return self.replies.get(timeout=min(left, 0.25))
            except queue.Empty:
                if self.child.popen.poll() is not None and self.closed.is_set():
                    return None

    def exit_code(self, pid: int) -> int | None:
        with self.lock:
            if pid in self.exits:
                return self.exits[pid]
        if self.closed.is_set():  # the server is gone: its children died with it (or are orphans)
            import psutil

            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return None
            except psutil.Error:
                pass
            return -9
        return None

    def fork(self, request: dict[str, Any], env: dict[str, str], deadline: float | None = None):
        """Start ``request`` in a forked child; a proc.Child supervised like a fresh worker."""
        from envcheck import proc

        if self.refuse:
            raise Unavailable(self.refuse)
        if self.closed.is_set():
            raise Unavailable("the fork server is gone" + self._why())
        import tempfile

        token = proc.new_token()
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Child.close
        r, w = os.pipe()
        try:
            send(self.sock, {"op": "fork", "request": request, "env": {**env, proc.TOKEN_ENV: token}},
                 (w, err.fileno()))
        except OSError as exc:
            for fd in (r, w):
                os.close(fd)
            err.close()
            raise Unavailable(f"the fork server is gone ({exc})") from None
        os.close(w)
        end = time.monotonic() + REPLY_TIMEOUT_S
        reply = self._reply(end if deadline is None else min(end, max(deadline, time.monotonic() + 1.0)))
        if reply is None or reply.get("op") != "forked":
            os.close(r)
            err.close()
            why = (reply or {}).get("why") or "the fork server did not answer"
            if reply and reply.get("op") == "refused":
                self.refuse = why
            raise Unavailable(why)
        popen = _Forked(int(reply["pid"]), os.fdopen(r, "rb"), self)
        return proc.track(proc.Child(popen, token, err, None))  # type: ignore[arg-type]

    def close(self) -> None:
        from envcheck import proc

        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(Exception):
            self.child.popen.wait(timeout=2.0)
        proc.kill_tree([self.child])
        self.child.close()


# Read when CUDA/ROCm initialise, which happens only in a forked child (the child sets them
# before that): a request may differ from the server in these without a restart.
LATE_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"})


def _plain(env: dict[str, str]) -> dict[str, str]:
    from envcheck import proc

    return {k: v for k, v in env.items() if k != proc.TOKEN_ENV and k not in LATE_ENV}


class Pool:
    """A run's warm workers: the fork server, started on first use and closed with the run.

    ``start`` raises :class:`Unavailable` when a fresh worker must be used instead (the reason
    is kept in ``off`` and every later request goes fresh too), and :class:`ServerFailed`
    when the server could not import torch. A request whose environment differs from the
    server's (variables such as OMP_WAIT_POLICY are read when torch's libraries load, so a
    child cannot change them) restarts the server once with that environment."""

    def __init__(self, python: str | None = None, enabled: bool = True) -> None:
        self.python = python
        self.server: Server | None = None
        self.restarted = False
        self.off: str | None = None
        if not enabled:
            self.off = "disabled"
        elif os.environ.get(DISABLE_ENV) == "0":
            self.off = f"{DISABLE_ENV}=0"
        elif not SUPPORTED:
            self.off = f"no fork server on {sys.platform}"

    def start(self, request: dict[str, Any], env: dict[str, str], deadline: float | None = None):
        if self.off:
            raise Unavailable(self.off)
        if self.server is not None and _plain(self.server.env) != _plain(env):
            if self.restarted:
                raise Unavailable("this check's environment differs from the fork server's")
            self.server.close()
            self.server, self.restarted = None, True
        try:
            if self.server is None:
                self.server = Server(self.python, env, deadline or time.monotonic() + READY_TIMEOUT_S)
            return self.server.fork(request, env, deadline)
        except Unavailable as exc:
            self.off = str(exc)
            raise
        except ServerFailed:
            self.off, self.server = "the fork server could not import torch", None
            raise

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    from envcheck.proc import exit_now

    exit_now(main(sys.argv[1:]))
