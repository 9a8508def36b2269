"""cnn: the CIFAR-10-shaped CNN trains on the device, reproducibly and correctly.

Pass when: the mean loss of the last 10 steps is at least ``loss_drop`` times lower than
that of the first 10; every loss is finite; a second run with the same seed gives
bit-identical losses (deterministic algorithms on); the device's forward agrees with a
float64 CPU forward within the tolerance of recipes/validate_floors.json.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

from envcheck import recipes
from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, CheckResult


def _deterministic(device: str) -> None:
    """Turn deterministic algorithms on (PyTorch "Reproducibility" notes)."""
    import torch

    if device.startswith("cuda"):
        # cuBLAS needs a fixed workspace for reproducible results (CUDA >= 10.2; PyTorch
        # "Reproducibility" notes); it must be set before the first cuBLAS handle exists.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # warn_only: an op without a deterministic kernel warns instead of raising; the
    # bit-identical comparison of the two runs is the judge, not the flag.
    torch.use_deterministic_algorithms(True, warn_only=True)


def _train_twice(ctx: CheckContext, dev) -> tuple[Any, list[float], list[float], list[float], list[str]]:
    """Two training runs from the same seed: (model of run 1, its losses, run 2's losses, run 1's
    step times, torch's nondeterminism warnings)."""
    from envcheck.validate import model as M

    p = ctx.params
    steps, batch = int(p["steps"]), int(p["batch"])
    x, y = M.make_task(dev, int(p["samples"]), ctx.config.seed)
    order = M.batch_order(dev, int(p["samples"]), batch, steps, ctx.config.seed)

    def one_run(tag: str, base: float, times: list[float] | None):
        model = M.build(ctx.config.seed + 3, dev, int(p.get("width", 1)))
        with M.exact_fp32():
            losses = M.train(
                model, x, y, order, float(p["lr"]), step_seconds=times,
                progress=lambda s: ctx.progress(base + 0.45 * (s + 1) / steps, f"{tag} step {s + 1}/{steps}"),
            )
        return model, losses

    times: list[float] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, losses = one_run("run 1", 0.0, times)
        _, losses2 = one_run("run 2 (same seed)", 0.45, None)
    nondeterministic = sorted({str(w.message).split("\n")[0][:160] for w in caught
                               if "deterministic" in str(w.message)})
    return model, losses, losses2, times, nondeterministic


def figures(losses: list[float], losses2: list[float], times: list[float], p: dict[str, Any],
            ref: dict[str, Any]) -> dict[str, Any]:
    """The check's metrics from the two runs and the reference comparison (pure)."""
    steps, batch = int(p["steps"]), int(p["batch"])
    k = min(10, max(1, steps // 5))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    finite = all(math.isfinite(v) for v in losses + losses2)
    drop = first / last if finite and last > 0 else None
    # Steady state: skip the first steps (allocator warm-up, first-call kernel selection).
    steady = times[min(5, len(times) - 1):] or times
    step_s = sum(steady) / len(steady)
    return {
        "steps": steps,
        "batch": batch,
        "loss_first": round(first, 6) if math.isfinite(first) else None,
        "loss_last": round(last, 6) if math.isfinite(last) else None,
        "loss_drop": None if drop is None else round(drop, 3),
        "loss_drop_required": float(p["loss_drop"]),
        "finite": finite,
        "bit_identical": losses == losses2,
        "step_ms": round(step_s * 1e3, 4),
        "samples_per_s": round(batch / step_s, 1) if step_s > 0 else None,
        "forward_max_abs_err": ref["max_abs_err"],
        "forward_vs_tolerance": round(ref["worst_vs_tolerance"], 6),
    }


def judge(losses: list[float], losses2: list[float], p: dict[str, Any], ref: dict[str, Any],
          tol: dict[str, Any]) -> list[str]:
    """What is wrong with the training runs (pure); [] when the check passes."""
    steps = int(p["steps"])
    k = min(10, max(1, steps // 5))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    finite = all(math.isfinite(v) for v in losses + losses2)
    drop = first / last if finite and last > 0 else None
    problems = []
    if not finite:
        bad = next(i for i, v in enumerate(losses + losses2) if not math.isfinite(v)) % steps
        problems.append(f"loss is NaN/Inf from step {bad}")
    elif drop is None or drop < float(p["loss_drop"]):
        problems.append(f"loss fell only {first:.3f} -> {last:.3f} (x{drop or 0:.2f}, need x{p['loss_drop']:g})")
    if finite and losses != losses2:
        diverge = next(i for i, (a, b) in enumerate(zip(losses, losses2)) if a != b)
        problems.append(f"same seed, different losses from step {diverge} "
                        f"({losses[diverge]!r} vs {losses2[diverge]!r}): not reproducible")
    if not ref["ok"]:
        problems.append(f"forward differs from the CPU float64 reference by {ref['max_abs_err']:.3g} "
                        f"({ref['worst_vs_tolerance']:.3g}x the tolerance rtol={tol['forward_rtol']}, "
                        f"atol={tol['forward_atol']})")
    return problems


def run(ctx: CheckContext) -> CheckResult:
    import torch

    from envcheck.validate import model as M

    faults.at_start("cnn")
    p = ctx.params
    dev = torch.device(ctx.device)
    tol = recipes.load("validate_floors")["tolerances"]["cnn"]
    _deterministic(ctx.device)
    model, losses, losses2, times, nondeterministic = _train_twice(ctx, dev)
    ctx.progress(0.92, "forward vs CPU reference")
    x, _ = M.make_task(dev, int(p["samples"]), ctx.config.seed)
    ref = M.reference_error(model, x[: int(p["batch"])], rtol=float(tol["forward_rtol"]),
                            atol=float(tol["forward_atol"]))
    metrics = figures(losses, losses2, times, p, ref)
    details = {"nondeterministic_warnings": nondeterministic, "tolerance": tol}
    problems = judge(losses, losses2, p, ref, tol)
    if problems:
        return CheckResult("cnn", FAIL, metrics, "; ".join(problems), details=details)
    msg = (f"loss {metrics['loss_first']:.3f} -> {metrics['loss_last']:.3f} (x{metrics['loss_drop']:.1f}) in "
           f"{metrics['steps']} steps, {metrics['samples_per_s']:.0f} samples/s, bit-identical rerun, "
           "matches CPU reference")
    return CheckResult("cnn", PASS, metrics, msg, details=details)
