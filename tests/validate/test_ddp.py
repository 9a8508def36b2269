"""ddp check: pure judging in-process; real DDP/FSDP2 gloo ranks in subprocesses."""

from __future__ import annotations

import importlib.util

import pytest

from envcheck.validate import runner
from envcheck.validate.checks import ddp as D
from envcheck.validate.config import ValidateConfig

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")
INFO = {"distributed": {"available": True, "gloo": True}}
FALLING = [4.0 * 0.85 ** i for i in range(20)]


def out(ddp_bad=0, fsdp=None):
    return {"world_size": 2, "optimizer": "AdamW(fused)",
            "ddp": {"losses": FALLING, "mismatched": ddp_bad, "params": 1000},
            "fsdp": fsdp if fsdp is not None else {"losses": FALLING, "mismatched": 0, "max_rel_diff_vs_ddp": 0.0}}


def test_identical_replicas_pass():
    problems, metrics = D.judge(out(), 2.0, 1e-3)
    assert problems == [] and metrics["ddp_mismatched"] == 0 and metrics["fsdp_max_rel_diff_vs_ddp"] == 0.0


def test_diverged_replicas_fail_with_the_count():
    problems, _ = D.judge(out(ddp_bad=17), 2.0, 1e-3)
    assert problems == ["DDP replicas differ after 20 steps: 17 parameter element(s) differ from rank 0's"]


def test_fsdp_disagreeing_with_ddp_fails_and_a_missing_fsdp_is_a_skip():
    problems, _ = D.judge(out(fsdp={"losses": FALLING, "mismatched": 0, "max_rel_diff_vs_ddp": 0.2}), 2.0, 1e-3)
    assert problems == ["FSDP2 and DDP disagree after the same steps: max relative difference 0.2 (tolerance 0.001)"]
    problems, metrics = D.judge(out(fsdp={"skipped": "no fully_shard"}), 2.0, 1e-3)
    assert problems == [] and metrics["fsdp_skipped"] == "no fully_shard"


@needs_torch
def test_ddp_and_fsdp2_keep_replicas_identical_over_gloo(process_tag):
    (c,) = runner.run(ValidateConfig(timeout=90, procs=2), ["ddp"], INFO).checks
    assert c.status == "pass", c.message
    assert c.metrics["ddp_mismatched"] == 0 and c.metrics["fsdp_mismatched"] == 0
    assert c.metrics["fsdp_max_rel_diff_vs_ddp"] <= 1e-3 and c.metrics["loss_last"] < c.metrics["loss_first"] / 2
    assert not process_tag()


@needs_torch
def test_a_drifting_replica_fails(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "ddp.skew:rank=1")
    cfg = ValidateConfig(timeout=90, procs=2, params={"ddp": {"steps": 8, "fsdp": False, "loss_drop": 1.0}})
    (c,) = runner.run(cfg, ["ddp"], INFO).checks
    assert c.status == "fail" and c.message.startswith("DDP replicas differ after 8 steps: ")
    assert not process_tag()
