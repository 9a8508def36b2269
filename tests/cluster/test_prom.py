"""--prom-file: rendered metrics parsed back with prometheus_client's own text parser."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from envcheck import __version__
from envcheck.cli import cli
from envcheck.cluster import prom
from envcheck.findings import Finding, Severity

SNAPSHOT_PATH = "tests/fixtures/snapshots/example_8xh100.json"
SNAPSHOT = json.loads(Path(SNAPSHOT_PATH).read_text())
FINDINGS = [Finding("torch.missing", Severity.ERROR, "t"), Finding("host.shm-small", Severity.WARN, "s"),
            Finding("nvidia.ok", Severity.OK, "fine")]
NOW = 1795420000.5


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} via the reference parser (fails on bad syntax)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def test_doctor_metrics_parse_back():
    m = parse(prom.doctor_text(SNAPSHOT, FINDINGS, NOW))
    assert m[("envcheck_build_info", (("version", __version__),))] == 1
    assert m[("envcheck_last_run_timestamp_seconds", (("command", "doctor"),))] == NOW
    assert m[("envcheck_doctor_findings", (("severity", "error"),))] == 1
    assert m[("envcheck_doctor_findings", (("severity", "warn"),))] == 1
    assert m[("envcheck_doctor_findings", (("severity", "info"),))] == 0
    assert m[("envcheck_doctor_finding", (("id", "torch.missing"), ("severity", "error")))] == 1
    assert not any(k[0] == "envcheck_doctor_finding" and ("id", "nvidia.ok") in k[1] for k in m)
    assert m[("envcheck_gpus", (("source", "nvml"),))] == 8
    assert m[("envcheck_probe_duration_seconds", (("probe", "torch"),))] == pytest.approx(1.71)
    assert m[("envcheck_torch_info", (("cuda", "12.6"), ("status", "ok"), ("version", "2.7.1+cu126")))] == 1


def test_doctor_metrics_on_a_broken_machine_snapshot():
    broken = {"nvidia": {"unavailable": "no driver"}, "torch": {"status": "not_installed"}, "probe_seconds": {}}
    m = parse(prom.doctor_text(broken, [], NOW))
    assert m[("envcheck_torch_info", (("cuda", ""), ("status", "not_installed"), ("version", "")))] == 1
    assert not any(k[0] == "envcheck_gpus" for k in m)


def test_every_metric_name_follows_the_naming_rules():
    text = prom.doctor_text(SNAPSHOT, FINDINGS, NOW) + prom.validate_text(VALIDATE, NOW)
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("envcheck_"), fam.name
        assert fam.type == "gauge" and not fam.name.endswith("_total")
        assert "percent" not in fam.name and "_ms" not in fam.name and "_gbps" not in fam.name


VALIDATE = {
    "verdict": "degraded",
    "checks": [
        {"name": "gemm", "status": "warn", "duration_s": 12.5, "metrics": {
            "bf16_tflops": 410.0, "fp32_tflops": 50.9, "bitexact_mismatches": 0}},
        {"name": "allreduce", "status": "pass", "metrics": {
            "nccl_version": "2.21.5", "world_size": 8, "busbw_gbps": 350.0, "time_ms": 5.0,
            "rows": [{"bytes": 1024, "busbw_gbps": 0.875}]}},
        {"name": "memory", "status": "pass", "metrics": {"d2d_gb_s": 2900.0, "pattern_ok": True,
                                                           "free_fraction_ratio": 0.9}},
        {"name": "compile", "status": "skip", "metrics": {"unavailable": "no C compiler"}},
    ],
}


def test_validate_metrics_parse_back_with_units_and_labels():
    m = parse(prom.validate_text(VALIDATE, NOW))
    assert m[("envcheck_validate_verdict", (("verdict", "degraded"),))] == 1
    assert m[("envcheck_validate_verdict", (("verdict", "certified"),))] == 0
    assert m[("envcheck_check_status", (("check", "gemm"), ("status", "warn")))] == 1
    assert m[("envcheck_check_status", (("check", "gemm"), ("status", "pass")))] == 0
    assert m[("envcheck_check_status", (("check", "compile"), ("status", "skip")))] == 1
    assert m[("envcheck_check_duration_seconds", (("check", "gemm"),))] == 12.5
    assert m[("envcheck_gemm_bf16_tflops", ())] == 410.0
    assert m[("envcheck_gemm_bitexact_mismatches", ())] == 0
    assert m[("envcheck_allreduce_busbw_bytes_per_second", ())] == 350e9
    assert m[("envcheck_allreduce_time_seconds", ())] == pytest.approx(0.005)
    # nested values are not flattened into series (no check emits them; figures carry the detail)
    assert not any("rows" in k[0] for k in m)
    assert m[("envcheck_memory_d2d_bytes_per_second", ())] == 2900e9
    assert m[("envcheck_memory_free_fraction_ratio", ())] == 0.9
    # strings and booleans are not figures; na() markers are skipped
    assert not any("nccl_version" in k[0] or "pattern_ok" in k[0] or "unavailable" in k[0] for k in m)


def test_cluster_report_is_exported_per_node_not_per_rank():
    """Issue 10, class 11: series per node (its checks' worst state, its key figures) and
    cluster totals; a rank's own checks and figures stay in the JSON report."""
    report = {"verdict": "failed", "world_size": 4, "missing_ranks": [{"rank": 3}], "nodes": [
        {"node_rank": 0, "hostname": "gpu01", "verdict": "certified", "straggler": False,
         "checks": [{"name": "gemm", "status": "pass", "seconds": 2.5}],
         "figures": [{"check": "gemm", "metric": "bf16", "device": "cuda:1", "value": 700, "unit": "TFLOPS",
                      "floor": 500, "status": "ok", "rank": 1}],
         "ranks": [{"rank": 0, "verdict": "certified", "checks": [{"name": "gemm", "status": "pass"}],
                    "figures": [{"check": "gemm", "metric": "bf16", "device": "cuda:0", "value": 720}]},
                   {"rank": 1, "verdict": "certified"}]},
        {"node_rank": 1, "hostname": "gpu02", "verdict": "failed", "straggler": True,
         "checks": [{"name": "memory", "status": "fail", "metrics": {}}],
         "ranks": [{"rank": 2, "verdict": "failed"}]},
    ]}
    m = parse(prom.validate_text(report, NOW))
    assert m[("envcheck_world_size", ())] == 4
    assert m[("envcheck_node_verdict", (("node", "gpu02"), ("verdict", "failed")))] == 1
    assert m[("envcheck_node_straggler", (("node", "gpu02"),))] == 1
    assert m[("envcheck_node_straggler", (("node", "gpu01"),))] == 0
    assert m[("envcheck_figure_tflops", (("check", "gemm"), ("metric", "bf16"), ("node", "gpu01")))] == 700
    assert m[("envcheck_figure_floor_tflops", (("check", "gemm"), ("metric", "bf16")))] == 500  # once
    assert m[("envcheck_check_status", (("check", "memory"), ("node", "gpu02"), ("status", "fail")))] == 1
    assert m[("envcheck_check_duration_seconds", (("check", "gemm"), ("node", "gpu01")))] == 2.5
    assert m[("envcheck_cluster_ranks", (("verdict", "certified"),))] == 2
    assert m[("envcheck_cluster_ranks", (("verdict", "failed"),))] == 1
    assert m[("envcheck_cluster_nodes", (("verdict", "failed"),))] == 1
    assert m[("envcheck_cluster_missing_ranks", ())] == 1
    assert not any(dict(labels).get("rank") for _, labels in m)  # nothing per rank


def test_render_escapes_labels_and_special_values():
    fam = prom.Family("envcheck_x", 'help with \\ and\nnewline')
    fam.add(float("nan"), id='a"b\\c\nd').add(float("inf"), id="up").add(float("-inf"), id="down")
    fam.add(1, id="up")  # duplicate series: dropped
    out = list(text_string_to_metric_families(prom.render([fam])))[0]
    values = {s.labels["id"]: s.value for s in out.samples}
    assert set(values) == {'a"b\\c\nd', "up", "down"}
    assert math.isnan(values['a"b\\c\nd']) and values["up"] == math.inf and values["down"] == -math.inf
    assert out.documentation == "help with \\ and\nnewline"
    assert prom.render([]) == ""


def test_no_timestamps_in_the_file():
    # node_exporter's textfile collector does not support timestamps.
    for line in prom.doctor_text(SNAPSHOT, FINDINGS, NOW).splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit("}", 1)[-1].split()) == 1, line


# ---- through the CLI ---------------------------------------------------------------------


def test_doctor_prom_file_cli(tmp_path, monkeypatch):
    import envcheck.rules as rules

    monkeypatch.setattr(rules, "evaluate", lambda s, **_: list(FINDINGS))
    target = tmp_path / "textfile" / "envcheck.prom"
    target.parent.mkdir()
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", SNAPSHOT_PATH, "--prom-file", str(target),
                                   "--exit-codes", "nagios"])
    assert res.exit_code == 2, res.output
    m = parse(target.read_text())
    assert m[("envcheck_doctor_findings", (("severity", "error"),))] == 1
    assert os.listdir(target.parent) == ["envcheck.prom"]


def test_doctor_prom_file_in_a_missing_directory_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(cli, ["doctor", "--snapshot", SNAPSHOT_PATH,
                                   "--prom-file", str(tmp_path / "nope" / "x.prom")])
    assert res.exit_code == 2 and "--prom-file" in res.stderr


def test_validate_figures_in_base_units_with_floor_and_spec():
    report = {"verdict": "degraded", "checks": [], "figures": [
        {"check": "gemm", "metric": "bf16", "device": "cuda:0", "value": 600.0, "unit": "TFLOPS",
         "spec": 989.4, "floor": 692.6, "status": "below", "ratio": 0.61, "note": ""},
        {"check": "memory", "metric": "d2d", "device": "cuda:0", "value": 2.9, "unit": "TB/s",
         "spec": None, "floor": None, "status": "unjudged"},
        {"check": "cnn", "metric": "odd", "device": "cpu", "value": 3.0, "unit": "frobs/s"},
        {"check": "allreduce", "metric": "busbw", "device": "all", "value": 350.0, "unit": "GB/s",
         "spec": 450.0, "floor": 300.0, "status": "ok"},
        {"check": "cnn", "metric": "samples", "device": "cpu", "value": None, "unit": "samples/s"},
    ]}
    m = parse(prom.validate_text(report, NOW))
    g = (("check", "gemm"), ("device", "cuda:0"), ("metric", "bf16"))
    assert m[("envcheck_figure_tflops", g)] == 600.0
    assert m[("envcheck_figure_floor_tflops", g)] == 692.6
    assert m[("envcheck_figure_spec_tflops", g)] == 989.4
    assert m[("envcheck_figure_below_floor", g)] == 1
    a = (("check", "allreduce"), ("device", "all"), ("metric", "busbw"))
    assert m[("envcheck_figure_bytes_per_second", a)] == 350e9
    assert m[("envcheck_figure_below_floor", a)] == 0
    # an unknown unit still gets a valid name; unjudged figures have no below_floor series
    d = (("check", "memory"), ("device", "cuda:0"), ("metric", "d2d"))
    assert m[("envcheck_figure_bytes_per_second", d)] == pytest.approx(2.9e12)
    assert not any(k[0] == "envcheck_figure_below_floor" and ("check", "memory") in k[1] for k in m)
    assert m[("envcheck_figure_frobs_s", (("check", "cnn"), ("device", "cpu"), ("metric", "odd")))] == 3.0
