"""transformer: a small decoder-only model trains with the kernels large-model training uses.

A few pre-norm blocks (:mod:`envcheck.validate.model_transformer`) learn next-token
prediction of a fixed periodic token sequence generated on the device from the run's seed,
for a fixed number of steps, with ``scaled_dot_product_attention`` (causal), bf16 autocast
where the device supports it, AdamW with ``fused=True`` where this torch and device support
it (else ``foreach=True``, else the per-parameter loop; the report says which ran), and
optionally activation checkpointing and ``torch.compile``.

Pass when every loss is finite and the mean loss of the last steps is at least
``loss_drop`` times below that of the first steps. Warn when a GPU that should have the
fast attention kernels (FlashAttention needs compute capability >= 8.0, PyTorch's
``sdp_utils`` checks ``sm80``+) can only run the math fallback.

Throughput: tokens/s over the steps after ``warmup``; achieved TFLOPS by the model-FLOPs
rule of PaLM (Chowdhery et al. 2022, arXiv:2204.02311, Appendix B): per token 6 N (N the
parameters in matmuls; Kaplan et al. 2020, arXiv:2001.08361, section 2.1: C ~ 6 N per
training token) plus 12 L d T for attention (L layers, d model width, T sequence length;
PaLM's 12 L H Q T with H Q = d). Activation checkpointing's recomputation is not counted
(model FLOPs, not hardware FLOPs). MFU = achieved / the GPU's dense bf16 (or fp32) spec.
"""

from __future__ import annotations

import math
import time
from typing import Any

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, WARN, CheckResult

# The names torch.nn.attention.SDPBackend uses, in the order PyTorch tries them on CUDA
# (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp, priority_order: flash, efficient,
# math; cuDNN is tried first only on some builds and GPUs, hence measured, not assumed).
BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
SHORT = {"FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "memory-efficient",
         "CUDNN_ATTENTION": "cudnn", "MATH": "math"}
FLASH_MIN_CAPABILITY = (8, 0)


# --------------------------------------------------------------------------- pure


def flops_per_token(matmul_params: int, layers: int, d: int, seq: int) -> float:
    """Training FLOPs per token: 6 N + 12 L d T (PaLM Appendix B)."""
    return 6.0 * matmul_params + 12.0 * layers * d * seq


def loss_verdict(losses: list[float], loss_drop: float) -> tuple[bool, str, dict[str, Any]]:
    """(ok, problem text, figures) for a loss curve: finite, and fell ``loss_drop``-fold."""
    k = max(1, min(10, len(losses) // 5))
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        return False, f"loss is NaN/Inf from step {bad}", {"finite": False}
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    drop = first / last if last > 0 else math.inf
    figs = {"finite": True, "loss_first": round(first, 6), "loss_last": round(last, 6),
            "loss_drop": None if math.isinf(drop) else round(drop, 3)}
    if drop < loss_drop:
        return False, f"loss fell only {first:.3f} -> {last:.3f} (x{drop:.2f}, need x{loss_drop:g})", figs
    return True, "", figs


def sdpa_finding(device_type: str, capability: tuple[int, int] | None, available: list[str]) -> str | None:
    """A warning when a GPU that should run fused attention kernels can only run math."""
    if device_type != "cuda" or capability is None or tuple(capability) < FLASH_MIN_CAPABILITY:
        return None
    if "FLASH_ATTENTION" in available:
        return None
    others = [SHORT[b] for b in available if b != "MATH"]
    cap = f"{capability[0]}.{capability[1]}"
    if others:
        return (f"FlashAttention is unavailable on this compute capability {cap} GPU (it should have it); "
                f"SDPA uses {', '.join(others)} instead")
    return (f"no fused SDPA kernel (flash, memory-efficient, cudnn) runs on this compute capability {cap} GPU: "
            "attention falls back to the math path (slower, O(T^2) memory); this torch build may lack them")


# --------------------------------------------------------------------------- torch


def sdpa_backends(device, dtype, shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """Try forward+backward of causal SDPA restricted to each backend alone; and which one
    PyTorch picks by default (``torch._fused_sdp_choice``, private: best effort)."""
    import torch
    import torch.nn.functional as F

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as exc:
        return {"available": [], "selected": None, "errors": {"*": f"torch.nn.attention missing: {exc}"}}
    out: dict[str, Any] = {"available": [], "errors": {}, "selected": None}
    members = getattr(SDPBackend, "__members__", {})
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(*shape, generator=gen, device=device).to(dtype)
    for name in BACKENDS:
        backend = members.get(name)
        if backend is None:
            out["errors"][name] = "not in this torch"
            continue
        try:
            qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, q, q))
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(qq, kk, vv, is_causal=True).sum().backward()
            out["available"].append(name)
        except Exception as exc:  # noqa: BLE001 - an unavailable kernel is the finding
            text = str(exc).strip().splitlines()
            out["errors"][name] = (text[0] if text else type(exc).__name__)[:200]
    try:
        choice = int(torch._fused_sdp_choice(q, q, q, is_causal=True))
        out["selected"] = next((n for n, b in members.items() if int(b) == choice), str(choice))
    except Exception as exc:  # noqa: BLE001
        out["selected"] = None
        out["selected_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def make_optimizer(params, lr: float, device_type: str, want: str = "auto"):
    """AdamW: fused where supported, else foreach, else the loop. Returns (optimizer, which)."""
    import torch

    tries = {"auto": ("fused", "foreach", "loop"), "fused": ("fused",), "foreach": ("foreach",),
             "loop": ("loop",)}[want]
    params = list(params)
    last: Exception | None = None
    for kind in tries:
        try:
            kw = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[kind]
            return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, **kw), kind
        except (RuntimeError, TypeError, ValueError) as exc:
            last = exc
    raise RuntimeError(f"AdamW({want}) is not available here: {last}")


def _autocast(device_type: str, want: bool):
    """(context factory, dtype name): bf16 autocast where the device supports it."""
    import contextlib

    import torch

    if want:
        ok = torch.cuda.is_bf16_supported() if device_type == "cuda" else True
        if ok:
            return (lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)), "bf16"
    return contextlib.nullcontext, "fp32"


def _spec_tflops(name: str | None, dtype: str) -> float | None:
    from envcheck import recipes
    from envcheck.validate.certify import match_model

    model = match_model(name, recipes.load("gpu_specs"))
    return (model or {}).get("peak_tflops", {}).get(dtype) if model else None


def run(ctx: CheckContext) -> CheckResult:
    import torch

    from envcheck.validate import model_transformer as MT
    from envcheck.validate.timing import sync

    faults.at_start("transformer")
    p = ctx.params
    dev = torch.device(ctx.device)
    is_cuda = dev.type == "cuda"
    cap = tuple(torch.cuda.get_device_capability(dev)) if is_cuda else None
    name = torch.cuda.get_device_name(dev) if is_cuda else "cpu"
    vocab, d, heads, layers, seq = (int(p[k]) for k in ("vocab", "d", "heads", "layers", "seq"))
    batch, steps, warmup = int(p["batch"]), int(p["steps"]), int(p["warmup"])
    autocast, dtype = _autocast(dev.type, bool(p.get("bf16", True)))

    ctx.progress(0.02, "SDPA backends")
    sdpa = sdpa_backends(dev, torch.bfloat16 if dtype == "bf16" else torch.float32, (batch, heads, seq, d // heads))
    model = MT.build(ctx.config.seed + 7, dev, vocab=vocab, d=d, heads=heads, layers=layers, seq=seq,
                     checkpointing=bool(p.get("checkpointing", False)))
    n_params = MT.matmul_params(model)
    opt, opt_kind = make_optimizer(model.parameters(), float(p["lr"]), dev.type, str(p.get("optimizer", "auto")))
    step_fn = MT.loss_of
    compiled = bool(p.get("compile", False))
    if compiled:
        step_fn = torch.compile(MT.loss_of)
    data = MT.make_batches(dev, vocab=vocab, seq=seq, batch=batch, steps=steps, seed=ctx.config.seed + 11)
    nan_at = faults.active("transformer", "nan")
    losses = []
    t_start = None
    for s in range(steps):
        if s == warmup:
            sync(dev)
            t_start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = step_fn(model, data[s])
        if nan_at is not None and s >= int(nan_at.get("step", 5)):
            loss = loss * float("nan")
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if (s + 1) % 10 == 0 or s + 1 == steps:
            ctx.progress(0.05 + 0.9 * (s + 1) / steps, f"step {s + 1}/{steps}")
    sync(dev)
    seconds = time.perf_counter() - t_start if t_start is not None else None
    values = [float(v) for v in torch.stack(losses).float().cpu()]
    ok, problem, figs = loss_verdict(values, float(p["loss_drop"]))
    timed = steps - warmup
    tokens = timed * batch * seq
    tok_s = tokens / seconds if seconds else None
    fpt = flops_per_token(n_params, layers, d, seq)
    tflops = fpt * tok_s / 1e12 if tok_s else None
    spec = _spec_tflops(name, dtype) if is_cuda else None
    metrics: dict[str, Any] = {
        "steps": steps, "batch": batch, "seq": seq, "layers": layers, "d_model": d,
        "params_matmul": n_params, **figs,
        "loss_drop_required": float(p["loss_drop"]),
        "dtype": dtype, "optimizer": f"AdamW({opt_kind})",
        "checkpointing": bool(p.get("checkpointing", False)), "compiled": compiled,
        "sdpa_backend": SHORT.get(sdpa.get("selected"), sdpa.get("selected")),
        "sdpa_available": [SHORT[b] for b in sdpa["available"]],
        "tokens_per_s": None if tok_s is None else round(tok_s, 1),
        "tflops": None if tflops is None else round(tflops, 6),
        "mfu": round(tflops / spec, 4) if tflops and spec else None,
    }
    details = {"losses": [round(v, 5) if math.isfinite(v) else None for v in values], "sdpa": sdpa,
               "flops_per_token": fpt, "spec_tflops": spec, "device": ctx.device, "name": name,
               "capability": list(cap) if cap else None}
    if not ok:
        return CheckResult("transformer", FAIL, metrics, problem, details=details)
    finding = sdpa_finding(dev.type, cap, sdpa["available"])
    rate = f"{tok_s:,.0f} tokens/s, {tflops:.3g} TFLOPS" if tok_s else "no timed steps"
    if metrics["mfu"] is not None:
        rate += f" (MFU {100 * metrics['mfu']:.1f}% of {spec:g})"
    msg = (f"loss {figs['loss_first']:.3f} -> {figs['loss_last']:.3f} in {steps} steps ({dtype}, "
           f"SDPA {metrics['sdpa_backend']}, AdamW {opt_kind}"
           + (", checkpointed" if metrics["checkpointing"] else "") + (", compiled" if compiled else "")
           + f"); {rate}")
    if finding:
        return CheckResult("transformer", WARN, metrics, f"{finding}; {msg}", details=details)
    return CheckResult("transformer", PASS, metrics, msg, details=details)
