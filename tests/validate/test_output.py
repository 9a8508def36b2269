"""validate/output.py: the one output stage of both launch modes (files, stdout, exit code)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from envcheck.cli import cli
from envcheck.validate import output
from envcheck.validate.results import FAIL, PASS, CheckResult, ValidationReport

SECRET = "hunter2-very-secret"


def _node(verdict="passed", interrupted=False) -> dict:
    checks = [CheckResult("gemm", PASS, {}, "ok"),
              CheckResult("cnn", FAIL if verdict == "failed" else PASS, {}, f"failed with password={SECRET}")]
    return ValidationReport(checks=checks, verdict=verdict, interrupted=interrupted,
                            reasons=[f"token={SECRET}"]).to_dict()


def _cluster(verdict="failed") -> dict:
    return {"schema": "envcheck.cluster", "schema_version": 1, "verdict": verdict, "world_size": 2, "num_nodes": 1,
            "reasons": [f"rank 1: api_key={SECRET}"], "checks": [], "missing_ranks": [],
            "nodes": [{"node_rank": 0, "hostname": "n1", "verdict": verdict, "straggler": False,
                       "straggler_figures": [], "ranks": []}]}


@pytest.mark.parametrize("cluster", [False, True])
def test_every_output_is_scrubbed_and_written_by_the_one_writer(tmp_path, cluster):
    outs = output.Outputs(fmt="json", report_path=str(tmp_path / "r.json"), junit_path=str(tmp_path / "j.xml"),
                          prom_file=str(tmp_path / "m.prom"))
    said: list[str] = []
    code = output.emit(_cluster() if cluster else _node("failed"), outs, write=said.append,
                       progress=said.append, cluster=cluster)
    assert code == 1
    texts = said + [(tmp_path / n).read_text() for n in ("r.json", "j.xml", "m.prom")]
    assert not [t for t in texts if SECRET in t]
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "failed"
    assert sorted(os.listdir(tmp_path)) == ["j.xml", "m.prom", "r.json"]
    assert all((os.stat(tmp_path / n).st_mode & 0o777) == 0o644 for n in os.listdir(tmp_path))


def test_exit_codes_of_both_modes():
    quiet = {"write": lambda _t: None, "progress": lambda _t: None}
    assert output.emit(_node("passed"), output.Outputs(), **quiet) == 0
    assert output.emit(_node("failed"), output.Outputs(), **quiet) == 1
    assert output.emit(_node("passed", interrupted=True), output.Outputs(), **quiet) == 130
    assert output.emit(_cluster("failed"), output.Outputs(), cluster=True, launcher="srun", **quiet) == 1
    said: list[str] = []
    assert output.emit(_cluster("failed"), output.Outputs(), cluster=True, launcher="torchrun",
                       write=lambda _t: None, progress=said.append) == 0
    assert "exiting 0 so torchrun's other agents" in said[-1]
    lines: list[str] = []
    code = output.emit(_node("failed"), output.Outputs(exit_codes="nagios"), write=lines.append,
                       progress=lambda _t: None)
    assert code == 2 and lines[0].startswith("ENVCHECK CRITICAL")


def test_a_failed_write_is_one_line_and_the_report_still_prints(tmp_path):
    said: list[str] = []
    printed: list[str] = []
    (tmp_path / "dir.json").mkdir()
    code = output.emit(_node("passed"), output.Outputs(report_path=str(tmp_path / "dir.json")),
                       write=printed.append, progress=said.append)
    assert code == 0 and printed and "cannot write" in said[0] and "not a regular file" in said[0]


@pytest.mark.parametrize("option, path, needle", [
    ("--prom-file", "/dev/full", "not a regular file"),
    ("--report", "/dev/null", "not a regular file"),
])
def test_device_or_link_output_paths_are_refused_up_front(tmp_path, option, path, needle):
    r = CliRunner().invoke(cli, ["validate", option, path])
    assert r.exit_code == 2 and needle in r.stderr and r.stdout == ""


def test_a_symlink_report_path_is_refused_up_front(tmp_path):
    (tmp_path / "target").write_text("keep\n")
    (tmp_path / "link.json").symlink_to(tmp_path / "target")
    r = CliRunner().invoke(cli, ["validate", "--report", str(tmp_path / "link.json")])
    assert r.exit_code == 2 and "symbolic link" in r.stderr
    assert (tmp_path / "target").read_text() == "keep\n"
