"""doctor --scope node and a --snapshot replay through the CLI (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from envcheck import exitcodes, rules
from envcheck.cli import cli
from envcheck.probes import torch as torch_probe

SNAPSHOTS = Path(__file__).resolve().parent / "fixtures" / "snapshots"
PYTHON_AREAS = ("torch", "env", "python")


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env={"NO_COLOR": None, "FORCE_COLOR": None, **(env or {})},
                              catch_exceptions=False, prog_name="envcheck")


def test_scope_node_on_a_healthy_node_without_torch_is_ready():
    path = str(SNAPSHOTS / "torch_missing.json")
    full = run("doctor", "--snapshot", path, "--format", "json")
    assert full.exit_code == exitcodes.FINDINGS  # torch.missing
    result = run("doctor", "--snapshot", path, "--scope", "node", "--format", "json")
    assert result.exit_code == exitcodes.OK, result.stdout
    doc = json.loads(result.stdout)
    assert doc["summary"]["scope"] == "node" and doc["summary"]["verdict"] == "ready"
    assert not [f for f in doc["findings"] if rules.area(f["id"]) in PYTHON_AREAS]
    text = run("doctor", "--snapshot", path, "--scope", "node").stdout
    assert "scope: node (driver, GPUs, host; no Python environment judged)" in text
    assert "  Python     not judged (--scope node: the node alone, no Python environment)" in text
    assert "torch.missing" not in text and "\n  torch " not in text


def test_scope_node_probes_no_interpreter(monkeypatch):
    def must_not_run(*_a, **_k):
        raise AssertionError("the torch probe ran under --scope node")

    monkeypatch.setattr(torch_probe, "probe", must_not_run)
    result = run("doctor", "--scope", "node", "--format", "json")
    assert result.exit_code in (exitcodes.OK, exitcodes.FINDINGS), result.output
    doc = json.loads(result.stdout)
    assert doc["python"] == doc["torch"] == {"unavailable": "not probed: --scope node judges the node alone"}
    assert "target" not in doc and "torch" not in doc["probe_seconds"]
    assert not [f for f in doc["findings"] if rules.area(f["id"]) in PYTHON_AREAS]
    assert not [f for f in doc["findings"] if f["id"].endswith("probe-failed")]


def test_scope_node_and_python_exclude_each_other(tmp_path):
    result = run("doctor", "--scope", "node", "--python", str(tmp_path))
    assert result.exit_code == exitcodes.USAGE
    assert "--scope node and --python exclude each other" in result.stderr


def test_a_replayed_snapshot_says_so_in_text_and_json():
    path = str(SNAPSHOTS / "ecc_errors.json")
    text = run("doctor", "--snapshot", path).stdout
    lines = text.splitlines()
    assert lines[0] == "envcheck doctor - gpu-node-017 - 2026-11-23T09:00:00Z"
    assert " ".join(lines[1:3]).startswith(f"replayed from {path} (probed at 2026-11-23T09:00:00Z); "
                                           "nothing was probed now")
    doc = json.loads(run("doctor", "--snapshot", path, "--format", "json").stdout)
    assert doc["replayed_from"] == {"file": path, "probed_at": "2026-11-23T09:00:00Z"}


def test_a_live_run_is_not_marked_replayed(monkeypatch, tmp_path):
    saved = tmp_path / "snap.json"
    result = run("doctor", "--scope", "node", "--save", str(saved), "--format", "json")
    assert "replayed_from" not in json.loads(result.stdout)
    # the saved snapshot replayed: marked with the file read now
    again = json.loads(run("doctor", "--snapshot", str(saved), "--format", "json").stdout)
    assert again["replayed_from"]["file"] == str(saved)
