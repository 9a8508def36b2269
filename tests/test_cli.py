"""The command line through CliRunner: help of every command, doctor's exit codes (0/1/2/3),
JSON round trip, --save, colour switches."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from envcheck import exitcodes, rules
from envcheck import snapshot as snap
from envcheck.cli import cli

SNAPSHOTS = Path(__file__).resolve().parent / "fixtures" / "snapshots"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*args: str, env: dict | None = None):
    # NO_COLOR/FORCE_COLOR from the developer's shell must not leak into the assertions.
    base = {"NO_COLOR": None, "FORCE_COLOR": None}
    return CliRunner().invoke(cli, list(args), env={**base, **(env or {})}, catch_exceptions=False,
                              prog_name="envcheck")


def fixture(name: str) -> str:
    return str(SNAPSHOTS / f"{name}.json")


# ------------------------------------------------------------------ help


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _command_paths(cmd, (*prefix, name))


def test_top_level_help_lists_commands_and_exit_codes():
    result = run("--help")
    assert result.exit_code == 0
    assert "doctor" in result.stdout and "Exit codes" in result.stdout


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("envcheck, version ")


@pytest.mark.parametrize("path", list(_command_paths(cli)), ids=" ".join)
def test_every_subcommand_has_help(path):
    """Every registered (sub)command, including ones added later, answers --help."""
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: envcheck " + " ".join(path))
    assert result.stderr == ""


def test_doctor_help_documents_the_options():
    out = run("doctor", "--help").stdout
    for option in ("--format", "--save", "--snapshot", "--python", "--timeout", "--strict", "--color"):
        assert option in out


# ------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("name,args,code", [
    ("healthy_8xh100", (), exitcodes.OK),
    ("cpu_only_vm", (), exitcodes.OK),                      # info only
    ("cpu_only_vm", ("--strict",), exitcodes.OK),           # info never fails, even strict
    ("docker_small_shm", (), exitcodes.OK),                 # warnings only
    ("docker_small_shm", ("--strict",), exitcodes.FINDINGS),
    ("driver_too_old_cu130", (), exitcodes.FINDINGS),
    ("torch_import_crash", ("--format", "json"), exitcodes.FINDINGS),
])
def test_doctor_exit_codes(name, args, code):
    result = run("doctor", "--snapshot", fixture(name), *args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


def test_malformed_snapshot_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = run("doctor", "--snapshot", str(bad))
    assert result.exit_code == exitcodes.USAGE
    assert "is not valid JSON" in result.stderr and result.stdout == ""


def test_not_a_snapshot_is_a_usage_error(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    result = run("doctor", "--snapshot", str(other))
    assert result.exit_code == exitcodes.USAGE and "not an envcheck snapshot" in result.stderr


def test_newer_schema_is_a_usage_error(tmp_path):
    data = json.loads(Path(fixture("healthy_8xh100")).read_text(encoding="utf-8"))
    data["schema_version"] = snap.SCHEMA_VERSION + 1
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data), encoding="utf-8")
    result = run("doctor", "--snapshot", str(newer))
    assert result.exit_code == exitcodes.USAGE
    assert "newer than" in result.stderr and "upgrade envcheck" in result.stderr


def test_missing_snapshot_file_is_a_usage_error(tmp_path):
    result = run("doctor", "--snapshot", str(tmp_path / "nope.json"))
    assert result.exit_code == exitcodes.USAGE and "cannot read snapshot" in result.stderr


def test_snapshot_and_python_exclude_each_other():
    result = run("doctor", "--snapshot", fixture("healthy_8xh100"), "--python", sys.executable)
    assert result.exit_code == exitcodes.USAGE
    assert "--snapshot and --python exclude each other" in result.stderr


def test_unknown_option_and_format_are_usage_errors():
    assert run("doctor", "--bogus").exit_code == exitcodes.USAGE
    assert run("doctor", "--format", "xml", "--snapshot", fixture("healthy_8xh100")).exit_code == exitcodes.USAGE


def test_internal_error_exits_3_without_traceback(monkeypatch):
    """A bug outside the per-rule guard (here the renderer) is envcheck's failure: exit 3."""
    from envcheck.report import doctor as render

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(render, "to_text", broken)
    result = CliRunner().invoke(cli, ["doctor", "--snapshot", fixture("healthy_8xh100")])
    assert result.exit_code == exitcodes.INTERNAL
    assert "internal error: RuntimeError: renderer exploded" in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_of_an_internal_error(monkeypatch):
    from envcheck.report import doctor as render

    monkeypatch.setattr(render, "to_json", lambda *a, **k: 1 / 0)
    result = CliRunner().invoke(cli, ["--debug", "doctor", "--snapshot", fixture("healthy_8xh100"),
                                      "--format", "json"])
    assert result.exit_code == exitcodes.INTERNAL
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr


def test_a_failing_rule_is_a_finding_not_a_crash(monkeypatch):
    def broken(snapshot):
        raise KeyError("oops")

    rules._load_rule_modules()
    monkeypatch.setattr(rules, "REGISTRY", [*rules.REGISTRY, broken])
    result = run("doctor", "--snapshot", fixture("healthy_8xh100"), "--format", "json")
    assert result.exit_code == exitcodes.OK  # rule-failed is a warning
    ids = [f["id"] for f in json.loads(result.stdout)["findings"]]
    assert ids == ["envcheck.rule-failed"]


# ------------------------------------------------------------------ JSON and --save


@pytest.mark.parametrize("name", ["driver_too_old_cu130", "cpu_only_vm", "ecc_errors"])
def test_json_round_trips(name, tmp_path):
    result = run("doctor", "--snapshot", fixture(name), "--format", "json")
    doc = json.loads(result.stdout)
    original = snap.load(fixture(name))
    assert {k: v for k, v in doc.items() if k not in ("findings", "summary", "replayed_from")} == original
    assert doc["replayed_from"] == {"file": fixture(name), "probed_at": original["created_at"]}
    assert doc["findings"] == [f.to_dict() for f in rules.evaluate(original)]
    assert doc["summary"]["exit_code"] == result.exit_code
    # the JSON report is itself a snapshot doctor can read again, with the same diagnosis
    again_path = tmp_path / "again.json"
    again_path.write_text(result.stdout, encoding="utf-8")
    again = run("doctor", "--snapshot", str(again_path), "--format", "json")
    assert json.loads(again.stdout)["findings"] == doc["findings"]
    assert again.exit_code == result.exit_code


def test_save_writes_a_loadable_snapshot(tmp_path):
    out = tmp_path / "saved.json"
    result = run("doctor", "--snapshot", fixture("ecc_errors"), "--save", str(out))
    assert result.exit_code == exitcodes.FINDINGS
    assert f"snapshot saved to {out}" in result.stderr
    assert snap.load(out) == snap.load(fixture("ecc_errors"))


def test_doctor_on_this_machine(tmp_path):
    """The real probes, end to end: JSON on stdout, progress on stderr, --save loadable, and
    the exit code is the diagnosis of what was saved (this runs on CPU-only CI and on GPUs)."""
    out = tmp_path / "me.json"
    result = run("doctor", "--format", "json", "--save", str(out), "--timeout", "60")
    assert result.exit_code in (exitcodes.OK, exitcodes.FINDINGS), result.output
    doc = json.loads(result.stdout)
    saved = snap.load(out)
    assert doc["findings"] == [f.to_dict() for f in rules.evaluate(saved)]
    assert result.exit_code == rules.exit_code(rules.evaluate(saved))
    assert not [f for f in doc["findings"] if f["id"] == "envcheck.rule-failed"]
    if saved["nvidia"].get("nvml", {}).get("status") == "library_not_found" and saved["torch"]["status"] == "ok":
        # a CPU machine with torch: no GPU is information, not an error
        assert result.exit_code == exitcodes.OK
        assert "nvidia.no-gpu" in [f["id"] for f in doc["findings"]]


# ------------------------------------------------------------------ colour


def test_no_colour_when_not_a_terminal():
    assert not ANSI.search(run("doctor", "--snapshot", fixture("driver_too_old_cu130")).stdout)


def test_color_flag_forces_colour():
    assert ANSI.search(run("doctor", "--snapshot", fixture("driver_too_old_cu130"), "--color").stdout)


def test_force_color_and_no_color(monkeypatch):
    forced = run("doctor", "--snapshot", fixture("driver_too_old_cu130"), env={"FORCE_COLOR": "1"})
    assert ANSI.search(forced.stdout)
    both = run("doctor", "--snapshot", fixture("driver_too_old_cu130"), env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not ANSI.search(both.stdout)  # NO_COLOR wins (no-color.org)
    off = run("doctor", "--snapshot", fixture("driver_too_old_cu130"), "--no-color", env={"FORCE_COLOR": "1"})
    assert not ANSI.search(off.stdout)


def test_json_is_never_coloured():
    result = run("doctor", "--snapshot", fixture("driver_too_old_cu130"), "--format", "json", "--color")
    assert not ANSI.search(result.stdout)
    json.loads(result.stdout)


def test_report_goes_to_stdout_and_nothing_else():
    result = run("doctor", "--snapshot", fixture("healthy_8xh100"), "--format", "json")
    json.loads(result.stdout)  # stdout is exactly one JSON document
    assert result.stderr == ""


# -- issue 13: node-health options -------------------------------------------------------------


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--xid-window", "5m"], exitcodes.OK, "earlier in this boot"),
    (["--xid-window", "2h"], exitcodes.FINDINGS, "XID 48"),
    (["--xid-window", "nan"], exitcodes.USAGE, "finite duration"),
    (["--xid-window", "inf"], exitcodes.USAGE, "finite duration"),
    (["--xid-window", "soon"], exitcodes.USAGE, "not a duration"),
    (["--node-profile", "dgx-z9"], exitcodes.USAGE, "unknown profile"),
    (["--expect-gpus", "0"], exitcodes.USAGE, "--expect-gpus"),
])
def test_node_options_are_validated(args, code, words):
    fixture_name = "xid_earlier_in_boot"
    result = run("doctor", "--snapshot", fixture(fixture_name), *args)
    assert result.exit_code == code, result.output
    assert words in result.output


def test_expect_gpus_and_node_profile_reach_the_rules():
    assert run("doctor", "--snapshot", fixture("six_of_eight_expected")).exit_code == exitcodes.OK
    result = run("doctor", "--snapshot", fixture("six_of_eight_expected"), "--expect-gpus", "8")
    assert result.exit_code == exitcodes.FINDINGS and "6 GPUs where 8 are expected" in result.output
    result = run("doctor", "--snapshot", fixture("gpus_missing_from_driver"), "--node-profile", "none")
    assert "GPUs where" not in result.output
    assert "GPUs where" in run("doctor", "--snapshot", fixture("gpus_missing_from_driver")).output


# ------------------------------------------------------------------ bad numeric input (issue 10, class 6)


def _one_line_usage_error(result, *words: str) -> None:
    assert result.exit_code == exitcodes.USAGE, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # not Click's "Usage: / Try ... / Error:" three lines
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "+Infinity", "1e999"])
def test_doctor_timeout_must_be_finite(value):
    _one_line_usage_error(run("doctor", "--snapshot", fixture("healthy_8xh100"), "--timeout", value),
                          "--timeout", "finite")


@pytest.mark.parametrize("args,words", [
    (("--timeout", "0.5"), ("--timeout",)),
    (("--timeout", "1e12"), ("--timeout",)),
    (("--timeout", "ten"), ("--timeout",)),
])
def test_doctor_timeout_range(args, words):
    _one_line_usage_error(run("doctor", "--snapshot", fixture("healthy_8xh100"), *args), *words)


@pytest.mark.parametrize("args,words", [
    (("--timeout", "nan"), ("--timeout", "finite")),
    (("--budget", "inf"), ("--budget", "finite")),
    (("--duration", "inf"), ("--duration", "finite")),
    (("--duration", "-inf"), ("--duration", "finite")),
    (("--duration", "1e9"), ("--duration",)),
    (("--straggler-threshold", "nan"), ("--straggler-threshold", "finite")),
    (("--straggler-threshold", "0"), ("--straggler-threshold",)),
    (("--procs", "100000"), ("--procs",)),
    (("--allreduce-max-mib", "1000000000"), ("--allreduce-max-mib",)),
    (("--checks", ""), ("--checks", "names nothing")),
    (("--checks", " , "), ("--checks", "names nothing")),
])
def test_validate_rejects_non_finite_and_absurd_values_before_any_work(args, words):
    """Refused while parsing: no torch is imported, nothing starts."""
    _one_line_usage_error(run("validate", *args), *words)


@pytest.mark.parametrize("args,words", [
    (("doctor", "--bogus"), ("Error:", "--bogus", "'envcheck doctor --help'")),
    (("bogus",), ("Error:", "bogus", "'envcheck --help'")),
    (("--bogus",), ("Error:", "--bogus")),
    (("doctor", "--format", "xml"), ("--format", "xml")),
    (("install", "--platform", "amiga"), ("--platform",)),
    (("doctor", "--snapshot", fixture("healthy_8xh100"), "--python", sys.executable), ("exclude each other",)),
])
def test_usage_errors_are_one_line(args, words):
    _one_line_usage_error(run(*args), *words)


@pytest.mark.parametrize("command", ["doctor", "install"])
def test_python_that_is_not_an_interpreter_is_a_usage_error(command, tmp_path):
    ls = tmp_path / "ls"
    ls.write_text("#!/bin/sh\necho not python\n")
    ls.chmod(0o755)
    _one_line_usage_error(run(command, "--python", str(ls)), "not a Python interpreter")
    _one_line_usage_error(run(command, "--python", str(tmp_path)), "without bin/python")
    # a symlink named like anything, leading to a python, is a python (it is run, not judged by name)
    link = tmp_path / "mypy-interp"
    link.symlink_to(Path(sys.executable).resolve())
    from envcheck import target

    assert target.resolve(str(link)).executable == str(link)
    assert target.resolve(sys.executable).executable == sys.executable


# ------------------------------------------------------------------ the output stage (issue 10, classes 4 and 5)


def test_stdout_and_stderr_are_scrubbed_at_the_output_stage(capsys):
    """Everything doctor and install print passes cli._write (stdout) or cli._progress (stderr):
    a torch import error quoted on stderr, pip's output, a report line on stdout."""
    from envcheck import cli as cli_module

    cli_module._progress("envcheck: validate needs a working torch: OSError: https://u:pw@h/?token=abc \x1b]0;x\x07")
    cli_module._write("\x1b[1mfix\x1b[0m  export HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz\n")
    out, err = capsys.readouterr()
    assert err == "envcheck: validate needs a working torch: OSError: https://***@h/?token=<redacted> \\x1b]0;x\\x07\n"
    assert out == "\x1b[1mfix\x1b[0m  export HF_TOKEN=<redacted>\n"  # envcheck's own colour codes kept


def test_cli_only_wires_no_function_longer_than_40_lines():
    """Issue 9: decisions live in the engines; cli.py parses, calls and prints."""
    import ast

    from envcheck import cli as cli_module

    tree = ast.parse(Path(cli_module.__file__).read_text(encoding="utf-8"))
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 40}
    assert not long, long


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "601"])
def test_install_online_timeout_must_be_finite_and_bounded(value):
    _one_line_usage_error(run("install", "--online", "--online-timeout", value), "--online-timeout")
