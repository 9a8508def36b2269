"""envcheck.target: which interpreter doctor/install judge, and the pipx-style layout end to end.

The layout the issue describes: envcheck in a tool venv of its own (pipx, `uv tool`, the
README's ~/.venvs/envcheck) without torch, and the user's activated venv with torch. The tool
venv here is real (python -m venv --without-pip) and holds envcheck and its four dependencies
as an installer would lay them out (links into this checkout and the site-packages of the Python
running the tests), so `import torch` fails in it; the user's venv is real too, and sees the torch
of the Python running the tests (a .pth file naming the folder torch is installed in, wherever
that is: system site-packages here, the test venv on a fresh machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck import cli, exitcodes, target

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _venv(path: Path, *flags: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", *flags, str(path)], check=True)
    return path


def _python(venv: Path) -> str:
    return target.interpreter_in(venv)


# ------------------------------------------------------------------ resolve(): the order


def _site(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([_python(venv), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def _with_torch(venv: Path) -> Path:
    """Let the venv see the torch of the Python running the tests (when it has one)."""
    if HAS_TORCH:
        where = Path(importlib.util.find_spec("torch").origin).parents[1]
        (_site(venv) / "_test_torch.pth").write_text(f"{where}\n")
    return venv


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory) -> Path:
    """The user's venv, with this machine's torch when it has one."""
    return _with_torch(_venv(tmp_path_factory.mktemp("user") / "venv"))


def test_python_option_wins_and_a_folder_means_its_interpreter(user_venv, tmp_path):
    env = {"VIRTUAL_ENV": str(user_venv), "PATH": ""}
    t = target.resolve(str(user_venv), env=env, own_has_torch=True)
    assert t.chosen_by == "option" and t.executable == _python(user_venv)
    assert t.reason == f"--python {user_venv} (the interpreter of that folder)"
    t = target.resolve(sys.executable, env=env)
    assert (t.executable, t.chosen_by, t.reason) == (sys.executable, "option", f"--python {sys.executable}")


def test_active_venv_comes_before_conda_and_envcheck_itself(user_venv, tmp_path):
    conda = _venv(tmp_path / "conda-env")
    env = {"VIRTUAL_ENV": str(user_venv), "CONDA_PREFIX": str(conda), "PATH": ""}
    t = target.resolve(env=env, own="/opt/tool/bin/python", own_has_torch=True)
    assert t.to_dict() == {"executable": _python(user_venv), "chosen_by": "virtual_env",
                           "reason": f"active venv {user_venv} (VIRTUAL_ENV)", "choose_another": "--python PATH"}


def test_activated_conda_env_and_conda_base(tmp_path):
    base = _venv(tmp_path / "miniforge3")
    (base / "condabin").mkdir()
    env_dir = _venv(tmp_path / "miniforge3" / "envs" / "train")
    # `conda activate train` on top of base: CONDA_PREFIX is train, CONDA_PREFIX_1 the base below.
    env = {"CONDA_PREFIX": str(env_dir), "CONDA_DEFAULT_ENV": "train", "CONDA_PREFIX_1": str(base),
           "CONDA_SHLVL": "2", "PATH": ""}
    t = target.resolve(env=env, own="/opt/tool/bin/python", own_has_torch=True)
    assert (t.executable, t.chosen_by) == (_python(env_dir), "conda_prefix")
    assert t.reason == f"active conda env train (CONDA_PREFIX={env_dir})"
    # Only the (auto-activated) base: still what `python` runs in that shell; the reason says base.
    env = {"CONDA_PREFIX": str(base), "CONDA_DEFAULT_ENV": "base", "CONDA_SHLVL": "1", "PATH": ""}
    t = target.resolve(env=env, own="/opt/tool/bin/python", own_has_torch=True)
    assert (t.executable, t.chosen_by) == (_python(base), "conda_prefix")
    assert t.reason.startswith(f"conda base environment {base} (CONDA_PREFIX")


def test_no_env_active_own_interpreter_with_torch_then_python3_on_path(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    py3 = bin_dir / "python3"
    py3.write_text("#!/bin/sh\n")
    py3.chmod(0o755)
    t = target.resolve(env={"PATH": str(bin_dir)}, own="/opt/tool/bin/python", own_has_torch=True)
    assert (t.executable, t.chosen_by) == ("/opt/tool/bin/python", "envcheck")
    assert t.reason == "envcheck's own interpreter, which has torch (no venv or conda env active)"
    t = target.resolve(env={"PATH": str(bin_dir)}, own="/opt/tool/bin/python", own_has_torch=False)
    assert (t.executable, t.chosen_by) == (str(py3), "path")
    assert t.reason == ("python3 on PATH (no venv or conda env active, and envcheck's own interpreter "
                        "has no torch)")
    t = target.resolve(env={"PATH": str(tmp_path / "empty")}, own="/opt/tool/bin/python", own_has_torch=False)
    assert (t.executable, t.chosen_by) == ("/opt/tool/bin/python", "envcheck_fallback")


def test_a_stale_virtual_env_is_skipped_and_said(tmp_path):
    t = target.resolve(env={"VIRTUAL_ENV": str(tmp_path / "deleted"), "PATH": ""},
                       own="/opt/tool/bin/python", own_has_torch=True)
    assert t.chosen_by == "envcheck"
    assert f"VIRTUAL_ENV={tmp_path / 'deleted'} has no bin/python" in t.reason


@pytest.mark.parametrize("kind", ["script", "text", "folder", "missing"])
def test_python_option_that_is_not_an_interpreter(kind, tmp_path):
    path = tmp_path / kind
    if kind == "script":
        path.write_text("#!/bin/sh\necho hello\n")
        path.chmod(0o755)
        why = "is not a Python interpreter"
    elif kind == "text":
        path.write_text("not a program\n")
        why = "is not executable"
    elif kind == "folder":
        path.mkdir()
        why = "a folder without bin/python"
    else:
        why = "no such interpreter or folder"
    with pytest.raises(target.TargetError, match=why) as exc:
        target.resolve(str(path), env={})
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"--python {path}")


def test_the_interpreter_check_ignores_a_hostile_cwd(tmp_path, monkeypatch):
    (tmp_path / "sys.py").write_text("raise SystemExit('cwd module imported')\n")
    monkeypatch.chdir(tmp_path)
    assert target.check_interpreter(sys.executable) == f"{sys.version_info[0]}.{sys.version_info[1]}"


# ------------------------------------------------------------------ the CLI


def _cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli.cli, list(args), env=env)


@pytest.mark.parametrize("command", ["doctor", "install"])
def test_cli_python_not_an_interpreter_is_one_line_exit_2(command, tmp_path):
    script = tmp_path / "not-python"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    result = _cli(command, "--python", str(script))
    assert result.exit_code == exitcodes.USAGE, result.output
    assert f"--python {script}: {script} is not a Python interpreter" in result.stderr
    assert result.stdout == ""


def _tool_venv(path: Path) -> Path:
    """envcheck installed in a venv of its own, without torch: envcheck (with recipes/ as
    envcheck._recipes, as the wheel has it) and click, psutil, pynvml, packaging - linked."""
    venv = _venv(path)
    site = _site(venv)
    pkg = site / "envcheck"
    pkg.mkdir()
    for entry in (ROOT / "envcheck").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "_recipes").symlink_to(ROOT / "recipes")
    for mod in ("click", "psutil", "pynvml", "packaging"):
        origin = Path(importlib.util.find_spec(mod).origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (site / src.name).symlink_to(src)
    return venv


@pytest.mark.skipif(not HAS_TORCH or os.name != "posix", reason="needs torch in this Python and a POSIX venv layout")
def test_pipx_style_layout_doctor_and_install_judge_the_users_torch(tmp_path, user_venv):
    tool = _tool_venv(tmp_path / "tool")
    tool_py = _python(tool)
    no_torch = subprocess.run([tool_py, "-c", "import torch"], capture_output=True, cwd=tmp_path)
    assert no_torch.returncode != 0  # the tool venv really has no torch
    # `source ~/venv/bin/activate` in the user's shell: VIRTUAL_ENV and PATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONDA_PREFIX", "VIRTUAL_ENV")}
    env.update(VIRTUAL_ENV=str(user_venv), PATH=f"{user_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    def envcheck(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([tool_py, "-m", "envcheck", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)

    doctor = envcheck("doctor", "--format", "json")
    assert doctor.returncode in (0, 1), doctor.stderr
    doc = json.loads(doctor.stdout)
    assert doc["target"] == {"executable": _python(user_venv), "chosen_by": "virtual_env",
                             "reason": f"active venv {user_venv} (VIRTUAL_ENV)", "choose_another": "--python PATH"}
    assert doc["python"]["executable"] == _python(user_venv) and doc["python"]["venv"] is True
    assert doc["torch"]["status"] == "ok" and doc["torch"]["version"].startswith("2.")
    assert "torch.missing" not in {f["id"] for f in doc["findings"]}
    text = envcheck("doctor").stdout
    assert f"judged: active venv {user_venv} (VIRTUAL_ENV); choose another with --python PATH" in \
        " ".join(line.strip() for line in text.splitlines())

    plan = json.loads(envcheck("install", "--format", "json").stdout)
    assert plan["machine"]["executable"] == _python(user_venv)
    assert plan["machine"]["installed_torch"] == doc["torch"]["version"]
    assert plan["target"]["chosen_by"] == "virtual_env"

    # Without the activated venv, the tool's own interpreter (no torch) is not what is judged.
    env.pop("VIRTUAL_ENV")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(user_venv / "bin"))
    alone = json.loads(envcheck("doctor", "--format", "json").stdout)
    assert alone["target"]["chosen_by"] == "path" and alone["python"]["executable"] != tool_py


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch in this Python")
def test_cli_conda_prefix_is_judged(tmp_path):
    conda_env = _with_torch(_venv(tmp_path / "envs" / "train"))
    (conda_env / "conda-meta").mkdir()
    env = {"VIRTUAL_ENV": None, "CONDA_PREFIX": str(conda_env), "CONDA_DEFAULT_ENV": "train"}
    result = _cli("doctor", "--format", "json", env=env)
    doc = json.loads(result.stdout)
    assert doc["target"]["chosen_by"] == "conda_prefix"
    assert doc["target"]["reason"] == f"active conda env train (CONDA_PREFIX={conda_env})"
    assert doc["python"]["executable"] == _python(conda_env) and doc["torch"]["status"] == "ok"
