"""p2p check: pure judging and certification with hand-made pair figures; real GPUs marked gpu."""

from __future__ import annotations

import pytest

from envcheck import recipes
from envcheck.validate.certify import certify
from envcheck.validate.checks import REGISTRY
from envcheck.validate.checks import p2p as P
from envcheck.validate.config import ValidateConfig
from envcheck.validate.results import CheckResult

SPECS = recipes.load("gpu_specs")
FLOORS = recipes.load("validate_floors")


def rows(values: dict[tuple[int, int], float], wrong: dict | None = None) -> list[dict]:
    wrong = wrong or {}
    return [{"src": s, "dst": d, "GBps": v, "peer_access": True, "wrong": wrong.get((s, d), 0),
             "first_wrong": 5 if wrong.get((s, d)) else None} for (s, d), v in values.items()]


def test_ordered_pairs_cover_both_directions():
    assert P.ordered_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert P.ordered_pairs(1) == []


def test_a_corrupt_copy_fails_naming_the_pair():
    r = rows({(0, 1): 390.0, (1, 0): 391.0}, wrong={(1, 0): 7})
    status, problems, _ = P.describe(r, 0.5)
    assert status == "fail" and problems == ["cuda:1 -> cuda:0: 7 wrong element(s) after the copy (first at index 5)"]


def test_a_slow_pair_among_healthy_ones_warns_naming_it():
    values = {pair: 390.0 for pair in P.ordered_pairs(4)}
    values[(2, 3)] = 40.0
    status, problems, warns = P.describe(rows(values), 0.5)
    assert status == "warn" and not problems
    assert warns == ["cuda:2 -> cuda:3: 40.0 GB/s, below 0.5 x the median pair (390.0 GB/s)"]
    assert P.describe(rows({(0, 1): 40.0, (1, 0): 390.0}), 0.5)[0] == "pass"  # two pairs: no median to trust


def test_one_gpu_is_skipped_with_the_reason_and_the_cpu_too():
    spec = REGISTRY["p2p"]
    assert spec.unmet(ValidateConfig(device="cuda", ndevices=1), {}) == "needs at least 2 devices, 1 selected"
    assert spec.unmet(ValidateConfig(device="cpu"), {}) == "needs a CUDA device (running on the CPU)"


def _p2p_result(values) -> CheckResult:
    return CheckResult("p2p", "pass", {}, "ok", details={"pairs": rows(values)})


@pytest.mark.parametrize("name, slow, floor, verdict_has", [
    ("NVIDIA H100 80GB HBM3", 120.0, 335.0, "p2p copy_GBps on cuda:1->cuda:0: 120 GB/s is below its floor 335"),
    ("NVIDIA A100-SXM4-80GB", 200.0, 235.0, "p2p copy_GBps on cuda:1->cuda:0: 200 GB/s is below its floor 235"),
    ("NVIDIA L40S", 20.0, None, None),  # PCIe-only: reported, not judged
])
def test_pair_floors_follow_the_nvlink_class(name, slow, floor, verdict_has):
    devices = [{"index": i, "name": name} for i in range(2)]
    c = certify([_p2p_result({(0, 1): 390.0, (1, 0): slow})], devices, device_type="cuda", world_size=2,
                specs=SPECS, floors=FLOORS)
    figs = {f.device: f for f in c.figures if f.check == "p2p"}
    assert figs["cuda:1->cuda:0"].floor == floor
    if verdict_has:
        assert c.verdict == "degraded" and verdict_has in c.reasons[0]
        assert figs["cuda:0->cuda:1"].status == "ok"
    else:
        assert figs["cuda:1->cuda:0"].status == "unjudged"


@pytest.mark.gpu
def test_real_p2p_matrix_on_this_node():  # pragma: no cover - needs 2+ NVIDIA GPUs
    from envcheck.validate import runner

    torch = pytest.importorskip("torch")
    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip("needs 2 GPUs")
    cfg = ValidateConfig(device="cuda", ndevices=n, profile="quick", timeout=120)
    (c,) = runner.run(cfg, ["p2p"], {}).checks
    assert c.status in ("pass", "warn"), c.message
    assert len(c.details["pairs"]) == n * (n - 1) and c.metrics["wrong"] == 0


_PAIR_SCRIPT = r"""
import json, sys, torch
from envcheck.validate import timing
from envcheck.validate.checks import p2p as P
# a fake CUDA layer: CPU tensors stand in for the GPUs' buffers; GPU 2 has no peer access to 0
torch.cuda.can_device_access_peer = lambda a, b: not (a == 2 and b == 0)
timing.sync = lambda device: None
n, count = 3, 1 << 16
bufs = {i: P._pattern(count, 7 + i, torch.device("cpu")) for i in range(n)}
outs = {i: torch.empty(count, dtype=torch.int32) for i in range(n)}
rows = [P.measure_pair(s, d, count * 4, 1, 3, 7, bufs, outs) for s, d in P.ordered_pairs(n)]
print(json.dumps(rows))
"""


@pytest.mark.parametrize("fault, bad", [("", None), ("p2p.flip:src=1:dst=2", (1, 2))])
def test_pair_copies_are_verified_against_the_source_pattern(monkeypatch, fault, bad):
    """measure_pair's copy, timing and verification on CPU tensors behind a fake CUDA layer
    (subprocess: the pytest process stays torch-free)."""
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    env = dict(__import__("os").environ, ENVCHECK_FAULT=fault)
    out = subprocess.run([sys.executable, "-c", _PAIR_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert [(r["src"], r["dst"]) for r in rows] == P.ordered_pairs(3)
    for r in rows:
        assert r["GBps"] > 0 and r["copies"] == 3
        assert r["peer_access"] == ((r["src"], r["dst"]) != (2, 0))
        assert r["wrong"] == (1 if (r["src"], r["dst"]) == bad else 0)
    if bad:
        status, problems, _ = P.describe(rows, 0.0)
        assert status == "fail" and problems[0].startswith("cuda:1 -> cuda:2: 1 wrong element(s) after the copy")
