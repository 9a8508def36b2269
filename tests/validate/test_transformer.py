"""transformer check: pure judging in-process; the real training in a worker subprocess."""

from __future__ import annotations

import importlib.util
import math

import pytest

from envcheck.validate import runner
from envcheck.validate.checks import transformer as T
from envcheck.validate.config import ValidateConfig

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")


def test_flops_per_token_is_palms_6n_plus_attention():
    # PaLM Appendix B: 6N + 12 L H Q T; H Q = d
    assert T.flops_per_token(1000, 2, 64, 32) == 6000 + 12 * 2 * 64 * 32


def test_loss_verdict_needs_a_clear_drop_and_finite_losses():
    falling = [4.0 * 0.9 ** i for i in range(60)]
    ok, problem, figs = T.loss_verdict(falling, 5.0)
    assert ok and problem == "" and figs["loss_drop"] > 5
    flat = [4.0 - 0.001 * i for i in range(60)]
    ok, problem, _ = T.loss_verdict(flat, 5.0)
    assert not ok and "fell only" in problem
    nan = falling[:7] + [math.nan] + falling[8:]
    ok, problem, figs = T.loss_verdict(nan, 5.0)
    assert not ok and problem == "loss is NaN/Inf from step 7" and figs == {"finite": False}


@pytest.mark.parametrize("device, cap, available, expect", [
    ("cpu", None, ["MATH"], None),
    ("cuda", (7, 0), ["EFFICIENT_ATTENTION", "MATH"], None),  # V100: no flash expected
    ("cuda", (9, 0), ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"], None),
    ("cuda", (8, 0), ["EFFICIENT_ATTENTION", "MATH"], "FlashAttention is unavailable"),
    ("cuda", (9, 0), ["MATH"], "falls back to the math path"),
])
def test_sdpa_finding_only_where_fast_kernels_are_expected(device, cap, available, expect):
    got = T.sdpa_finding(device, cap, available)
    assert (got is None) if expect is None else (expect in got)


@needs_torch
def test_transformer_trains_on_the_cpu_in_a_worker(process_tag):
    report = runner.run(ValidateConfig(profile="quick", timeout=60), ["transformer"], {})
    (c,) = report.checks
    assert c.status == "pass", c.message
    m = c.metrics
    assert m["finite"] and m["loss_drop"] >= 5.0 and m["loss_last"] < 1.0
    assert m["dtype"] == "bf16" and m["optimizer"] in ("AdamW(fused)", "AdamW(foreach)")
    assert m["sdpa_backend"] in ("flash", "math") and "math" in m["sdpa_available"]
    assert m["tokens_per_s"] > 0 and m["tflops"] > 0 and m["mfu"] is None  # no spec for a CPU
    assert len(c.details["losses"]) == m["steps"]
    assert not process_tag()


@needs_torch
def test_nan_loss_fails_the_check_naming_the_step(monkeypatch):
    monkeypatch.setenv("ENVCHECK_FAULT", "transformer.nan:step=3")
    cfg = ValidateConfig(profile="quick", timeout=60, params={"transformer": {"steps": 12, "warmup": 2}})
    (c,) = runner.run(cfg, ["transformer"], {}).checks
    assert c.status == "fail" and c.message == "loss is NaN/Inf from step 3"


def test_transformer_tflops_figure_shows_mfu_against_the_bf16_spec():
    from envcheck import recipes
    from envcheck.validate.certify import certify
    from envcheck.validate.results import CheckResult

    c = CheckResult("transformer", "pass", {"tflops": 395.6, "tokens_per_s": 1e5, "dtype": "bf16"}, "ok",
                    details={"device": "cuda:0"})
    cert = certify([c], [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}], device_type="cuda", world_size=1,
                   specs=recipes.load("gpu_specs"), floors=recipes.load("validate_floors"))
    fig = next(f for f in cert.figures if f.metric == "tflops")
    assert (fig.spec, fig.status, round(fig.ratio, 2)) == (989, "unjudged", 0.4)


@pytest.mark.gpu
def test_real_sdpa_backends_on_this_gpu():  # pragma: no cover - needs an NVIDIA GPU
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    report = runner.run(ValidateConfig(device="cuda", ndevices=1, profile="quick", timeout=120), ["transformer"], {})
    (c,) = report.checks
    assert c.status in ("pass", "warn"), c.message
    cap = torch.cuda.get_device_capability(0)
    if cap >= (8, 0):
        assert c.metrics["sdpa_backend"] in ("flash", "cudnn", "memory-efficient")
        assert "flash" in c.metrics["sdpa_available"] or c.status == "warn"
    assert c.metrics["dtype"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert c.metrics["optimizer"] == "AdamW(fused)"
    assert c.metrics["mfu"] is None or c.metrics["mfu"] > 0


@needs_torch
def test_activation_checkpointing_and_foreach_adamw_train_the_same_task():
    cfg = ValidateConfig(profile="quick", timeout=60,
                         params={"transformer": {"checkpointing": True, "optimizer": "foreach", "bf16": False}})
    (c,) = runner.run(cfg, ["transformer"], {}).checks
    assert c.status == "pass", c.message
    assert (c.metrics["checkpointing"], c.metrics["optimizer"], c.metrics["dtype"]) == (True, "AdamW(foreach)", "fp32")
    assert "checkpointed" in c.message
