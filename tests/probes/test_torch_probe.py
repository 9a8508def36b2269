"""Torch probe: the real CPU build, a venv without torch, and torches that raise, crash, exit,
hang or shadow each other. Each is reported with its cause, within its deadline, and no
process is left behind."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from envcheck import probes
from envcheck import snapshot as snap
from envcheck.cli import cli
from envcheck.probes import torch as torch_probe

FIXTURES = Path(__file__).parents[1] / "fixtures"
BROKEN = FIXTURES / "broken_torch"
FAKE_CUDA = FIXTURES / "fake_torch" / "cuda"
CONTRACT = json.loads((FIXTURES / "snapshots" / "example_8xh100.json").read_text())
ERROR_KEYS = {"message", "signal", "timeout_s", "stderr_tail"}


@pytest.fixture(scope="session")
def venv_without_torch(tmp_path_factory) -> Path:
    """A venv of this Python without pip and without torch (creating it takes ~0.1 s)."""
    path = tmp_path_factory.mktemp("venv") / "notorch"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def env_with(pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.update(extra)
    return env


_EARLIER: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before_the_test():
    """Processes the session already had (e.g. the Slurm daemons of tests/cluster) are not ours."""
    _EARLIER.clear()
    _EARLIER.update(p.pid for p in psutil.Process().children(recursive=True))
    yield


def no_child_left() -> None:
    children = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in _EARLIER and p.status() != psutil.STATUS_ZOMBIE]
    assert children == [], f"processes left behind: {children}"


def dies_soon(pid: int, within: float = 3.0) -> bool:
    """SIGKILL is delivered asynchronously; a killed grandchild is reparented to init and is at
    most a zombie awaiting reaping (init in a container may never reap it)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def timed_probe(**kwargs):
    start = time.monotonic()
    result = torch_probe.probe(**kwargs)
    return result, time.monotonic() - start


def test_real_cpu_build_of_torch() -> None:
    assert importlib.util.find_spec("torch"), "the test command installs torch==2.13.0 (CPU)"
    result, _ = timed_probe(env=env_with())
    python, torch = result["python"], result["torch"]
    assert set(python) == set(CONTRACT["python"])
    assert set(torch) == set(CONTRACT["torch"])
    assert set(torch["compile"]) == set(CONTRACT["torch"]["compile"])
    assert set(torch["compile"]["triton"]) == set(CONTRACT["torch"]["compile"]["triton"])
    assert set(torch["distributed"]) == set(CONTRACT["torch"]["distributed"])
    assert python["status"] == "ok"
    assert python["version"] == sys.version.split()[0]
    assert python["executable"] == sys.executable
    assert python["free_threaded"] is False
    import torch as real

    assert torch["status"] == "ok" and torch["error"] is None
    assert torch["version"] == real.__version__
    assert torch["cuda"] is None and torch["hip"] is None
    assert torch["cuda_available"] is False and torch["device_count"] == 0
    assert "CPU-only" in torch["cuda_unavailable_reason"]
    assert torch["arch_list"] == [] and torch["devices"] == []
    assert torch["nccl"] is None and torch["cudnn"] is None
    assert torch["distributed"] == {"available": True, "gloo": True, "nccl": False, "mpi": False}
    assert torch["import_seconds"] > 0
    first = torch["distributions"][0]
    assert first["name"] == "torch" and first["version"] == real.__version__
    assert Path(first["location"]) == Path(real.__file__).parents[1]
    no_child_left()


def test_fake_cuda_build_with_an_old_driver() -> None:
    """The warning torch raises when the driver is too old becomes cuda_unavailable_reason,
    and the arch list is read even though CUDA is unavailable."""
    result, _ = timed_probe(env=env_with(FAKE_CUDA, ENVCHECK_FAKE_TORCH="old_driver"))
    torch = result["torch"]
    assert torch["status"] == "ok"
    assert torch["version"] == "2.7.1+cu126" and torch["cuda"] == "12.6"
    assert torch["cuda_available"] is False
    assert torch["cuda_unavailable_reason"].startswith(
        "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040)")
    assert torch["arch_list"] == ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    assert torch["cudnn"] == 90501 and torch["nccl"] == "2.26.2"
    assert torch["distributed"] == {"available": True, "nccl": True, "gloo": True, "mpi": False}
    # The fake (no metadata) comes first on sys.path, then the real wheel: two torches.
    assert torch["distributions"][0] == {"name": "torch", "version": "2.7.1+cu126",
                                         "location": str(FAKE_CUDA)}


def test_fake_cuda_build_with_a_device_that_fails() -> None:
    result, _ = timed_probe(env=env_with(FAKE_CUDA, ENVCHECK_FAKE_TORCH="two_gpus"))
    torch = result["torch"]
    assert torch["cuda_available"] is True and torch["cuda_unavailable_reason"] is None
    assert torch["device_count"] == 2
    assert torch["devices"][0] == {"index": 0, "name": "NVIDIA H100 80GB HBM3",
                                   "capability": [9, 0], "total_memory_bytes": 85520809984}
    lost = torch["devices"][1]
    assert lost["index"] == 1
    assert lost["name"] == {"unavailable": "RuntimeError: CUDA error: unspecified launch failure"}
    assert set(lost) == set(CONTRACT["torch"]["devices"][0])


def test_nccl_version_of_old_torch_as_an_integer() -> None:
    result, _ = timed_probe(env=env_with(FAKE_CUDA, ENVCHECK_FAKE_TORCH="old_nccl_int"))
    assert result["torch"]["nccl"] == "2.18.3"


def test_torch_not_installed(venv_without_torch: Path) -> None:
    result, _ = timed_probe(python=venv_without_torch / "bin" / "python", env=env_with())
    python, torch = result["python"], result["torch"]
    assert python["status"] == "ok" and python["venv"] is True
    assert python["prefix"] == str(venv_without_torch)
    assert python["pip_version"] is None  # --without-pip
    assert torch["status"] == "not_installed"
    assert torch["distributions"] == []
    assert set(torch["error"]) == ERROR_KEYS
    assert "No module named 'torch'" in torch["error"]["message"]
    assert str(venv_without_torch) in torch["error"]["message"]


def test_a_venv_folder_resolves_to_its_python(venv_without_torch: Path) -> None:
    result, _ = timed_probe(python=venv_without_torch, env=env_with())
    assert result["python"]["executable"] == str(venv_without_torch / "bin" / "python")


def test_torch_that_raises_on_import() -> None:
    result, elapsed = timed_probe(env=env_with(BROKEN / "raises"), timeout=30)
    torch = result["torch"]
    assert torch["status"] == "import_error"
    assert set(torch["error"]) == ERROR_KEYS
    assert torch["error"]["message"] == (
        "ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory")
    assert "broken_torch/raises/torch/__init__.py" in torch["error"]["stderr_tail"]
    assert torch["distributions"][0]["location"] == str(BROKEN / "raises")
    assert result["python"]["status"] == "ok"
    assert elapsed < 30
    no_child_left()


def test_torch_that_segfaults() -> None:
    result, elapsed = timed_probe(env=env_with(BROKEN / "segfault"), timeout=30)
    torch = result["torch"]
    assert torch["status"] == "crashed"
    assert torch["error"]["signal"] == 11
    assert "SIGSEGV" in torch["error"]["message"] and "import torch" in torch["error"]["message"]
    # faulthandler's dump names the line that crashed.
    assert "broken_torch/segfault/torch/__init__.py" in torch["error"]["stderr_tail"]
    # What arrived before the crash is kept.
    assert result["python"]["status"] == "ok"
    assert torch["distributions"][0]["location"] == str(BROKEN / "segfault")
    assert elapsed < 30
    no_child_left()


def test_torch_that_exits_during_import() -> None:
    result, _ = timed_probe(env=env_with(BROKEN / "exits"))
    torch = result["torch"]
    assert torch["status"] == "crashed" and torch["error"]["signal"] is None
    assert "exited with status 3 during: import torch" in torch["error"]["message"]


def test_torch_that_hangs_is_killed_with_everything_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    env = env_with(BROKEN / "hangs", ENVCHECK_TEST_PIDFILE=str(pidfile))
    result, elapsed = timed_probe(env=env, timeout=3)
    torch = result["torch"]
    assert torch["status"] == "timeout"
    assert torch["error"]["timeout_s"] == 3.0
    assert "hung in: import torch" in torch["error"]["message"]
    # faulthandler dumped the stack shortly before the deadline: the report says where.
    assert "broken_torch/hangs/torch/__init__.py" in torch["error"]["stderr_tail"]
    assert result["python"]["status"] == "ok"
    assert 3 <= elapsed < 8
    no_child_left()
    for pid in map(int, pidfile.read_text().split()):
        assert dies_soon(pid), f"pid {pid} survived the probe's clean-up"


def test_a_torch_folder_or_json_py_in_the_working_directory_is_not_imported(tmp_path: Path) -> None:
    """The probe runs through envcheck.proc, which takes the working directory off sys.path
    (issue 10, class 1): a user's json.py or torch/ there neither breaks nor fools it."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    (tmp_path / "torch" / "version.py").write_text("__version__ = '2.9.0a0+git1234'\n")
    (tmp_path / "json.py").write_text("raise SystemExit('the cwd json.py was imported')\n")
    result, _ = timed_probe(env=env_with(), cwd=tmp_path)
    dists = result["torch"]["distributions"]
    assert all(d["location"] != str(tmp_path) for d in dists)
    assert result["python"]["status"] == "ok"
    assert result["torch"]["status"] == "ok"


def test_noise_on_stdout_does_not_break_the_protocol(tmp_path: Path) -> None:
    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import os, sys\n"
        "print('hello from torch')\n"
        "os.write(1, b'native noise without newline ')\n"
        "raise ImportError('after noise')\n")
    result, _ = timed_probe(env=env_with(tmp_path))
    assert result["torch"]["status"] == "import_error"
    assert result["torch"]["error"]["message"] == "ImportError: after noise"


@pytest.mark.parametrize(("target", "reason"), [
    ("/nonexistent/python", "does not exist"),
    ("plain-file", "is not executable"),
])
def test_bad_interpreter_paths(tmp_path: Path, target: str, reason: str) -> None:
    if target == "plain-file":
        target = tmp_path / "python"
        target.write_text("not a program")
        target.chmod(0o644)
    result = torch_probe.probe(python=target)
    assert result["python"]["status"] == "probe_failed"
    assert reason in result["python"]["error"]["message"]
    assert result["torch"]["status"] == "probe_failed"
    assert set(result["torch"]["error"]) == ERROR_KEYS


def test_an_interpreter_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho not python\nexit 0\n")
    fake.chmod(0o755)
    result = torch_probe.probe(python=fake)
    assert result["python"]["status"] == "probe_failed"
    assert "exited without reporting" in result["torch"]["error"]["message"]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = torch_probe.probe(python=empty)
    assert "without bin/python" in result["python"]["error"]["message"]


def test_probe_never_raises(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(torch_probe, "_assemble", boom)
    result = torch_probe.probe()
    assert result["torch"]["status"] == "probe_failed"
    assert "RuntimeError: unexpected" in result["torch"]["error"]["message"]
    no_child_left()


def test_script_runs_on_old_interpreters() -> None:
    """The script runs in whatever interpreter the user points at: Python 3.6 syntax at most,
    and it must not need envcheck there."""
    source = torch_probe.SCRIPT.read_text()
    ast.parse(source, feature_version=(3, 6))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.startswith("envcheck") for n in names), names


def test_doctor_rejects_a_missing_python_path() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--python", "/nonexistent/python"])
    assert result.exit_code == 2
    assert "/nonexistent/python" in result.output and "does not exist" in result.output


def test_collect_without_torch(venv_without_torch: Path) -> None:
    called = []

    def warm_up() -> None:  # runs while the torch subprocess works; its failure is ignored
        called.append(True)
        raise RuntimeError("warm-up failed")

    snapshot = probes.collect(python=str(venv_without_torch), torch_timeout=30,
                              while_waiting=warm_up)
    assert called == [True]
    snap.validate(snapshot)
    assert snapshot["torch"]["status"] == "not_installed"
    assert snapshot["python"]["venv"] is True
    assert set(snapshot["probe_seconds"]) == {"host", "nvidia", "env", "network", "torch"}
    assert set(snapshot["host"]) == set(CONTRACT["host"])
    json.dumps(snapshot)
    no_child_left()


@pytest.mark.parametrize(("fixture", "status"), [
    ("raises", "import_error"), ("segfault", "crashed"), ("hangs", "timeout"),
])
def test_doctor_reports_a_broken_torch_with_exit_1(monkeypatch, fixture: str, status: str) -> None:
    """Issue 2, done-when: each broken torch is reported with its cause within 30 s, exit
    code 1, and no traceback from envcheck itself."""
    monkeypatch.setenv("PYTHONPATH", str(BROKEN / fixture))
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["doctor", "--format", "json", "--timeout", "3"])
    assert time.monotonic() - start < 30
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["torch"]["status"] == status
    assert any(f["severity"] == "error" and f["id"].startswith("torch.") for f in report["findings"])
    no_child_left()


def test_doctor_in_a_folder_holding_torch_reports_the_finding_and_the_real_torch(monkeypatch, tmp_path: Path) -> None:
    """Issue 10, class 1: where doctor diagnoses the user's own `python -c` view, a torch/ in the
    working directory is a finding of its own (env.cwd-shadows-module), not a broken probe: the
    probe still imports and reports the installed torch."""
    import importlib.metadata

    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise RuntimeError('the cwd torch/ was imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    result = CliRunner().invoke(cli, ["doctor", "--format", "json", "--timeout", "60"])
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    assert report["torch"]["status"] == "ok"
    assert report["torch"]["version"] == importlib.metadata.version("torch")
    shadow = [f for f in report["findings"] if f["id"] == "env.cwd-shadows-module"]
    assert [f["title"] for f in shadow] == [
        "`./torch/` in the working directory shadows the installed torch for `python` started here"]
    assert shadow[0]["severity"] == "warn" and "python -P" in shadow[0]["fix"]
    assert not [f for f in report["findings"] if f["id"].startswith("torch.") and f["severity"] == "error"]
    assert str(tmp_path) not in json.dumps(shadow)
    no_child_left()
