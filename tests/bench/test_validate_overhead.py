"""bench/validate_overhead.py: the judged core (pure) and a smoke run of the collectives and watcher
sections at tiny sizes (real gloo ranks, the fake NVML); no timing is asserted (speed targets live
in the bench, not in tests)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import validate_overhead as vo  # noqa: E402

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def test_losses_are_bandwidth_lost_per_pair():
    # times: harness 110 us vs direct 100 us loses 1 - 100/110 of the bandwidth
    assert vo.pair_losses([110e-6, 100e-6], [100e-6, 100e-6], kind="time") == pytest.approx([1 / 11, 0.0])
    # rates: 98 GFLOPS with the watcher against 100 without loses 2 %
    assert vo.pair_losses([98.0], [100.0], kind="rate") == pytest.approx([0.02])
    with pytest.raises(ValueError):
        vo.pair_losses([1.0], [1.0, 2.0], kind="time")


def test_the_median_pair_decides_not_the_best_or_the_worst():
    row = vo.judge([0.01, 0.30, 0.02, -0.20, 0.03], 0.05)
    assert row["loss"] == 0.02 and row["verdict"] == "PASS" and row["spread"] == [-0.2, 0.3]
    assert vo.judge([0.06, 0.07, 0.01], 0.05)["verdict"] == "FAIL"
    assert vo.judge([0.5], 0.05, judged=False)["verdict"] == "INFO"



def test_an_aa_control_above_half_the_target_makes_a_row_noisy():
    quiet = vo.judge([0.01, 0.02, 0.03], 0.05, control=[0.01, -0.02, 0.005])
    assert quiet["verdict"] == "PASS" and quiet["noise"] == 0.01
    assert vo.judge([0.10, 0.12, 0.09], 0.05, control=[0.01, -0.01, 0.0])["verdict"] == "FAIL"
    noisy = vo.judge([0.01, 0.02, 0.03], 0.05, control=[0.3, -0.2, 0.01])
    assert noisy["verdict"] == "NOISY" and noisy["noise"] == 0.2
    assert vo.judge([0.3], 0.05, judged=False, control=[0.3])["verdict"] == "INFO"


def test_repeats_alternate_their_order_and_blocks_are_calibrated():
    assert [vo.order(r) for r in range(3)] == [("a", "b"), ("b", "a"), ("a", "b")]
    assert [vo.order(r, ("a", "b", "c")) for r in range(3)] == [("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")]
    assert vo.calibrated_iters(1e-3, 0.5) == 550  # >= 0.5 s with a 10 % margin
    assert vo.calibrated_iters(10.0, 0.5) == 3 and vo.calibrated_iters(0.0, 0.5) == 1_000_000
    asked: list[int] = []

    def block(k: int) -> float:  # 1 ms a call
        asked.append(k)
        return 1e-3

    assert vo.calibrate(block, 0.5) == 625 and asked == [5, 10, 20, 40, 80, 160, 320, 320, 320]
    speeds = iter([4e-3, 1e-3, 2e-3])  # the fastest of the three probes decides

    def noisy(k: int) -> float:
        return next(speeds)

    assert vo.calibrate(noisy, 0.5, start=100) == 625


def test_summary_and_verdicts_cover_every_section():
    raw = {"all_reduce": {"sizes": {"1024": {"iters": 10, "block_s": 0.6, "harness_s": [1.2e-3, 1.0e-3],
                                             "direct_s": [1.0e-3, 1.0e-3]}}},
           "all_to_all": {"skipped": "ProcessGroupX does not support all_to_all"}}
    ops = vo.summarize_collectives(raw)
    assert ops["all_to_all"] == {"skipped": "ProcessGroupX does not support all_to_all"}
    row = ops["all_reduce"]["sizes"][1024]
    assert row["loss"] == pytest.approx((1 / 6) / 2, abs=1e-4) and row["verdict"] == "FAIL"
    watcher = vo.judge([0.0], vo.TARGET_WATCH)
    labels = [label for label, _ in vo.verdicts({"collectives": {"ops": ops}, "watcher": watcher})]
    assert labels == ["all_reduce 1024 B", "watcher"]


def test_watcher_pairs_interleave_off_and_on():
    calls: list[str] = []

    class Handle:
        def stop(self):
            calls.append("stop")
            return {"samples": 3}

    def start():
        calls.append("start")
        return Handle()

    rates = iter([100.0, 99.0, 98.0, 100.0])
    row = vo.watcher_pairs(lambda: next(rates), start, 2)
    # pair 1: off 100, on 99; pair 2 (on first): on 98, off 100
    assert row["off"] == [100.0, 100.0] and row["on"] == [99.0, 98.0]
    assert row["loss"] == pytest.approx(0.015) and row["verdict"] == "PASS"
    assert calls == ["start", "stop", "start", "stop"] and row["samples_per_block"] == [3, 3]
    assert vo.watcher_pairs(lambda: 1.0, lambda: "not available, because x", 1) == {"error": "not available, because x"}

    rates = iter([100.0, 99.0, 100.0])  # off, on, off again (the A/A control)
    row = vo.watcher_pairs(lambda: next(rates), start, 1, control=True)
    assert row["on"] == [99.0] and row["control"] == [0.0] and row["verdict"] == "PASS"


@needs_torch
def test_smoke_run_of_collectives_and_watcher(tmp_path):
    out = tmp_path / "o.json"
    proc = subprocess.run([sys.executable, str(BENCH / "validate_overhead.py"), "--sections", "collectives,watcher",
                           "--device", "cpu", "--world", "2", "--repeats", "2", "--sizes", "1024",
                           "--block-s", "0.001", "--warmup", "1", "--seconds", "0.05", "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    ops = doc["collectives"]["ops"]
    assert set(ops) == set(vo.COLLECTIVES)
    for r in ops.values():
        if "skipped" in r:  # gloo lacks it: the reason is kept
            assert r["skipped"]
            continue
        row = r["sizes"]["1024"]
        assert row["pairs"] == 2 and row["iters"] >= 3
        assert row["harness_us"] > 0 and row["direct_us"] > 0 and len(row["control"]) == 2
        assert row["verdict"] in ("PASS", "FAIL", "NOISY")
    assert doc["watcher"]["pairs"] == 2 and doc["watcher"]["nvml"].startswith("fake") and "noise" in doc["watcher"]
    assert "collectives: validate's harness vs a direct loop, 2 ranks over gloo" in proc.stdout
