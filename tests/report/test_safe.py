"""Untrusted text is neutralised in every text renderer and in JUnit (issue 10, class 4):
envcheck.report.safe, and the doctor / install / validate / cluster renderers using it."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck import rules
from envcheck.cli import cli
from envcheck.report import cluster as cluster_render
from envcheck.report import doctor as doctor_render
from envcheck.report import safe
from envcheck.report import validate as validate_render

SNAPSHOTS = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"
# What an attacker would plant: set the terminal title (OSC 0 ... BEL), clear the screen (CSI 2J),
# a C1 CSI, a carriage return that overwrites the line, a bidi override (Trojan Source).
EVIL = "\x1b]0;pwned\x07\x1b[2J\x9b31m\rREADY\u202etxt.exe\u2066"
# envcheck's own styling: click.style's SGR sequences, nothing else.
OWN_SGR = re.compile(r"\x1b\[[0-9;]*m")
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _assert_inert(text: str) -> None:
    rest = OWN_SGR.sub("", text)
    assert not RAW.search(rest), repr(RAW.search(rest))
    assert "pwned" in rest or "READY" in rest  # the data is shown, as escapes, not dropped


# ------------------------------------------------------------------ the functions


@pytest.mark.parametrize("char,escape", [
    ("\x1b", "\\x1b"), ("\x07", "\\x07"), ("\x00", "\\x00"), ("\r", "\\x0d"), ("\x7f", "\\x7f"),
    ("\x9b", "\\x9b"), ("\u202e", "\\u202e"), ("\u2066", "\\u2066"), ("\u200f", "\\u200f"),
    ("\u2028", "\\u2028"), ("\ud800", "\\ud800"), ("\uffff", "\\uffff"),
])
def test_neutralise_escapes_each_class(char, escape):
    assert safe.neutralise(f"a{char}b") == f"a{escape}b"


def test_neutralise_keeps_text_newlines_and_tabs():
    text = "Traceback (most recent call last):\n\tFile \"x.py\"\nGPU naïve 東京"
    assert safe.neutralise(text) == text
    assert safe.neutralise("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"


def test_neutralise_obj_walks_keys_and_values():
    assert safe.neutralise_obj({"h\x1b": ["x\x07", ("y", 3)], "n": None}) == {"h\\x1b": ["x\\x07", ["y", 3]], "n": None}


def test_clean_text_scrubs_then_neutralises():
    assert safe.clean_text("HF_TOKEN=abc \x1b[2J\nnext", one_line=True) == "HF_TOKEN=<redacted> \\x1b[2J\\x0anext"


def test_xml_text_makes_any_string_well_formed_xml():
    every_bmp = "".join(chr(c) for c in range(0x10000)) + "\U0001f600"
    root = ET.Element("r", {"a": safe.xml_text(every_bmp)})
    root.text = safe.xml_text(every_bmp)
    ET.fromstring(ET.tostring(root, encoding="unicode").encode("utf-8"))


# ------------------------------------------------------------------ doctor


def _hostile_snapshot() -> dict:
    data = json.loads((SNAPSHOTS / "healthy_8xh100.json").read_text(encoding="utf-8"))
    data["host"]["hostname"] = "node" + EVIL
    data["nvidia"]["gpus"][0]["name"] = "NVIDIA H100" + EVIL
    data["host"]["disk"][0]["path"] = "/home/u/dir" + EVIL
    data["python"]["executable"] = "/opt/venv" + EVIL + "/bin/python"
    data["torch"] = {"status": "import_error", "distributions": [], "error": {
        "message": "ImportError: libcudart.so" + EVIL, "signal": None, "timeout_s": None,
        "stderr_tail": "Traceback (most recent call last):\n  ImportError: " + EVIL}}
    return data


@pytest.mark.parametrize("color", [False, True])
def test_doctor_text_shows_no_raw_control_characters(color):
    snapshot = _hostile_snapshot()
    text = doctor_render.to_text(snapshot, rules.evaluate(snapshot), color=color)
    _assert_inert(text)
    assert "node\\x1b]0;pwned\\x07" in text  # visible, so a reader sees what was there
    if color:
        assert OWN_SGR.search(text)  # envcheck's own colours survive


def test_doctor_json_round_trips_the_original_strings(tmp_path):
    snapshot = _hostile_snapshot()
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(snapshot), encoding="utf-8")
    result = CliRunner().invoke(cli, ["doctor", "--snapshot", str(path), "--format", "json"],
                                env={"NO_COLOR": None, "FORCE_COLOR": None}, prog_name="envcheck")
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout  # JSON escapes them itself
    doc = json.loads(result.stdout)
    assert doc["host"]["hostname"] == snapshot["host"]["hostname"]
    assert doc["nvidia"]["gpus"][0]["name"] == snapshot["nvidia"]["gpus"][0]["name"]
    text = CliRunner().invoke(cli, ["doctor", "--snapshot", str(path), "--color"],
                              env={"NO_COLOR": None, "FORCE_COLOR": None}, prog_name="envcheck")
    _assert_inert(text.stdout)


def test_stderr_messages_are_neutralised(tmp_path):
    """A path with an escape sequence, quoted back in an error message on stderr."""
    missing = tmp_path / ("x" + EVIL)
    result = CliRunner().invoke(cli, ["doctor", "--snapshot", str(missing)], prog_name="envcheck")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    _assert_inert(result.stderr)


# ------------------------------------------------------------------ install


def test_install_text_neutralises_probed_strings():
    from envcheck import recommend
    from envcheck.report import install as install_render

    machine = recommend.what_if_machine(gpus=["H100"], no_gpu=False, driver="570.124.06", python="3.12",
                                        platform="linux-x86_64", glibc="2.35")
    machine = dataclasses.replace(machine, executable="/home/u/venv" + EVIL + "/bin/python",
                                  installed_torch="2.5.0" + EVIL)
    plan = recommend.recommend(machine, None, [])
    for color in (False, True):
        _assert_inert(install_render.to_text(plan, color=color))


# ------------------------------------------------------------------ validate and cluster


def _validate_report():
    from envcheck.validate.results import CheckResult, Figure, ValidationReport

    checks = [CheckResult("gemm", "fail", {}, "torch said: " + EVIL, 1.0,
                          error={"kind": "crash" + EVIL, "message": EVIL, "traceback": "Traceback\n" + EVIL})]
    return ValidationReport(
        checks=checks, verdict="failed", reasons=["gemm failed: " + EVIL],
        figures=[Figure("gemm", "bf16_tflops", "cuda:0" + EVIL, 1.0, "TFLOPS")], device="cuda",
        devices=[{"index": 0, "name": "H100" + EVIL}], versions={"torch": "2.7" + EVIL},
        machine={"hostname": "node" + EVIL}, created_at="2026-11-23T09:00:00Z",
    )


@pytest.mark.parametrize("color", [False, True])
def test_validate_text_is_inert(color):
    _assert_inert(validate_render.to_text(_validate_report(), color=color))


def test_validate_junit_is_well_formed_whatever_a_message_holds():
    xml = validate_render.to_junit(_validate_report())
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.find("testsuite").get("hostname").startswith("node\\x1b")
    _assert_inert(xml)


def _cluster_report() -> dict:
    return {
        "verdict": "failed", "world_size": 2, "reasons": ["node 0: " + EVIL],
        "nodes": [{"node_rank": 0, "hostname": "peer" + EVIL, "verdict": "failed", "straggler": True,
                   "straggler_figures": [{"message": "slow " + EVIL}],
                   "ranks": [{"rank": 0, "error": "boom" + EVIL,
                              "checks": [{"name": "gemm" + EVIL, "status": "fail", "message": EVIL}]}]}],
        "missing_ranks": [{"rank": 1, "hostname": "h" + EVIL, "error": "never joined" + EVIL}],
    }


@pytest.mark.parametrize("color", [False, True])
def test_cluster_text_is_inert(color):
    _assert_inert(cluster_render.to_text(_cluster_report(), color=color))


def test_cluster_junit_is_well_formed():
    xml = cluster_render.to_junit(_cluster_report())
    ET.fromstring(xml.encode("utf-8"))
    _assert_inert(xml)



def test_neutralised_random_text_has_no_raw_control_character():
    """Seeded fuzz over every BMP code point class plus astral ones (no extra test dependency)."""
    import random

    rng = random.Random(4)
    for _ in range(2000):
        text = "".join(chr(rng.choice([rng.randrange(0, 0x250), rng.randrange(0x2000, 0x2100),
                                       rng.randrange(0xD800, 0x10000), rng.randrange(0x10000, 0x110000)]))
                       for _ in range(rng.randint(0, 20)))
        out = safe.neutralise(text)
        assert not RAW.search(out) and not re.search("[\ud800-\udfff\ufffe\uffff]", out)
        assert "\n" not in safe.neutralise(text, one_line=True)
