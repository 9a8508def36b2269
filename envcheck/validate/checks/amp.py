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


def judge_mode(mode: str, row: dict[str, Any], ref_last: float, tol: dict[str, Any], floor: dict[str, Any],
               tensor_cores: bool) -> tuple[str, list[str]]:
    """(status, reasons) of one measured mode against the tolerances and the speedup floor (pure)."""
    if not row["finite"]:
        return FAIL, [f"{mode}: loss is NaN/Inf"]
    bad = []
    if row["logits_rel_err"] > float(tol[f"{mode}_logits_rel"]):
        bad.append(f"{mode}: first-forward logits differ from fp32 by {row['logits_rel_err']:.3g} "
                   f"(tolerance {tol[f'{mode}_logits_rel']})")
    if row["loss_gap_rel"] > float(tol["final_loss_rel_to_initial"]):
        bad.append(f"{mode}: final loss {row['loss_last']:.4f} vs fp32 {ref_last:.4f} "
                   f"(gap {row['loss_gap_rel']:.3g} of the initial loss, tolerance {tol['final_loss_rel_to_initial']})")
    if bad:
        return FAIL, bad
    speedup = row["speedup"]
    if tensor_cores and speedup is not None and speedup < float(floor["minimum"]):
        return WARN, [f"{mode} speedup x{speedup:.2f} over fp32 is under x{floor['minimum']} on a tensor-core GPU"]
    return PASS, []


class _Trainer:
    """The cnn task trained from the same weights and batches in fp32 and each autocast mode."""

    def __init__(self, ctx: CheckContext, dev, total: int) -> None:
        from envcheck.validate import model as M

        self.ctx, self.dev, self.total, self.done = ctx, dev, total, 0
        cnn_p = ctx.config.check_params("cnn")
        self.seed, self.lr = ctx.config.seed, float(cnn_p["lr"])
        self.x, self.y = M.make_task(dev, int(cnn_p["samples"]), self.seed)
        self.order = M.batch_order(dev, int(cnn_p["samples"]), int(cnn_p["batch"]), int(ctx.params["steps"]),
                                   self.seed)

    def tick(self, note: str) -> None:
        self.done += 1
        self.ctx.progress(self.done / self.total, note)

    def train(self, amp_dtype, scaler):
        """(logits of the first forward in float32, the training losses)."""
        import torch

        from envcheck.validate import model as M

        model = M.build(self.seed + 3, self.dev)
        with M.exact_fp32():
            with torch.no_grad(), torch.autocast(self.dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(self.x[self.order[0]]).float()
            losses = M.train(model, self.x, self.y, self.order, self.lr, amp_dtype=amp_dtype, scaler=scaler)
        return logits, losses


def _measure_mode(tr: _Trainer, mode: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Train and time one autocast mode; the figures compared with the fp32 run ``ref``."""
    import torch

    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    scaler_cls = _grad_scaler if mode == "fp16" else None
    logits, losses = tr.train(amp_dtype, scaler_cls() if scaler_cls else None)
    tr.tick(f"{mode} training")
    step = _speed(tr.dev, tr.ctx.params, amp_dtype, scaler_cls, tr.seed)
    tr.tick(f"{mode} speed")
    k = ref["k"]
    finite = all(math.isfinite(v) for v in losses)
    logit_rel = float((logits - ref["logits"]).abs().max() / ref["logits"].abs().max().clamp_min(1e-12))
    last = sum(losses[-k:]) / k
    loss_gap = abs(last - ref["last"]) / ref["first"] if finite else None
    speedup = ref["step"] / step if step > 0 else None
    return {"status": PASS, "step_ms": round(step * 1e3, 4), "speedup": None if speedup is None else round(speedup, 3),
            "logits_rel_err": round(logit_rel, 6), "loss_last": round(last, 6) if finite else None,
            "loss_gap_rel": None if loss_gap is None else round(loss_gap, 6), "finite": finite}


def _verdict(plan: dict[str, str | None], metrics: dict[str, Any], details: dict[str, Any], problems: list[str],
             warnings_: list[str]) -> CheckResult:
    runnable = [m for m, why in plan.items() if why is None]
    if not runnable:
        return CheckResult("amp", SKIP, metrics, "; ".join(why for why in plan.values() if why), details=details)
    if problems:
        return CheckResult("amp", FAIL, metrics, "; ".join(problems), details=details)
    ran = ", ".join(f"{m} x{details['modes'][m]['speedup']:.2f}" for m in runnable)
    skipped = [f"{m} skipped: {why}" for m, why in plan.items() if why]
    if warnings_:
        return CheckResult("amp", WARN, metrics, "; ".join(warnings_ + skipped), details=details)
    msg = f"finite and close to fp32; speedup over fp32: {ran}"
    return CheckResult("amp", PASS, metrics, "; ".join([msg] + skipped), details=details)


def run(ctx: CheckContext) -> CheckResult:
    import torch

    faults.at_start("amp")
    tol = recipes.load("validate_floors")["tolerances"]["amp"]
    floor = recipes.load("validate_floors")["floors"]["amp"]["speedup"]
    dev = torch.device(ctx.device)
    cap = torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None
    plan = modes(ctx.device, cap)
    tr = _Trainer(ctx, dev, 1 + 2 * sum(1 for why in plan.values() if why is None))
    ref_logits, ref_losses = tr.train(None, None)
    ref_step = _speed(dev, ctx.params, None, None, tr.seed)
    tr.tick("fp32 baseline")
    k = min(10, max(1, int(ctx.params["steps"]) // 5))
    ref = {"logits": ref_logits, "step": ref_step, "k": k, "first": sum(ref_losses[:k]) / k,
           "last": sum(ref_losses[-k:]) / k}
    metrics: dict[str, Any] = {"fp32_step_ms": round(ref_step * 1e3, 4), "fp32_loss_last": round(ref["last"], 6)}
    details: dict[str, Any] = {"modes": {}, "tolerance": tol}
    problems, warnings_ = [], []
    tensor_cores = cap is not None and cap >= tuple(int(v) for v in floor["min_compute_capability"].split("."))
    for mode, why in plan.items():
        if why is not None:
            details["modes"][mode] = {"status": SKIP, "reason": why}
            continue
        row = _measure_mode(tr, mode, ref)
        metrics.update({f"{mode}_{key}": row[key] for key in ("speedup", "step_ms", "logits_rel_err", "loss_gap_rel", "finite")})
        row["status"], reasons = judge_mode(mode, row, ref["last"], tol, floor, tensor_cores)
        (problems if row["status"] == FAIL else warnings_).extend(reasons)
        details["modes"][mode] = row
    return _verdict(plan, metrics, details, problems, warnings_)
