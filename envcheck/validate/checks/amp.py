"""amp: autocast training is finite, stays close to fp32, and is faster.

Modes: fp16 autocast with GradScaler (CUDA), bf16 autocast (CUDA with compute capability
>= 8.0, or the CPU). Correctness, per mode, on the cnn task from the same initial weights
and batches as an fp32 run: every loss finite; logits of the first forward within the
recipes tolerance of fp32; the final loss within ``final_loss_rel_to_initial`` x the
initial loss of the fp32 run. Speed: synchronised step time of a wider copy of the network
at a larger batch, fp32 (TF32 off) over autocast = speedup; under the floor (1.3x, issue 4)
on a tensor-core GPU (compute capability >= 7.0) the check warns.
"""

from __future__ import annotations

import math
from typing import Any

from envcheck import recipes
from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, SKIP, WARN, CheckResult


def modes(device: str, capability: tuple[int, int] | None) -> dict[str, str | None]:
    """Each mode -> None when it runs here, else the reason it is skipped."""
    if device.startswith("cuda"):
        bf16 = None if capability and capability >= (8, 0) else (
            f"bf16 needs compute capability >= 8.0 (this GPU: {capability[0]}.{capability[1]})"
            if capability else "bf16 needs compute capability >= 8.0")
        return {"fp16": None, "bf16": bf16}
    return {"fp16": "fp16 autocast + GradScaler is the CUDA path (no fast fp16 kernels on CPUs)",
            "bf16": None}


def _grad_scaler():
    import torch

    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def _speed(dev, p: dict[str, Any], amp_dtype, scaler_cls, seed: int) -> float:
    """Synchronised seconds per training step of the wide model (``amp_dtype`` None = fp32)."""
    import torch

    from envcheck.validate import model as M
    from envcheck.validate.timing import time_loop

    model = M.build(seed, dev, int(p["speed_width"]))
    gen = torch.Generator(device=dev).manual_seed(seed)
    xb = torch.randn(int(p["speed_batch"]), 3, 32, 32, generator=gen, device=dev)
    yb = torch.randint(0, 10, (int(p["speed_batch"]),), generator=gen, device=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = scaler_cls() if scaler_cls else None

    def step():
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
        M.optimizer_step(loss, opt, scaler)

    with M.exact_fp32():
        return time_loop(step, int(p["speed_steps"]), int(p["warmup"]), dev)


def run(ctx: CheckContext) -> CheckResult:
    import torch

    from envcheck.validate import model as M

    faults.at_start("amp")
    p = ctx.params
    cnn_p = ctx.config.check_params("cnn")
    tol = recipes.load("validate_floors")["tolerances"]["amp"]
    floor = recipes.load("validate_floors")["floors"]["amp"]["speedup"]
    dev = torch.device(ctx.device)
    cap = torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None
    plan = modes(ctx.device, cap)
    runnable = [m for m, why in plan.items() if why is None]
    seed = ctx.config.seed
    steps, batch = int(p["steps"]), int(cnn_p["batch"])
    x, y = M.make_task(dev, int(cnn_p["samples"]), seed)
    order = M.batch_order(dev, int(cnn_p["samples"]), batch, steps, seed)
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    total = 1 + 2 * len(runnable)
    done = [0]

    def tick(note: str) -> None:
        done[0] += 1
        ctx.progress(done[0] / total, note)

    def train(amp_dtype, scaler):
        model = M.build(seed + 3, dev)
        with M.exact_fp32():
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x[order[0]]).float()
            losses = M.train(model, x, y, order, float(cnn_p["lr"]), amp_dtype=amp_dtype, scaler=scaler)
        return logits, losses

    ref_logits, ref_losses = train(None, None)
    ref_step = _speed(dev, p, None, None, seed)
    tick("fp32 baseline")
    k = min(10, max(1, steps // 5))
    ref_first, ref_last = sum(ref_losses[:k]) / k, sum(ref_losses[-k:]) / k
    metrics: dict[str, Any] = {"fp32_step_ms": round(ref_step * 1e3, 4), "fp32_loss_last": round(ref_last, 6)}
    details: dict[str, Any] = {"modes": {}, "tolerance": tol}
    problems, warnings_ = [], []
    tensor_cores = cap is not None and cap >= tuple(int(v) for v in floor["min_compute_capability"].split("."))
    for mode, why in plan.items():
        if why is not None:
            details["modes"][mode] = {"status": SKIP, "reason": why}
            continue
        scaler_cls = _grad_scaler if mode == "fp16" else None
        logits, losses = train(dtypes[mode], scaler_cls() if scaler_cls else None)
        tick(f"{mode} training")
        step = _speed(dev, p, dtypes[mode], scaler_cls, seed)
        tick(f"{mode} speed")
        finite = all(math.isfinite(v) for v in losses)
        logit_rel = float((logits - ref_logits).abs().max() / ref_logits.abs().max().clamp_min(1e-12))
        last = sum(losses[-k:]) / k
        loss_gap = abs(last - ref_last) / ref_first if finite else None
        speedup = ref_step / step if step > 0 else None
        row = {"status": PASS, "step_ms": round(step * 1e3, 4),
               "speedup": None if speedup is None else round(speedup, 3),
               "logits_rel_err": round(logit_rel, 6), "loss_last": round(last, 6) if finite else None,
               "loss_gap_rel": None if loss_gap is None else round(loss_gap, 6), "finite": finite}
        metrics.update({f"{mode}_{key}": row[key] for key in ("speedup", "step_ms", "logits_rel_err", "loss_gap_rel", "finite")})
        bad = []
        if not finite:
            bad.append(f"{mode}: loss is NaN/Inf")
        else:
            if logit_rel > float(tol[f"{mode}_logits_rel"]):
                bad.append(f"{mode}: first-forward logits differ from fp32 by {logit_rel:.3g} "
                           f"(tolerance {tol[f'{mode}_logits_rel']})")
            if loss_gap > float(tol["final_loss_rel_to_initial"]):
                bad.append(f"{mode}: final loss {last:.4f} vs fp32 {ref_last:.4f} "
                           f"(gap {loss_gap:.3g} of the initial loss, tolerance {tol['final_loss_rel_to_initial']})")
        if bad:
            row["status"] = FAIL
            problems.extend(bad)
        elif tensor_cores and speedup is not None and speedup < float(floor["minimum"]):
            row["status"] = WARN
            warnings_.append(f"{mode} speedup x{speedup:.2f} over fp32 is under x{floor['minimum']} "
                             "on a tensor-core GPU")
        details["modes"][mode] = row
    if not runnable:
        return CheckResult("amp", SKIP, metrics, "; ".join(plan.values()), details=details)
    if problems:
        return CheckResult("amp", FAIL, metrics, "; ".join(problems), details=details)
    ran = ", ".join(f"{m} x{details['modes'][m]['speedup']:.2f}" for m in runnable)
    skipped = [f"{m} skipped: {why}" for m, why in plan.items() if why]
    if warnings_:
        return CheckResult("amp", WARN, metrics, "; ".join(warnings_ + skipped), details=details)
    msg = f"finite and close to fp32; speedup over fp32: {ran}"
    return CheckResult("amp", PASS, metrics, "; ".join([msg] + skipped), details=details)
