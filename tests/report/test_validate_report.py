"""validate's renderers on a hand-made report: exact JSON keys, golden text, JUnit parsed back."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

from envcheck.report import validate as render
from envcheck.validate.results import CheckResult, Figure, ValidationReport


def sample() -> ValidationReport:
    checks = [
        CheckResult("cnn", "pass", {"samples_per_s": 7758.0}, "loss 2.302 -> 0.022 (x104.8) in 150 steps", 4.7),
        CheckResult("amp", "warn", {"bf16_speedup": 1.1}, "bf16 speedup x1.10 over fp32 is under x1.3", 3.9),
        CheckResult("compile", "skip", {}, "no C/C++ compiler found"),
        CheckResult("allreduce", "fail", {"hung_ranks": [1]}, "all-reduce hung: stuck rank(s) 1", 125.0,
                    error={"kind": "hang", "type": "AllReduceFailure", "message": "", "traceback": ""}),
        CheckResult("gemm", "fail", {"mismatched_products": 1}, "cuda:1 bf16: 1 of 20 repeated products differ",
                    2.5),
        CheckResult("memory", "pass", {"d2d_GBps": 2900.0}, "copy 2900.0 GB/s", 12.25),
    ]
    figures = [
        Figure("gemm", "bf16_tflops", "cuda:0", 700.0, "TFLOPS", 989, 593.4, "ok", "n=8192"),
        Figure("gemm", "bf16_tflops", "cuda:1", 420.5, "TFLOPS", 989, 593.4, "below", "n=8192"),
        Figure("cnn", "samples_per_s", "cuda:0", 7758.0, "samples/s"),
    ]
    return ValidationReport(
        checks=checks, verdict="failed", reasons=["allreduce failed: all-reduce hung: stuck rank(s) 1"],
        figures=figures, gpu_models={"cuda:0": "h100-sxm", "cuda:1": "h100-sxm"}, device="cuda",
        devices=[{"index": 0, "name": "NVIDIA H100 80GB HBM3"}, {"index": 1, "name": "NVIDIA H100 80GB HBM3"}],
        world_size=2, profile="standard", options={"timeout": 120.0},
        versions={"torch": "2.7.1+cu126", "cuda": "12.6", "nccl": "2.26.2", "python": "3.11.9"},
        machine={"hostname": "gpu-node-017"}, timings={"total_s": 150.5}, created_at="2026-11-23T09:00:00Z",
        envcheck_version="0.1.0",
    )


GOLDEN = """\
envcheck validate . gpu-node-017 . profile standard . 2 x NVIDIA H100 80GB HBM3
torch 2.7.1+cu126 . CUDA 12.6 . NCCL 2.26.2 . python 3.11.9

Checks
  PASS  cnn          4.7 s  loss 2.302 -> 0.022 (x104.8) in 150 steps
  WARN  amp          3.9 s  bf16 speedup x1.10 over fp32 is under x1.3
  SKIP  compile          -  no C/C++ compiler found
  FAIL  allreduce  125.0 s  all-reduce hung: stuck rank(s) 1
  FAIL  gemm         2.5 s  cuda:1 bf16: 1 of 20 repeated products differ
  PASS  memory      12.2 s  copy 2900.0 GB/s

Figures (value next to the spec of this hardware and its pass floor; - = none known)
  check  metric         device  value  unit       spec  floor  of spec  status
  gemm   bf16_tflops    cuda:0    700  TFLOPS      989    593      71%  ok
  gemm   bf16_tflops    cuda:1    420  TFLOPS      989    593      43%  below
  cnn    samples_per_s  cuda:0   7758  samples/s     -      -        -  unjudged

Verdict: FAILED - allreduce failed: all-reduce hung: stuck rank(s) 1 (exit 1, 150.5 s)
"""


def test_text_is_golden():
    assert render.to_text(sample(), color=False) == GOLDEN


def test_text_colour_only_when_asked():
    coloured = render.to_text(sample(), color=True)
    assert "\x1b[" in coloured
    assert "\x1b[" not in render.to_text(sample(), color=False)


def test_json_keys_are_the_contract():
    doc = json.loads(render.to_json(sample()))
    assert list(doc) == ["schema", "schema_version", "envcheck_version", "created_at", "verdict", "reasons",
                         "interrupted", "profile", "device", "devices", "world_size", "gpu_models", "checks",
                         "figures", "versions", "machine", "timings", "options"]
    assert doc["schema"] == "envcheck.validate" and doc["schema_version"] == 1
    assert list(doc["checks"][0]) == ["name", "status", "metrics", "message", "seconds", "details", "error"]
    assert list(doc["figures"][1]) == ["check", "metric", "device", "value", "unit", "spec", "floor", "status",
                                       "note", "ratio"]
    assert doc["figures"][1]["ratio"] == round(420.5 / 989, 4)
    assert doc["checks"][3]["error"]["kind"] == "hang"
    # round trip
    again = ValidationReport.from_dict(doc)
    assert render.to_json(again) == render.to_json(sample())


def test_junit_parses_back_with_one_testcase_per_check():
    root = ET.fromstring(render.to_junit(sample()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite.get("name") == "envcheck.validate" and suite.get("hostname") == "gpu-node-017"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("7", "2", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["cnn", "amp", "compile", "allreduce", "gemm", "memory", "verdict"]
    assert cases["allreduce"].find("error").get("type") == "hang"
    assert cases["gemm"].find("failure").get("message") == "cuda:1 bf16: 1 of 20 repeated products differ"
    assert cases["compile"].find("skipped").get("message") == "no C/C++ compiler found"
    assert cases["amp"].find("system-out").text.startswith("WARNING: ")
    assert cases["cnn"].find("failure") is None and cases["cnn"].get("time") == "4.700"
    assert cases["verdict"].find("failure").get("type") == "failed"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "failed" and props["nccl"] == "2.26.2"


def test_junit_of_a_passed_run_has_no_failures():
    rep = sample()
    rep.checks = [c for c in rep.checks if c.status == "pass"]
    rep.verdict, rep.reasons = "passed", ["no pass floors are known for the CPU"]
    suite = ET.fromstring(render.to_junit(rep)).find("testsuite")
    assert (suite.get("failures"), suite.get("errors")) == ("0", "0")


def test_exit_codes_follow_the_verdict():
    rep = sample()
    for verdict, code in (("certified", 0), ("passed", 0), ("degraded", 1), ("failed", 1)):
        rep.verdict = verdict
        assert render.exit_code(rep) == code


def test_progress_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = render.ProgressDisplay(out, tty=False)
    p.start("cnn", 0, 6)
    for i in range(1, 11):
        p.progress("cnn", i / 10, f"step {i}")
    p.end(CheckResult("cnn", "pass", {}, "fine", 1.25))
    assert out.getvalue() == ("validate: [1/6] cnn: started\n"
                              "validate: cnn: 25% (step 3)\n"
                              "validate: cnn: 50% (step 5)\n"
                              "validate: cnn: 75% (step 8)\n"
                              "validate: cnn: PASS in 1.2 s - fine\n")


def test_progress_bar_on_a_terminal():
    out = io.StringIO()
    p = render.ProgressDisplay(out, tty=True)
    p.start("gemm", 4, 6)
    p._last_draw = 0.0
    p.progress("gemm", 0.5, "cuda:0 bf16")
    p.end(CheckResult("gemm", "fail", {}, "SDC", 2.0))
    text = out.getvalue()
    assert "\r\x1b[2K  [5/6] gemm      [############............]  50%  cuda:0 bf16" in text
    assert text.endswith("\r\x1b[2K  [5/6] gemm: FAIL in 2.0 s - SDC\n")


def test_progress_on_the_report_s_own_terminal_is_erased_not_repeated():
    """Issue 12: text report and progress on one terminal: each result is printed once (in the
    report); the finished check's bar is cleared instead of becoming a result line."""
    out = io.StringIO()
    p = render.ProgressDisplay(out, tty=True, transient=True)
    p.start("gemm", 4, 6)
    p._last_draw = 0.0
    p.progress("gemm", 0.5, "cuda:0 bf16")
    p.end(CheckResult("gemm", "fail", {}, "SDC", 2.0))
    text = out.getvalue()
    assert "[5/6] gemm      [############" in text
    assert text.endswith("\r\x1b[2K") and "FAIL" not in text
    # not a terminal: plain lines as before, whatever transient says
    logs = io.StringIO()
    q = render.ProgressDisplay(logs, tty=False, transient=True)
    q.start("gemm", 0, 1)
    q.end(CheckResult("gemm", "pass", {}, "ok", 1.0))
    assert logs.getvalue().endswith("validate: gemm: PASS in 1.0 s - ok\n")


def test_check_messages_wrap_at_the_terminal_width_never_mid_word():
    """Issue 12: on an 80-column terminal a long message continues under itself, whole words."""
    long = "correct but slow: " + " ".join(f"word{i}" for i in range(40))
    rep = ValidationReport(device="cpu", devices=[{"index": 0, "name": "cpu"}], world_size=1, profile="quick",
                           checks=[CheckResult("gemm", "warn", {}, long, 1.0)])
    text = render.to_text(rep, columns=80)
    lines = [ln for ln in text.splitlines() if "word" in ln]
    assert len(lines) > 1 and all(len(ln) <= 80 for ln in lines)
    indent = lines[0].index("correct")
    assert all(ln.startswith(" " * indent) and not ln[indent].isspace() for ln in lines[1:])
    words = " ".join(ln.strip() for ln in lines).split()
    assert words[-40:] == [f"word{i}" for i in range(40)]
    assert render.to_text(rep).count("word39") == 1 and len([ln for ln in render.to_text(rep).splitlines()
                                                              if "word" in ln]) == 1  # no terminal: one line
