"""The README's set-up commands, .ci/run and the test requirements agree, and the test set-up
declares every package the tests import. (The commands themselves run, as written, in a fresh
Debian 12 root with scripts/fresh_debian_check.sh: minutes, so by hand, not here.)"""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEST_CMD = "python3 -m venv .venv && .venv/bin/pip install -r requirements-test.txt && .venv/bin/python -m pytest"
DOCTOR_CMD = ("python3 -m venv ~/.venvs/envcheck && ~/.venvs/envcheck/bin/pip install . "
              "&& ~/.venvs/envcheck/bin/envcheck doctor")


def _code_lines(text: str) -> list[str]:
    return [line for block in re.findall(r"```\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_readme_set_up_installs_into_a_venv_not_the_system_python():
    lines = _code_lines(README.split("## Set-up", 1)[1].split("\n## ", 1)[0])
    assert lines == [DOCTOR_CMD, TEST_CMD]
    assert "python3-venv" in README  # Debian/Ubuntu split ensurepip out of python3


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert TEST_CMD in ci.splitlines()
    assert ci.index("rm -rf .venv") < ci.index(TEST_CMD)
    assert "python3 -m pip install" not in ci  # nothing into the system Python


def test_fresh_debian_script_exists_and_reads_the_readme():
    script = ROOT / "scripts" / "fresh_debian_check.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text(encoding="utf-8")
    assert "debootstrap bookworm" in text
    # it runs the README's lines themselves, found by how they start
    assert "grep -m1 '^python3 -m venv ~/.venvs/envcheck ' \"$repo/README.md\"" in text
    assert "grep -m1 '^python3 -m venv .venv ' \"$repo/README.md\"" in text


def test_requirements_take_the_cpu_torch_on_linux():
    req = (ROOT / "requirements-test.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in req.splitlines() if line.strip() and not line.startswith("#")]
    assert lines == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-e .[test]",
                     'torch==2.13.0+cpu ; sys_platform == "linux"', 'torch==2.13.0 ; sys_platform != "linux"']


# import name -> distribution, where they differ
DIST = {"yaml": "pyyaml", "pynvml": "nvidia-ml-py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.skipif(tomllib is None or not hasattr(sys, "stdlib_module_names"), reason="needs Python 3.11")
def test_every_package_the_tests_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in project["dependencies"] + project["optional-dependencies"]["test"]}
    declared.add("torch")  # requirements-test.txt
    local = {p.stem for d in ("tests", "bench", "scripts") for p in (ROOT / d).rglob("*.py")} | {"envcheck", "tests"}
    third_party = set()
    for path in [*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]:
        third_party |= {m for m in _imports(path) if m not in sys.stdlib_module_names and m not in local}
    missing = {DIST.get(m, m).lower().replace("_", "-") for m in third_party} - declared
    assert not missing, f"imported by tests/bench/scripts but not declared: {missing}"
    assert "numpy" in declared  # torch's CPU wheel does not require it; the workload tests do
