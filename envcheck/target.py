"""Which Python interpreter to judge: the user's environment, not envcheck's own.

envcheck is installed the way a CLI is (its own venv, pipx, ``uv tool``), so ``sys.executable``
is usually the tool's venv, without torch; what the user means is the environment they work
in. :func:`resolve` picks, in order:

1. ``--python PATH`` (an interpreter, or a venv / conda folder); checked by running it, and a
   path that is not a Python interpreter is a :class:`TargetError` (exit 2 in the CLI);
2. the active venv: ``VIRTUAL_ENV`` (set by ``bin/activate``, ``uv run``, poetry/pipenv shells);
3. the active conda environment: ``CONDA_PREFIX`` (``conda activate`` sets it to the env it
   activated; ``CONDA_PREFIX_1`` keeps the one below, often base, which is not used). An
   auto-activated base is still what ``python`` runs in that shell, so it is judged, and the
   reason says it is base;
4. envcheck's own interpreter, when torch is installed there (found without importing it);
5. ``python3`` on PATH (``python`` on Windows);
6. envcheck's own interpreter, as a last resort (the reason says so).

This is an edge module (it reads environment variables and PATH and runs an interpreter for
the ``--python`` check); everything else takes the resulting :class:`Target`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOW_TO_CHOOSE = "--python PATH"
CHECK_TIMEOUT_S = 10.0
_MARK = "@@envcheck-python@@"
# Runs on any Python, 2.7 included, so a too-old interpreter is named rather than refused blindly.
_CHECK = "import sys; sys.stdout.write('" + _MARK + " %d.%d' % tuple(sys.version_info[:2]))"


class TargetError(ValueError):
    """--python names something that is not a usable Python interpreter (one line)."""


@dataclass(frozen=True)
class Target:
    """The interpreter to judge, and why it was chosen."""

    executable: str
    chosen_by: str  # option | virtual_env | conda_prefix | envcheck | path | envcheck_fallback
    reason: str

    def to_dict(self) -> dict:
        return {"executable": self.executable, "chosen_by": self.chosen_by, "reason": self.reason,
                "choose_another": HOW_TO_CHOOSE}


def interpreter_in(folder: str | os.PathLike) -> str | None:
    """The python of a venv or conda folder (POSIX or Windows layout), or None."""
    p = Path(folder)
    for rel in ("bin/python", "bin/python3", "Scripts/python.exe", "python.exe"):
        if (p / rel).is_file():
            return str(p / rel)
    return None


def check_interpreter(path: str, timeout: float = CHECK_TIMEOUT_S) -> str:
    """Run ``path`` as a Python and return its "X.Y", or raise TargetError with why not.

    From a fresh empty folder, with ``-E -s``: nothing from the working directory, PYTHONPATH
    or user site-packages can run (the check only needs ``sys``)."""
    if not os.access(path, os.X_OK):
        raise TargetError(f"{path} is not executable")
    from envcheck import proc  # the one launcher: own session, tree killed, deadline

    with tempfile.TemporaryDirectory(prefix="envcheck-target-") as cwd:
        code, out, err = proc.run([path, "-E", "-s", "-c", _CHECK], timeout, limit=4096, cwd=cwd)
    if code == 124:
        raise TargetError(f"{path} did not answer as a Python interpreter within {timeout:g} s")
    if code in (126, 127):
        raise TargetError(f"{path} cannot be run: {err.split(': ', 1)[-1]}")
    if code != 0 or _MARK not in out:
        return_note = f"exit status {code}" if code else "no answer"
        raise TargetError(f"{path} is not a Python interpreter ({return_note})")
    return out.split(_MARK, 1)[1].strip()


def _from_option(python: str) -> Target:
    p = Path(python).expanduser()
    if p.is_dir():
        exe = interpreter_in(p)
        if exe is None:
            raise TargetError(f"--python {python}: a folder without bin/python (not a venv or conda environment)")
        what = f"--python {python} (the interpreter of that folder)"
    elif p.exists():
        exe, what = str(p), f"--python {python}"
    else:
        raise TargetError(f"--python {python}: no such interpreter or folder")
    try:
        version = check_interpreter(exe)
    except TargetError as exc:
        raise TargetError(f"--python {python}: {exc}") from None
    if version.split(".")[0] != "3":
        raise TargetError(f"--python {python}: Python {version}, envcheck judges Python 3 interpreters")
    return Target(exe, "option", what)


def _has_torch_here() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _conda_reason(prefix: str, env: Mapping[str, str]) -> str:
    name = env.get("CONDA_DEFAULT_ENV") or os.path.basename(prefix.rstrip("/\\"))
    base = name == "base" or (Path(prefix) / "condabin").is_dir()
    if base:
        return f"conda base environment {prefix} (CONDA_PREFIX; no other conda env is activated)"
    return f"active conda env {name} (CONDA_PREFIX={prefix})"


def resolve(python: str | None = None, env: Mapping[str, str] | None = None,
            own: str | None = None, own_has_torch: bool | None = None) -> Target:
    """The interpreter to judge (see the module docstring for the order). Raises TargetError
    only for an explicit ``python`` that is not a Python interpreter."""
    env = os.environ if env is None else env
    own = own if own is not None else sys.executable
    if python:
        return _from_option(python)
    skipped: list[str] = []
    venv = env.get("VIRTUAL_ENV")
    if venv:
        exe = interpreter_in(venv)
        if exe:
            return Target(exe, "virtual_env", f"active venv {venv} (VIRTUAL_ENV)")
        skipped.append(f"VIRTUAL_ENV={venv} has no bin/python")
    conda = env.get("CONDA_PREFIX")
    if conda:
        exe = interpreter_in(conda)
        if exe:
            return Target(exe, "conda_prefix", _conda_reason(conda, env))
        skipped.append(f"CONDA_PREFIX={conda} has no python")
    note = f"; {'; '.join(skipped)}" if skipped else ""
    has_torch = _has_torch_here() if own_has_torch is None else own_has_torch
    if own and has_torch:
        return Target(own, "envcheck",
                      f"envcheck's own interpreter, which has torch (no venv or conda env active{note})")
    name = "python" if os.name == "nt" else "python3"
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found:
        why = "no venv or conda env active, and envcheck's own interpreter has no torch"
        return Target(found, "path", f"{name} on PATH ({why}{note})")
    return Target(own or name, "envcheck_fallback",
                  f"envcheck's own interpreter (no venv or conda env active, no {name} on PATH{note})")


def default_python(env: Mapping[str, str] | None = None) -> Target:
    """The default target of doctor, install and validate when ``--python`` is not given."""
    return resolve(None, env=env)
