"""collectives check: pure formulas in-process; real gloo ranks in subprocesses."""

from __future__ import annotations

import importlib.util

import pytest

from envcheck.validate import runner
from envcheck.validate.checks import collectives as C
from envcheck.validate.config import ValidateConfig

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (the checks run torch)")
INFO = {"distributed": {"available": True, "gloo": True}}


@pytest.mark.parametrize("op, n, factor", [
    ("all_gather", 8, 7 / 8), ("reduce_scatter", 8, 7 / 8), ("all_to_all", 4, 3 / 4),
    ("broadcast", 8, 1.0), ("all_gather", 1, 0.0),
])
def test_bus_factors_are_nccl_tests(op, n, factor):
    # nccl-tests doc/PERFORMANCE.md, "Summary"
    assert C.bus_factor(op, n) == pytest.approx(factor)


def test_sizes_are_whole_elements_per_rank():
    assert C.op_sizes(1024, 1 << 20, 16, 3) == [1020, 16380, 262140]
    assert all(s % (4 * 3) == 0 for s in C.op_sizes(1024, 1 << 20, 16, 3))


def test_unsupported_errors_become_skip_reasons_others_do_not():
    assert C.unsupported(RuntimeError("ProcessGroupGloo does not support reduce_scatter\nmore")) == \
        "ProcessGroupGloo does not support reduce_scatter"
    assert C.unsupported(RuntimeError("Connection closed by peer")) is None


def test_summary_names_the_wrong_collective_and_keeps_skips():
    out = {"ops": {
        "all_gather": {"rows": [{"bytes": 1024, "busbw_GBps": 1.0, "wrong": 3, "first_wrong_index": 7}], "wrong": 3},
        "all_to_all": {"skipped": "not supported by gloo"},
        "broadcast": {"rows": [{"bytes": 1024, "busbw_GBps": 2.0, "wrong": 0, "first_wrong_index": None}],
                      "wrong": 0}}}
    metrics, problems, skipped = C.summarize(out)
    assert problems == ["all_gather: 3 wrong element(s), first at 1 KiB (index 7 on rank 0's output)"]
    assert skipped == ["all_to_all skipped: not supported by gloo"]
    assert metrics["broadcast_busbw_GBps"] == 2.0 and metrics["all_to_all_skipped"]


@needs_torch
def test_four_collectives_exact_over_gloo(process_tag):
    cfg = ValidateConfig(profile="quick", timeout=60, procs=2)
    (c,) = runner.run(cfg, ["collectives"], INFO).checks
    assert c.status == "pass", c.message
    for op in C.OPS:
        rows = c.details["ops"][op]["rows"]
        assert [r["wrong"] for r in rows] == [0] * len(rows)
        assert all(r["busbw_GBps"] > 0 for r in rows)
    assert not process_tag()


@needs_torch
def test_a_wrong_block_fails_naming_the_collective(monkeypatch, process_tag):
    monkeypatch.setenv("ENVCHECK_FAULT", "collectives.wrong:rank=1:op=all_gather")
    cfg = ValidateConfig(profile="quick", timeout=60, procs=2,
                         params={"collectives": {"max_bytes": 16 * 1024, "iters": 2}})
    (c,) = runner.run(cfg, ["collectives"], INFO).checks
    assert c.status == "fail" and c.message.startswith("all_gather: ")
    assert c.metrics["all_gather_wrong"] > 0 and c.metrics["broadcast_wrong"] == 0
    assert not process_tag()


@pytest.mark.gpu
def test_real_nccl_collectives_on_this_node():  # pragma: no cover - needs NVIDIA GPUs
    torch = pytest.importorskip("torch")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 1:
        pytest.skip("needs a CUDA GPU")
    cfg = ValidateConfig(device="cuda", ndevices=n, profile="quick", timeout=120)
    (c,) = runner.run(cfg, ["collectives"], {"distributed": {"available": True, "nccl": True}}).checks
    assert c.status == "pass", c.message
    assert c.metrics["backend"] == "nccl" and all(c.metrics[f"{op}_wrong"] == 0 for op in C.OPS)
