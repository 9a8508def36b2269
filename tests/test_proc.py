"""envcheck.proc: the one launcher and supervisor of envcheck's child processes.

Leftover processes are checked in the process table (psutil), not by exit codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from envcheck import proc


def _run(argv, cwd=None, timeout=30.0, **kw):
    child = proc.start(argv, cwd=cwd, **kw)
    lines: list[str] = []
    with proc.Supervisor([child], deadline=time.monotonic() + timeout) as sup:
        reason = sup.watch(on_line=lambda _i, b: lines.append(b.decode().rstrip("\n")))
    return reason, lines, child


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_python_child_never_imports_from_the_working_directory(tmp_path):
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed json imported')\n")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise SystemExit('shadowed torch')\n")
    code = f"import json, sys\nprint(json.dumps(sys.path[:1]))\nprint('' in sys.path, sys.path[0] == {str(tmp_path)!r})\n"
    reason, lines, child = _run(proc.python_argv(sys.executable, code=code), cwd=tmp_path)
    assert reason == "exited" and child.returncode == 0, child.stderr_tail()
    assert lines[1] == "False False"


def test_pythonpath_is_kept_as_the_user_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mine"))
    reason, lines, child = _run(proc.python_argv(sys.executable, code="import sys\nprint(sys.path[0])\n"))
    assert lines == [str(tmp_path / "mine")]


def test_envcheck_module_runs_from_this_envcheck_not_one_in_the_cwd(tmp_path):
    fake = tmp_path / "envcheck"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('the cwd envcheck was imported')\n")
    (tmp_path / "mod.py").write_text("")
    argv = proc.envcheck_argv("envcheck.proc", python=sys.executable)
    code = argv[2].replace("runpy.run_module('envcheck.proc', run_name='__main__', alter_sys=True)",
                           "import envcheck, envcheck.recipes\nprint(envcheck.__file__)\n"
                           "print(len(envcheck.recipes.names()) > 0)")
    reason, lines, child = _run([argv[0], "-c", code], cwd=tmp_path)
    assert child.returncode == 0, child.stderr_tail()
    assert lines[0] == os.path.join(os.path.dirname(proc.__file__), "__init__.py") and lines[1] == "True"


def test_a_result_before_the_deadline_is_kept_though_a_detached_child_holds_the_pipe(tmp_path):
    # The child answers, then leaves a grandchild in a new session holding stdout open.
    code = textwrap.dedent("""
        import os, subprocess, sys, time
        print('answer', flush=True)
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)
        os._exit(0)
    """)
    child = proc.start(proc.python_argv(sys.executable, code=code))
    got: list[bytes] = []
    t0 = time.monotonic()
    with proc.Supervisor([child], deadline=t0 + 20) as sup:
        reason = sup.watch(on_line=lambda _i, b: got.append(b), poll=lambda: bool(got), settle_s=5)
        grandchildren = [p for p in psutil.process_iter(["environ"]) if (p.info["environ"] or {}).get(
            proc.TOKEN_ENV) == child.token and p.pid != child.pid]
    assert reason == "done" and got == [b"answer\n"]
    assert time.monotonic() - t0 < 8  # did not wait for the pipe's end-of-file
    time.sleep(0.2)
    assert not [p.pid for p in grandchildren if _alive(p.pid)]


def test_deadline_kills_the_whole_tree_including_setsid_grandchildren():
    code = textwrap.dedent("""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(300)'])
        subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)
        time.sleep(300)
    """)
    child = proc.start(proc.python_argv(sys.executable, code=code))
    time.sleep(1.5)
    tree = [p for p in psutil.process_iter(["environ"]) if (p.info["environ"] or {}).get(proc.TOKEN_ENV) == child.token]
    assert len(tree) == 3
    with proc.Supervisor([child], deadline=time.monotonic() + 0.5) as sup:
        assert sup.watch() == "deadline"
    time.sleep(0.2)
    assert not [p.pid for p in tree if _alive(p.pid)]


def test_stall_watchdog_resets_on_progress():
    code = "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.3)\ntime.sleep(300)\n"
    child = proc.start(proc.python_argv(sys.executable, code=code))
    seen: list[bytes] = []
    t0 = time.monotonic()
    with proc.Supervisor([child], stall_s=1.0, interval=0.05) as sup:
        reason = sup.watch(on_line=lambda _i, b: (seen.append(b), sup.moved()))
    assert reason == "stall" and len(seen) == 6 and time.monotonic() - t0 > 2.5


def test_child_dies_with_its_parent(tmp_path):
    """PR_SET_PDEATHSIG: SIGKILL the parent, its child (started through proc) dies too."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    pidfile = tmp_path / "pid"
    parent = textwrap.dedent(f"""
        import sys, time
        from envcheck import proc
        c = proc.start(proc.python_argv(sys.executable, code='import time; time.sleep(300)'), stdout='devnull')
        open({str(pidfile)!r}, 'w').write(str(c.pid))
        time.sleep(300)
    """)
    p = subprocess.Popen([sys.executable, "-c", parent])
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    time.sleep(0.5)  # the child's prelude has run
    assert _alive(pid)
    p.kill()
    p.wait()
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_run_a_tool_to_its_end_or_its_deadline(tmp_path):
    assert proc.run([sys.executable, "-c", "print('hi')"], 10) == (0, "hi\n", "")
    assert proc.run(["/nonexistent/tool"], 10)[0] == 127
    code, _, err = proc.run([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert code == 124 and "timed out" in err
    assert proc.run([sys.executable, "-c", "import os; print(os.getcwd())"], 10, cwd=tmp_path)[1].strip() == str(tmp_path)
