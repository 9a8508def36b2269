"""Certification is a pure function: hand-made figures in, verdict and judged figures out."""

from __future__ import annotations

import pytest

from envcheck import recipes
from envcheck.validate.certify import certify, match_model
from envcheck.validate.results import CheckResult

SPECS = recipes.load("gpu_specs")
FLOORS = recipes.load("validate_floors")
H100 = [{"index": i, "name": "NVIDIA H100 80GB HBM3"} for i in range(2)]


def gemm(tflops: dict[str, float], devices=("cuda:0", "cuda:1")) -> CheckResult:
    return CheckResult("gemm", "pass", {}, "ok", details={"devices": [
        {"device": d, "dtypes": {dt: {"tflops": v, "n": 8192} for dt, v in tflops.items()}} for d in devices]})


def memory(d2d: float, h2d: float = 55.0, d2h: float = 55.0, devices=("cuda:0", "cuda:1")) -> CheckResult:
    return CheckResult("memory", "pass", {}, "ok", details={"devices": [
        {"device": d, "d2d_GBps": d2d, "h2d_GBps": h2d, "d2h_GBps": d2h} for d in devices]})


def allreduce(busbw: float, world: int = 2) -> CheckResult:
    return CheckResult("allreduce", "pass", {"busbw_GBps": busbw, "world_size": world, "max_bytes": 1 << 30}, "ok")


def amp(speedup: float, status: str = "pass") -> CheckResult:
    return CheckResult("amp", status, {}, "ok", details={"modes": {"bf16": {"speedup": speedup},
                                                                   "fp16": {"speedup": speedup}}})


def healthy() -> list[CheckResult]:
    # H100 SXM: bf16 spec 989 (floor 0.6 -> 593.4), memory 3350 (0.57 -> 1909.5), NVLink 450 (0.6 -> 270)
    return [CheckResult("cnn", "pass", {"samples_per_s": 1e5}, "ok"), amp(2.1),
            CheckResult("compile", "pass", {"compile_s": 20.0, "speedup": 1.4}, "ok"), allreduce(360.0),
            gemm({"fp32": 50.0, "tf32": 380.0, "bf16": 700.0, "fp16": 710.0}), memory(2900.0)]


def run(checks, devices=H100, device_type="cuda", world=2, **kw):
    return certify(checks, devices, device_type=device_type, world_size=world, specs=SPECS, floors=FLOORS, **kw)


@pytest.mark.parametrize("name, model", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80"), ("NVIDIA A100-SXM4-40GB", "a100-sxm-40"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80"), ("NVIDIA A100-PCIE-40GB", "a100-pcie-40"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"), ("NVIDIA A10", "a10"), ("Tesla V100-SXM2-32GB", "v100-sxm2"),
    ("Tesla V100-PCIE-16GB", "v100-pcie"), ("NVIDIA B200", "b200"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("NVIDIA GeForce RTX 5090", "rtx-5090"), ("nvidia  h100 80gb hbm3", "h100-sxm"),
    ("NVIDIA A40", None), ("NVIDIA H100 NVL", None), ("NVIDIA GeForce RTX 3060", None), (None, None),
])
def test_model_matching_is_exact(name, model):
    got = match_model(name, SPECS)
    assert (got["id"] if got else None) == model


def test_every_spec_and_floor_names_its_source():
    keys = set(SPECS["source_keys"])
    for gpu in SPECS["gpus"]:
        assert gpu["sources"], gpu["id"]
        for field_, src in gpu["sources"].items():
            assert src and (src.split()[0] in keys or src.startswith("none") or "not" in src), (gpu["id"], field_)
        assert gpu["peak_tflops"]["fp32"] > 0 and gpu["memory_bandwidth_GBps"] > 0
    for check, rules in FLOORS["floors"].items():
        for metric, rule in rules.items():
            assert rule["source"], (check, metric)
            assert 0 < rule.get("fraction_of_spec", rule.get("minimum", 0)) < 2


def test_certified_when_everything_is_above_its_floor():
    c = run(healthy())
    assert c.verdict == "certified", c.reasons
    judged = {(f.check, f.metric, f.device): f for f in c.figures}
    bf16 = judged[("gemm", "bf16_tflops", "cuda:1")]
    assert (bf16.spec, bf16.floor, bf16.status) == (989, 593.4, "ok")
    assert judged[("memory", "d2d_GBps", "cuda:0")].floor == pytest.approx(3350 * 0.57)
    assert judged[("allreduce", "busbw_GBps", "all")].floor == pytest.approx(270.0)
    assert judged[("amp", "bf16_speedup", "cuda:0")].floor == 1.3
    assert c.gpu_models == {"cuda:0": "h100-sxm", "cuda:1": "h100-sxm"}


def test_one_slow_device_degrades_and_is_named():
    checks = healthy()
    checks[4] = CheckResult("gemm", "pass", {}, "ok", details={"devices": [
        {"device": "cuda:0", "dtypes": {"bf16": {"tflops": 700.0}}},
        {"device": "cuda:1", "dtypes": {"bf16": {"tflops": 420.0}}}]})
    c = run(checks)
    assert c.verdict == "degraded"
    assert len(c.reasons) == 1
    assert "gemm bf16_tflops on cuda:1: 420 TFLOPS is below its floor 593.4 (spec 989)" in c.reasons[0]


def test_a_warning_degrades():
    checks = healthy()
    checks[1] = amp(1.1, status="warn")
    c = run(checks)
    assert c.verdict == "degraded"
    assert any("amp" in r for r in c.reasons)


def test_a_failed_check_fails_whatever_the_figures():
    checks = healthy()
    checks[0] = CheckResult("cnn", "fail", {}, "loss is NaN/Inf from step 5")
    c = run(checks)
    assert c.verdict == "failed"
    assert c.reasons == ["cnn failed: loss is NaN/Inf from step 5"]


def test_interrupted_is_failed():
    c = run(healthy(), interrupted=True)
    assert c.verdict == "failed" and "interrupted" in c.reasons[0]


def test_cpu_is_passed_with_figures_unjudged():
    checks = [gemm({"fp32": 0.2}, devices=("cpu",)), memory(30.0, devices=("cpu",)), allreduce(1.5)]
    c = run(checks, devices=[{"index": 0, "name": "AMD EPYC"}], device_type="cpu")
    assert c.verdict == "passed"
    assert "no pass floors are known for the CPU" in c.reasons[0]
    assert {f.status for f in c.figures} == {"unjudged"}
    assert all(f.spec is None and f.floor is None for f in c.figures)


def test_unknown_gpu_is_passed_and_named():
    c = run(healthy(), devices=[{"index": 0, "name": "NVIDIA A40"}, {"index": 1, "name": "NVIDIA A40"}])
    assert c.verdict == "passed"
    assert "'NVIDIA A40'" in c.reasons[0]


def test_a_subset_of_checks_cannot_certify():
    c = run([gemm({"bf16": 700.0}), memory(2900.0)])
    assert c.verdict == "passed"
    assert "not run or skipped: cnn, amp, compile, allreduce" in c.reasons[0]
    checks = healthy()
    checks[2] = CheckResult("compile", "skip", {}, "no compiler")
    assert run(checks).verdict == "passed"


def test_busbw_is_judged_only_on_nvlink_with_two_ranks():
    pcie = [{"index": i, "name": "NVIDIA H100 PCIe"} for i in range(2)]
    c = run([allreduce(20.0)], devices=pcie)
    fig = next(f for f in c.figures if f.check == "allreduce")
    assert fig.status == "unjudged" and "not judged" in fig.note
    c = run([allreduce(0.0, world=1)], devices=H100[:1], world=1)
    assert next(f for f in c.figures if f.check == "allreduce").status == "unjudged"
    c = run([allreduce(100.0)])
    assert next(f for f in c.figures if f.check == "allreduce").status == "below"


def test_volta_has_no_bf16_spec_and_amp_floor_applies():
    v100 = [{"index": 0, "name": "Tesla V100-SXM2-32GB"}]
    c = run([gemm({"fp16": 60.0, "bf16": 5.0}, devices=("cuda:0",)), amp(1.2)], devices=v100, world=1)
    figs = {f.metric: f for f in c.figures}
    assert figs["bf16_tflops"].status == "unjudged" and figs["bf16_tflops"].spec is None
    assert figs["fp16_tflops"].status == "below"  # 60 < 0.6 * 125
    assert figs["fp16_speedup"].status == "below"
    assert c.verdict == "degraded"
