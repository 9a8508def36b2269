"""--exit-codes: every mode's code and line, for doctor outcomes, validate verdicts and crashes."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from envcheck.cli import cli
from envcheck.cluster import exitmodes
from envcheck.cluster.exitmodes import Outcome, decide, doctor_outcome, validate_outcome
from envcheck.findings import Finding, Severity

SNAPSHOT = "tests/fixtures/snapshots/example_8xh100.json"


def f(fid: str, sev: str) -> Finding:
    return Finding(id=fid, severity=Severity(sev), title=fid)


ERR = [f("torch.missing", "error"), f("host.shm-small", "warn"), f("nvidia.no-gpu", "info")]
WARN_ONLY = [f("host.shm-small", "warn"), f("nvidia.no-gpu", "info")]
CLEAN = [f("nvidia.no-gpu", "info")]

# (findings, strict) -> expected code per mode
DOCTOR_TABLE = [
    (CLEAN, False, {"default": 0, "nagios": 0, "npd": 0, "binary": 0}),
    (WARN_ONLY, False, {"default": 0, "nagios": 1, "npd": 0, "binary": 0}),
    (WARN_ONLY, True, {"default": 1, "nagios": 1, "npd": 1, "binary": 1}),
    (ERR, False, {"default": 1, "nagios": 2, "npd": 1, "binary": 1}),
    (ERR, True, {"default": 1, "nagios": 2, "npd": 1, "binary": 1}),
]


@pytest.mark.parametrize("findings, strict, codes", DOCTOR_TABLE)
def test_doctor_codes_pure(findings, strict, codes):
    outcome = doctor_outcome(findings, strict=strict)
    for mode, code in codes.items():
        assert decide(outcome, mode).code == code, mode


def test_doctor_outcome_accepts_dicts_and_names_problems():
    outcome = doctor_outcome([x.to_dict() for x in ERR])
    assert outcome.status == "fail" and outcome.problem
    assert outcome.problems == ("torch.missing",)
    assert outcome.summary == "1 error, 1 warning"
    assert dict((k, v) for k, v, _ in outcome.perfdata) == {"errors": 1, "warnings": 1, "info": 1}


@pytest.mark.parametrize("verdict, codes", [
    ("certified", {"default": 0, "nagios": 0, "npd": 0, "binary": 0}),
    ("passed", {"default": 0, "nagios": 0, "npd": 0, "binary": 0}),
    ("degraded", {"default": 1, "nagios": 1, "npd": 1, "binary": 1}),
    ("failed", {"default": 1, "nagios": 2, "npd": 1, "binary": 1}),
    ("???", {"default": 3, "nagios": 3, "npd": 2, "binary": 1}),
])
def test_validate_verdicts(verdict, codes):
    report = {"verdict": verdict, "checks": [{"name": "gemm", "status": "fail"}, {"name": "cnn", "status": "pass"}]}
    outcome = validate_outcome(report)
    for mode, code in codes.items():
        assert decide(outcome, mode).code == code, (verdict, mode)


def test_validate_cluster_report_names_bad_nodes():
    report = {"verdict": "degraded", "world_size": 4, "nodes": [
        {"node_rank": 0, "hostname": "gpu01", "verdict": "certified", "straggler": False},
        {"node_rank": 1, "hostname": "gpu02", "verdict": "certified", "straggler": True},
    ]}
    line = decide(validate_outcome(report), "npd").line
    assert line == "envcheck: WARN degraded on 1 node (gpu02)"


@pytest.mark.parametrize("mode, code", [("default", 3), ("nagios", 3), ("npd", 2), ("binary", 1)])
def test_internal_error_per_mode(mode, code):
    assert decide(exitmodes.internal_error_outcome("RuntimeError"), mode).code == code


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        decide(Outcome("ok", False, "x"), "zabbix")


# 'label'=value[UOM];[warn];[crit];[min];[max] (Nagios plugin API, performance data)
PERF = r"('[^']+'|[^ =']+)=-?[0-9.]+(s|ms|us|%|B|KB|MB|TB|c)?(;[-0-9.:~@]*){0,4}"
NAGIOS_LINE = re.compile(rf"^ENVCHECK (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| {PERF}( {PERF})*)?$")


@pytest.mark.parametrize("outcome", [
    doctor_outcome(ERR), doctor_outcome(WARN_ONLY), doctor_outcome(CLEAN),
    exitmodes.internal_error_outcome("KeyError"),
    Outcome("fail", True, "a | b\nc", ("x|y",), (("busbw gpu0", 123.5, "B"),)),
])
def test_nagios_line_follows_the_plugin_output_format(outcome):
    line = decide(outcome, "nagios").line
    assert "\n" not in line and line.count("|") <= 1
    assert NAGIOS_LINE.match(line), line


def test_nagios_line_content():
    assert decide(doctor_outcome(ERR), "nagios").line == (
        "ENVCHECK CRITICAL - 1 error, 1 warning: torch.missing | errors=1;;;0 warnings=1;;;0 info=1;;;0")
    assert decide(doctor_outcome(CLEAN), "nagios").line.startswith("ENVCHECK OK - no problems found | ")


@pytest.mark.parametrize("n", [0, 1, 3, 40])
def test_npd_line_fits_80_chars_and_counts_what_it_leaves_out(n):
    findings = [f(f"nvidia.gpu-{i}-ecc-uncorrectable-errors", "error") for i in range(n)]
    line = decide(doctor_outcome(findings), "npd").line
    assert len(line) <= 80 and "\n" not in line
    if n == 40:
        assert re.search(r"\+\d+\)$", line), line
        shown = line[line.index("(") + 1:line.rindex(" +")].split(",")
        assert len(shown) + int(line[line.rindex("+") + 1:-1]) == 40


def test_npd_line_cuts_a_long_summary():
    line = exitmodes.npd_line(Outcome("fail", True, "x" * 200))
    assert len(line) == 80 and line.endswith("...")


# ---- through the CLI ---------------------------------------------------------------------


@pytest.fixture
def fake_rules(monkeypatch):
    """Make doctor see chosen findings: the CLI wiring is tested, not today's rules."""
    import envcheck.rules as rules

    def use(findings):
        monkeypatch.setattr(rules, "evaluate", lambda snapshot, **_: list(findings))
    return use


def run(*args):
    return CliRunner().invoke(cli, ["doctor", "--snapshot", SNAPSHOT, *args])


@pytest.mark.parametrize("findings, strict, codes", DOCTOR_TABLE)
def test_doctor_cli_codes(fake_rules, findings, strict, codes):
    fake_rules(findings)
    for mode, code in codes.items():
        res = run("--exit-codes", mode, *(["--strict"] if strict else []))
        assert res.exit_code == code, (mode, res.output)


def test_doctor_cli_nagios_and_npd_print_one_line(fake_rules):
    fake_rules(ERR)
    res = run("--exit-codes", "nagios")
    assert res.stdout.splitlines() == [res.stdout.strip()] and res.stdout.startswith("ENVCHECK CRITICAL - ")
    res = run("--exit-codes", "npd")
    assert res.stdout == "envcheck: FAIL 1 error, 1 warning (torch.missing)\n"


def test_doctor_cli_binary_and_default_keep_the_report(fake_rules):
    fake_rules(ERR)
    for mode in ("binary", "default"):
        res = run("--exit-codes", mode, "--format", "json")
        assert res.exit_code == 1
        assert {x["id"] for x in json.loads(res.stdout)["findings"]} == {x.id for x in ERR}


def test_doctor_cli_json_with_a_one_line_mode_is_a_usage_error():
    res = run("--exit-codes", "npd", "--format", "json")
    assert res.exit_code == 2 and "exclude each other" in res.stderr


def test_doctor_cli_bad_mode_is_a_usage_error():
    res = run("--exit-codes", "zabbix")
    assert res.exit_code == 2 and "nagios" in res.stderr


@pytest.mark.parametrize("mode, code, line", [
    ("default", 3, ""),
    ("nagios", 3, "ENVCHECK UNKNOWN - envcheck failed: RuntimeError\n"),
    ("npd", 2, "envcheck: UNKNOWN envcheck failed: RuntimeError\n"),
    ("binary", 1, ""),
])
def test_doctor_cli_internal_error_per_mode(monkeypatch, mode, code, line):
    import envcheck.rules as rules

    def boom(snapshot, **_):
        raise RuntimeError("a bug with /secret/path in it")
    monkeypatch.setattr(rules, "evaluate", boom)
    res = run("--exit-codes", mode)
    assert res.exit_code == code
    assert res.stdout == line
    assert "internal error" in res.stderr and "Traceback" not in res.output
