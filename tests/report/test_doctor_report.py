"""The doctor's renderers: exact JSON, golden text, colour, ASCII-only, secrets scrubbed.

Golden files live in tests/fixtures/golden/doctor_<scenario>.txt. After an intended change of
the layout, regenerate them and review the diff:
    ENVCHECK_REGEN_GOLDEN=1 python3 -m pytest tests/report/test_doctor_report.py
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

import doctor_scenarios  # noqa: E402

from envcheck import recommend, rules  # noqa: E402
from envcheck.findings import Finding, Severity  # noqa: E402
from envcheck.report import doctor as render  # noqa: E402

GOLDEN = FIXTURES / "golden"
REGEN = os.environ.get("ENVCHECK_REGEN_GOLDEN") == "1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FIX = "/home/alice/.venv/bin/python -m pip install torch==X.Y.Z --index-url https://download.pytorch.org/whl/cuXYZ"


@pytest.fixture
def frozen_engine(monkeypatch):
    """Pin what the install engine answers, so golden text tracks the layout, not recipe updates."""
    monkeypatch.setattr(recommend, "install_fix", lambda snapshot: FIX)
    monkeypatch.setattr(recommend, "driver_minimum",
                        lambda cuda, os="linux": {"11": "450.80.02", "12": "525.60.13", "13": "580"}.get(str(cuda).split(".")[0]))
    monkeypatch.setattr(recommend, "newest_known_release", lambda: "2.14.0")
    monkeypatch.setattr(recommend, "is_newer_than_known", lambda v: v.startswith("2.99"))
    monkeypatch.setattr(recommend, "python_range", lambda v: ("3.10", "3.14"))


def _report(name: str, **kwargs) -> tuple[dict, list[Finding], str]:
    snap = (doctor_scenarios.build(name) if name in doctor_scenarios.SCENARIOS
            else json.loads((doctor_scenarios.SNAPSHOTS / f"{name}.json").read_text(encoding="utf-8")))
    findings = rules.evaluate(snap)
    return snap, findings, render.to_text(snap, findings, **kwargs)


# ------------------------------------------------------------------ golden text

GOLDEN_SCENARIOS = ["healthy_8xh100", "cpu_only_vm", "cpu_only_laptop", "driver_too_old_cu130",
                    "torch_import_crash", "torch_import_error_ld_path", "big_node_small_host",
                    "ecc_errors", "one_gpu_lost", "docker_without_gpus", "windows_cpu_wheel",
                    "all_unavailable"]


@pytest.mark.parametrize("name", GOLDEN_SCENARIOS)
def test_golden_text(name, frozen_engine):
    _, _, text = _report(name)
    path = GOLDEN / f"doctor_{name}.txt"
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with ENVCHECK_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def test_regen_switch_is_off_in_ci():
    # A golden test that rewrites its own expectation proves nothing: CI must never set it.
    if os.environ.get("CI"):
        assert not REGEN


# ------------------------------------------------------------------ text structure


def test_findings_come_first_worst_first_each_with_fix(frozen_engine):
    _, findings, text = _report("big_node_small_host")
    lines = text.splitlines()
    assert lines[0] == "envcheck doctor - gpu-node-017 - 2026-11-23T09:00:00Z"
    assert lines[2] == "Findings: 1 error, 3 warnings, 1 info"
    heads = [ln.split()[:2] for ln in lines if re.match(r"  (ERROR|WARN|INFO|OK)\s", ln)]
    assert [h[0] for h in heads] == ["ERROR", "WARN", "WARN", "WARN", "INFO"]
    assert [h[1] for h in heads] == [f.id for f in findings]
    assert text.index("Findings") < text.index("Machine") < text.index("Verdict")
    assert text.count("         fix ") + text.count(" fix  ") >= len(findings)
    assert lines[-1] == "Verdict: NOT READY: 1 error, 3 warnings, 1 info (exit 1)"


@pytest.mark.parametrize("name,strict,verdict", [
    ("healthy_8xh100", False, "Verdict: READY: no problems found (exit 0)"),
    ("cpu_only_vm", False, "Verdict: READY: 1 info (exit 0)"),
    ("docker_small_shm", False, "Verdict: READY WITH WARNINGS: 2 warnings, 1 info (exit 0; 1 with --strict)"),
    ("docker_small_shm", True, "Verdict: READY WITH WARNINGS: 2 warnings, 1 info (exit 1)"),
    ("torch_import_hang", False, "Verdict: NOT READY: 1 error (exit 1)"),
])
def test_verdict_line(name, strict, verdict):
    _, _, text = _report(name, strict=strict)
    assert text.splitlines()[-1] == verdict


def test_gpu_table_is_aligned_and_marks_problems():
    _, _, text = _report("pcie_degraded")
    rows = [ln for ln in text.splitlines() if re.match(r"    (#|\d) ", ln)]
    assert rows[0].split() == ["#", "NAME", "CC", "MEMORY", "TEMP", "POWER", "ECC", "PCIE"]
    starts = {ln.index("9.0") for ln in rows[1:]}
    assert starts == {rows[0].index("CC")}
    assert "Gen3 x8 (max Gen5 x16)" in rows[1]
    _, _, lost = _report("one_gpu_lost")
    assert "2  (gpu_lost: GPU is lost" in lost
    _, _, ecc = _report("ecc_errors")
    assert " 5 unc " in ecc


def test_long_stderr_keeps_the_last_lines():
    snap = doctor_scenarios.build("torch_import_crash")
    snap["torch"]["error"]["stderr_tail"] = "\n".join(f"line {i}" for i in range(40))
    text = render.to_text(snap, rules.evaluate(snap))
    assert "line 39" in text and "line 28" in text and "line 27" not in text and "..." in text


def test_every_section_unavailable_still_renders():
    _, _, text = _report("all_unavailable")
    assert "  Python      n/a (probe failed)" in text and "  Host facts  n/a (probe failed)" in text
    # nothing could be checked: never "ready"
    assert text.splitlines()[-1] == "Verdict: INCOMPLETE: 4 warnings (exit 0; 1 with --strict)"


@pytest.mark.parametrize("odd", [None, "garbage", 7, [], {"unavailable": "x"}])
def test_machine_summary_survives_odd_values(odd):
    snap = doctor_scenarios.build("healthy_8xh100")
    for section in ("host", "python", "torch", "nvidia"):
        for key in list(snap[section]):
            broken = copy.deepcopy(snap)
            broken[section][key] = odd
            assert render.to_text(broken, []).endswith("(exit 0)\n")
    gpu = copy.deepcopy(snap)
    for key in list(gpu["nvidia"]["gpus"][0]):
        gpu["nvidia"]["gpus"][0][key] = odd
    assert "NVIDIA H100" in render.to_text(gpu, [])


# ------------------------------------------------------------------ colour


def test_colour_only_when_asked():
    _, findings, plain = _report("driver_too_old_cu130")
    assert not ANSI.search(plain)
    snap = doctor_scenarios.build("driver_too_old_cu130")
    coloured = render.to_text(snap, findings, color=True)
    assert "\x1b[31m" in coloured  # red ERROR
    assert ANSI.sub("", coloured) == plain  # colour changes nothing else


def test_json_is_never_coloured_nor_ascii_mangled():
    snap = doctor_scenarios.build("driver_too_old_cu130")
    assert not ANSI.search(render.to_json(snap, rules.evaluate(snap)))


@pytest.mark.parametrize("name", GOLDEN_SCENARIOS)
def test_text_is_ascii(name):
    _, _, text = _report(name)
    text.encode("ascii")


def test_non_ascii_evidence_becomes_ascii():
    snap = doctor_scenarios.build("healthy_8xh100")
    f = Finding("x.y", Severity.WARN, "needs \u2265 580 \u2014 now", {"temp": "31\u00b0C"}, "fix \u2192 this")
    text = render.to_text(snap, [f])
    assert "needs >= 580 - now" in text and "31C" in text and "fix -> this" in text


# ------------------------------------------------------------------ JSON


def test_json_is_the_snapshot_plus_findings_and_summary():
    snap = doctor_scenarios.build("torch_import_hang")
    findings = rules.evaluate(snap)
    doc = json.loads(render.to_json(snap, findings))
    assert {k: v for k, v in doc.items() if k not in ("findings", "summary")} == snap
    assert doc["findings"] == [{
        "id": "torch.import-hung", "severity": "error",
        "title": "`import torch` did not finish within 30.0 s",
        "evidence": {"python": "/home/alice/.venv/bin/python",
                     "message": "no answer within 30 s (stopped during: import torch); the process group was killed",
                     "timeout_s": 30.0},
        "fix": "time it: `/home/alice/.venv/bin/python -X importtime -c 'import torch' 2> importtime.log` "
               "(slow site-packages on a network filesystem show up there); check that `nvidia-smi` answers "
               "(a wedged driver hangs CUDA initialisation); or re-run with --timeout 120",
        "detail": "a hang is usually a slow (network) filesystem holding site-packages, a wedged GPU driver, "
                  "or a site-customize/plugin that blocks on the network",
    }]
    assert doc["summary"] == {"errors": 1, "warnings": 0, "infos": 0, "worst": "error",
                              "verdict": "not ready", "strict": False, "exit_code": 1, "scope": "full"}


@pytest.mark.parametrize("name,strict,summary", [
    ("healthy_8xh100", False, {"errors": 0, "warnings": 0, "infos": 0, "worst": "ok", "verdict": "ready",
                               "strict": False, "exit_code": 0, "scope": "full"}),
    ("docker_small_shm", True, {"errors": 0, "warnings": 2, "infos": 1, "worst": "warn",
                                "verdict": "ready with warnings", "strict": True, "exit_code": 1, "scope": "full"}),
])
def test_json_summary(name, strict, summary):
    snap = doctor_scenarios.build(name)
    assert json.loads(render.to_json(snap, rules.evaluate(snap), strict=strict))["summary"] == summary


def test_json_findings_are_worst_first_even_if_given_unsorted():
    snap = doctor_scenarios.build("healthy_8xh100")
    given = [Finding("b.info", Severity.INFO, "i"), Finding("a.err", Severity.ERROR, "e", fix="f")]
    doc = json.loads(render.to_json(snap, given))
    assert [f["id"] for f in doc["findings"]] == ["a.err", "b.info"]


# ------------------------------------------------------------------ secrets


def test_secrets_in_free_text_never_reach_the_output():
    token = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ"
    aws = "AKIA" + "ABCDEFGHIJKLMNOP"
    snap = doctor_scenarios.build("torch_import_crash")
    snap["torch"]["error"]["stderr_tail"] = f"HF_TOKEN={token}\nusing key {aws}\nhttps://bob:hunter2@pypi.example/simple"
    findings = rules.evaluate(snap)
    for out in (render.to_text(snap, findings), render.to_text(snap, findings, color=True),
                render.to_json(snap, findings)):
        assert token not in out and aws not in out and "hunter2" not in out
        assert "<redacted>" in out
