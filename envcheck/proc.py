"""Every child process envcheck starts: how it is launched, watched and stopped.

One launcher (:func:`start`, with :func:`python_argv` / :func:`envcheck_argv` for Python
children): doctor's torch probe, install's interpreter probe and ``--run`` pip, validate's
preflight, workers and all-reduce ranks all go through it. It decides:

- **import path.** A Python child runs its code with ``-c``, whose first statement drops the
  working directory that ``-c`` puts first on ``sys.path`` (unless ``-P``/``-I`` already kept
  it off), so a ``json.py``, ``torch/`` or ``pip/`` in the user's directory is never imported
  by envcheck's own children. ``PYTHONPATH`` and user site-packages are left exactly as the
  user's own ``python`` sees them, for doctor and validate alike (they judge the user's torch).
  envcheck's own modules (``envcheck_argv``) are loaded from the files of *this* envcheck,
  named explicitly, so the child needs no envcheck installed (``validate --python``) and an
  older envcheck of the target, or a source checkout in the cwd, is never picked up.
- **process group and parent death.** Every child gets its own session (one ``killpg`` ends
  it), and on Linux asks the kernel for SIGKILL when its parent thread dies
  (``prctl(PR_SET_PDEATHSIG)``, prctl(2)); this is done in the child's first statements rather
  than a ``preexec_fn``, which is unsafe while other threads run (subprocess docs).
- **stopping.** :func:`kill_tree` kills the process group, every descendant psutil finds, and
  every process still carrying the child's token in its environment, which also finds a
  grandchild that called ``setsid`` and was re-parented after its parent died.

One supervisor (:class:`Supervisor`): watches children against a deadline and a stall
watchdog, never waits for end-of-file on a pipe (a detached grandchild may hold it open
forever), keeps an answer that arrived before the deadline, and always kills the whole tree
when it is left.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Callable

TOKEN_ENV = "ENVCHECK_CHILD_TOKEN"
LINE_CAP = 4 * 1024 * 1024  # bytes of one stdout line kept (a longer one is cut)
EXIT_DRAIN_S = 1.0  # after every child exited: how long to wait for their last lines

# The first statements of every Python child (Python 3.6+ syntax: the torch probe's target
# may be old). sys.path[0] is '' (the cwd) for -c unless safe_path/isolated mode is on.
_PRELUDE = """import sys
if sys.path and not (getattr(sys.flags, 'safe_path', 0) or sys.flags.isolated):
    del sys.path[0]
if sys.platform.startswith('linux'):
    try:
        import ctypes, os
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)
        if os.getppid() != {parent}:
            os._exit(137)
    except Exception:
        pass
"""

# Loads envcheck (and its recipes, which an editable install maps from another folder) from
# the files given, before anything could import another copy.
_LOAD_ENVCHECK = """import importlib.util
for _name, _init, _dir in {packages!r}:
    _spec = importlib.util.spec_from_file_location(_name, _init, submodule_search_locations=[_dir])
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _mod
    _spec.loader.exec_module(_mod)
    if '.' in _name:
        setattr(sys.modules[_name.rpartition('.')[0]], _name.rpartition('.')[2], _mod)
"""

_RUN_MODULE = "import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"


def prelude() -> str:
    """The code every Python child runs first (no cwd on sys.path; dies with this process)."""
    return _PRELUDE.format(parent=os.getpid())


def python_argv(python: str, *, code: str | None = None, module: str | None = None,
                args: Sequence[str] = ()) -> list[str]:
    """argv running ``code`` (or ``python -m module`` semantics) under ``python`` with the prelude."""
    if (code is None) == (module is None):
        raise ValueError("give code or module")
    body = code if code is not None else _RUN_MODULE.format(module=module)
    return [python, "-c", prelude() + body, *args]


def envcheck_packages() -> list[tuple[str, str, str]]:
    """(module name, __init__.py, folder) of this envcheck and of its recipes package."""
    import envcheck
    import envcheck._recipes as recipes_pkg

    out = []
    for name, mod in (("envcheck", envcheck), ("envcheck._recipes", recipes_pkg)):
        if mod.__file__:
            init = Path(mod.__file__).resolve()
            out.append((name, str(init), str(init.parent)))
    return out


def envcheck_argv(module: str, args: Sequence[str] = (), python: str | None = None) -> list[str]:
    """argv running envcheck's ``module`` as ``__main__`` under ``python`` (default: this one),
    with envcheck loaded from this process's own files (no install needed in the target)."""
    code = _LOAD_ENVCHECK.format(packages=envcheck_packages()) + _RUN_MODULE.format(module=module)
    return python_argv(python or sys.executable, code=code, args=args)


class Child:
    """One started child: its Popen, its token, its stdout lines and its stderr file."""

    def __init__(self, popen: subprocess.Popen, token: str, err: IO[bytes] | None,
                 out: IO[bytes] | None) -> None:
        self.popen, self.token, self.err_file, self.out_file = popen, token, err, out
        self.lines: queue.Queue = queue.Queue()
        self.eof = threading.Event()
        if popen.stdout is not None:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.eof.set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _read(self) -> None:
        stream = self.popen.stdout
        try:
            while True:
                line = stream.readline(LINE_CAP)  # type: ignore[union-attr]
                if not line:
                    break
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.eof.set()

    def _tail(self, fh: IO[bytes] | None, limit: int) -> str:
        if fh is None:
            return ""
        try:
            fh.flush()
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stderr_tail(self, limit: int = 8000) -> str:
        """The last ``limit`` bytes the child wrote to stderr (``stderr="file"``)."""
        return self._tail(self.err_file, limit)

    def stdout_tail(self, limit: int = 8000) -> str:
        """The last ``limit`` bytes of stdout (``stdout="file"``)."""
        return self._tail(self.out_file, limit)

    def close(self) -> None:
        for fh in (self.err_file, self.out_file, self.popen.stdout, self.popen.stdin):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                fh.close()  # type: ignore[union-attr]


def _target(kind: str | None) -> tuple[Any, IO[bytes] | None]:
    if kind == "lines":
        return subprocess.PIPE, None
    if kind == "file":
        fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Child.close
        return fh, fh
    if kind == "stdout":
        return subprocess.STDOUT, None
    if kind == "inherit":
        return None, None
    return subprocess.DEVNULL, None


def start(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
          stdin: bytes | None = None, stdout: str = "lines", stderr: str = "file",
          pass_fds: Sequence[int] = ()) -> Child:
    """Start a child in its own session. ``stdout``/``stderr``: "lines" (read on a thread into
    ``Child.lines``), "file" (a temporary file, see ``stderr_tail``), "stdout" (stderr only:
    merged into stdout), "inherit", or "devnull". ``stdin``: bytes written then closed (or
    /dev/null). ``pass_fds``: descriptors the child keeps (the fork server's socket). Raises
    OSError when the program cannot be started."""
    token = new_token()
    child_env = dict(os.environ if env is None else env)
    child_env[TOKEN_ENV] = token
    out, out_file = _target(stdout)
    err, err_file = _target(stderr)
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:  # pragma: no cover - Windows
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    if pass_fds:
        kwargs["pass_fds"] = tuple(pass_fds)
    try:
        popen = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                 stdout=out, stderr=err, env=child_env, cwd=cwd, **kwargs)
    except BaseException:
        for fh in (out_file, err_file):
            if fh is not None:
                fh.close()
        raise
    if stdin is not None:
        def feed() -> None:
            with contextlib.suppress(OSError, ValueError):
                popen.stdin.write(stdin)  # type: ignore[union-attr]
            with contextlib.suppress(OSError, ValueError):
                popen.stdin.close()  # type: ignore[union-attr]

        threading.Thread(target=feed, daemon=True).start()
    return track(Child(popen, token, err_file, out_file))


def new_token() -> str:
    """The value of TOKEN_ENV for one child (and every process it starts with its environment)."""
    return uuid.uuid4().hex


def track(child: Child) -> Child:
    """Count ``child`` among the live children :func:`kill_all` ends (``start`` does this; a
    child forked by validate's fork server is tracked the same way)."""
    with _LIVE_LOCK:
        _LIVE.add(child)
    return child


# Every child started and not yet killed: what kill_all() ends when envcheck is interrupted while
# a child is watched on another thread (doctor's torch probe runs beside the NVML probe).
_LIVE: set[Child] = set()
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """Kill the tree of every child envcheck started that is still alive (Ctrl-C, SIGTERM,
    SIGHUP: the CLI's interrupt path). Never raises."""
    with _LIVE_LOCK:
        children = list(_LIVE)
    kill_tree(children)


def _tokened(tokens: set[str]) -> list:
    """Processes (other than this one) whose environment carries one of ``tokens``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(TOKEN_ENV) in tokens:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_tree(children: Sequence[Child], wait: float = 5.0) -> None:
    """SIGKILL every child's process group, its descendants and every process carrying its
    token; then reap the children. Never raises."""
    import psutil

    victims: dict[int, Any] = {}
    for child in children:
        if child.popen.returncode is not None:
            continue  # reaped: its pid may belong to someone else now (the token finds its tree)
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(child.pid)
            for p in [proc, *proc.children(recursive=True)]:
                victims[p.pid] = p
    with contextlib.suppress(Exception):
        for p in _tokened({c.token for c in children}):
            victims[p.pid] = p
    for child in children:
        if os.name == "posix":
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)
        else:  # pragma: no cover
            with contextlib.suppress(OSError):
                child.popen.kill()
    for p in victims.values():
        with contextlib.suppress(psutil.Error):
            p.kill()
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=wait)
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs([p for p in victims.values() if p.pid not in {c.pid for c in children}],
                          timeout=wait)
    with _LIVE_LOCK:
        _LIVE.difference_update(children)


def run(argv: Sequence[str], timeout: float, limit: int = 1 << 20,
        cwd: str | os.PathLike | None = None) -> tuple[int, str, str]:
    """Run a tool (scontrol, systemctl, journalctl, ...) to its end or ``timeout``, like every
    child: own session, tree killed after. Returns (code, stdout, stderr), the last ``limit``
    bytes of each; a missing binary is 127 and a timeout 124, as a shell reports them."""
    try:
        child = start(argv, stdout="file", stderr="file", cwd=cwd)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    except OSError as exc:
        return 126, "", f"{argv[0]}: {exc.strerror or exc}"
    with Supervisor([child], deadline=time.monotonic() + timeout, interval=0.02) as sup:
        reason = sup.watch()
        out, err = child.stdout_tail(limit), child.stderr_tail(limit)
    if reason == "deadline":
        return 124, "", f"{argv[0]} timed out after {timeout:g} s"
    return child.returncode if child.returncode is not None else 1, out, err


class Supervisor:
    """Watch children against a deadline and a stall watchdog; kill the whole tree on exit.

    ``with Supervisor(children, deadline=..., stall_s=...) as sup: reason = sup.watch(...)``.
    ``watch`` returns why it stopped: ``"exited"`` (every child ended), ``"done"`` (``poll``
    said the answer is in; the children were given ``settle_s`` to exit), ``"stall"`` (no
    :meth:`moved` for ``stall_s``) or ``"deadline"``. An answer already in when the deadline
    or a stall comes wins: the reason is ``"done"``. ``on_line(index, line)`` gets every
    stdout line (``stdout="lines"``); call :meth:`moved` for what counts as progress.
    """

    def __init__(self, children: Sequence[Child], *, deadline: float | None = None,
                 stall_s: float | None = None, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.deadline, self.stall_s, self.interval, self.clock = deadline, stall_s, interval, clock
        self.last_move = clock()

    def moved(self) -> None:
        """Progress: resets the stall watchdog."""
        self.last_move = self.clock()

    def _drain(self, on_line: Callable[[int, bytes], None] | None, wait: float) -> None:
        readers = [(i, c) for i, c in enumerate(self.children) if not (c.eof.is_set() and c.lines.empty())]
        if len(readers) == 1 and wait > 0:
            i, c = readers[0]
            try:
                line = c.lines.get(timeout=wait)
            except queue.Empty:
                return
            if on_line:
                on_line(i, line)
            wait = 0
        elif wait > 0:
            time.sleep(wait)
        for i, c in enumerate(self.children):
            while True:
                try:
                    line = c.lines.get_nowait()
                except queue.Empty:
                    break
                if on_line:
                    on_line(i, line)

    def _all_exited(self) -> bool:
        return all(c.popen.poll() is not None for c in self.children)

    def _last_lines(self, on_line) -> None:
        """Every child exited: collect what they wrote, without waiting for end-of-file
        longer than EXIT_DRAIN_S (a detached grandchild may hold the pipe open)."""
        end = self.clock() + EXIT_DRAIN_S
        if self.deadline is not None:
            end = min(end, max(self.clock(), self.deadline))
        while True:
            self._drain(on_line, 0)
            if all(c.eof.is_set() for c in self.children) or self.clock() >= end:
                self._drain(on_line, 0)
                return
            time.sleep(0.02)

    def watch(self, on_line: Callable[[int, bytes], None] | None = None,
              poll: Callable[[], bool] | None = None, settle_s: float = 30.0) -> str:
        done_at: float | None = None
        while True:
            self._drain(on_line, self.interval)
            now = self.clock()
            if done_at is None and poll is not None and poll():
                done_at = now
            if self._all_exited():
                self._last_lines(on_line)
                return "done" if done_at is not None or (poll is not None and poll()) else "exited"
            if done_at is not None:
                if now - done_at >= settle_s or (self.deadline is not None and now >= self.deadline):
                    return "done"
                continue
            if self.deadline is not None and now >= self.deadline:
                return "deadline"
            if self.stall_s is not None and now - self.last_move > self.stall_s:
                return "stall"

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: Any) -> None:
        kill_tree(self.children)
        for c in self.children:
            c.close()


@contextlib.contextmanager
def sigterm_raises(make: Callable[[int], BaseException]):
    """While inside, SIGTERM and SIGHUP raise ``make(signum)`` in the main thread, so the caller
    still writes what it has and its ``Supervisor`` blocks kill their children (a scheduler's kill,
    torchrun tearing a worker group down, a closed terminal or ssh session). Elsewhere than the
    main thread signals cannot be handled: nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise make(signum)

    kinds = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {k: signal.signal(k, handler) for k in kinds}
    try:
        yield
    finally:
        for k, previous in old.items():
            signal.signal(k, previous)


def exit_now(code: int) -> None:
    """End a child process without interpreter teardown (torch's takes ~0.4 s, measured on the
    CI host: issue 9) once everything it reports is flushed. For envcheck's own children only."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
