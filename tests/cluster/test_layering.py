"""The import direction between envcheck.cluster and envcheck.validate (issue 9).

cluster/ is launcher-agnostic plumbing used by several commands: it never imports validate.
validate/ may use cluster/'s helpers (exit codes, Prometheus, Slurm, hostlists, launcher
detection) and nothing else of it. Imports are read with ast, lazy ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "envcheck"
CLUSTER_HELPERS = {"exitmodes", "prom", "slurm", "hostlist", "launch", "store"}


def _imports(path: Path) -> list[str]:
    """Every module name imported anywhere in ``path`` (``from a import b`` gives a.b too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("cluster"), ids=lambda p: p.name)
def test_cluster_never_imports_validate(path):
    bad = [n for n in _imports(path) if n == "envcheck.validate" or n.startswith("envcheck.validate.")]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", _modules("validate"), ids=lambda p: str(p.relative_to(PKG)))
def test_validate_uses_only_the_launcher_agnostic_cluster_helpers(path):
    bad = []
    for name in _imports(path):
        parts = name.split(".")
        # "envcheck.cluster" alone is the package of a `from envcheck.cluster import x` (x is checked)
        if parts[:2] == ["envcheck", "cluster"] and len(parts) > 2 and parts[2] not in CLUSTER_HELPERS:
            bad.append(name)
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_the_check_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from envcheck.validate import runner\n")
    assert "envcheck.validate.runner" in _imports(f)
