"""ddp: data-parallel training of the transformer across all ranks keeps every replica identical.

The ranks of the all-reduce (gloo on CPUs, NCCL on GPUs, started by
:func:`allreduce.launch`) train the transformer of the ``transformer`` check, each on its own
batches (seed + rank), for ``steps`` steps in fp32 with AdamW:

- **DDP** (``torch.nn.parallel.DistributedDataParallel``): gradients are averaged by
  all-reduce, so after every step each rank must hold bit-identical parameters (the same
  averaged gradient and the same optimizer arithmetic on every rank). Rank 0's flattened
  parameters are broadcast and compared element by element on every rank: any difference is a
  broken collective, a rank computing differently, or silent corruption.
- **FSDP2** (``torch.distributed.fsdp.fully_shard``, per block and the root; skipped with the
  reason where this torch lacks it): parameters sharded across ranks, gathered by all-gather,
  gradients reduce-scattered. After the same steps from the same start, its full parameters
  (``DTensor.full_tensor()``) must be identical on every rank and agree with DDP's within
  ``fsdp_rtol`` (the two reduce in different orders, so bits may differ).

:func:`train` is the per-rank body and runs in any initialised process group.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, CheckResult


def _flat(params) -> Any:
    import torch

    out = []
    for p in params:
        t = p.detach()
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        out.append(t.reshape(-1).float())
    return torch.cat(out)


def _mismatch(flat, group=None) -> int:
    """Elements where this rank differs from rank 0, summed over ranks (every rank gets it)."""
    import torch
    import torch.distributed as dist

    ref = flat.clone()
    dist.broadcast(ref, dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    bad = torch.tensor([float((flat != ref).sum())], dtype=torch.float64, device=flat.device)
    dist.all_reduce(bad, group=group)
    return int(bad.item())


def _run(kind: str, device, p: dict[str, Any], seed: int, rank: int, mark: Callable[[str], None], group=None):
    import torch
    import torch.distributed as dist

    from envcheck.validate import model_transformer as MT
    from envcheck.validate.checks.transformer import make_optimizer

    model = MT.build(seed + 7, device, vocab=int(p["vocab"]), d=int(p["d"]), heads=int(p["heads"]),
                     layers=int(p["layers"]), seq=int(p["seq"]))
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DDP(model, device_ids=ids, process_group=group)
    else:
        from torch.distributed.fsdp import fully_shard

        for blk in model.blocks:
            fully_shard(blk)
        fully_shard(model)
        wrapped = model
    opt, opt_kind = make_optimizer(wrapped.parameters(), float(p["lr"]), device.type)
    data = MT.make_batches(device, vocab=int(p["vocab"]), seq=int(p["seq"]), batch=int(p["batch"]),
                           steps=int(p["steps"]), seed=seed + 100 + rank)
    skew = faults.active("ddp", "skew")
    losses = []
    for s in range(int(p["steps"])):
        opt.zero_grad(set_to_none=True)
        loss = MT.loss_of(wrapped, data[s])
        loss.backward()
        opt.step()
        if skew is not None and kind == "ddp" and rank == int(skew.get("rank", 1)) and s == 0:
            with torch.no_grad():  # injected: one replica drifts
                next(model.parameters()).view(-1)[0] += 1e-3
        losses.append(loss.detach())
        mark(f"{kind} step {s + 1}/{p['steps']}")
    mean = torch.stack(losses).float()
    dist.all_reduce(mean, group=group)
    mean /= dist.get_world_size(group)
    return model, [float(v) for v in mean.cpu()], opt_kind


def train(device, p: dict[str, Any], seed: int, mark: Callable[[str], None] | None = None,
          group=None) -> dict[str, Any]:
    """DDP then FSDP2 in an initialised process group; every rank returns the same summary."""
    import torch
    import torch.distributed as dist

    say = mark or (lambda _t: None)
    rank = dist.get_rank(group)
    torch.manual_seed(seed)
    model, losses, opt_kind = _run("ddp", device, p, seed, rank, say, group)
    ddp_flat = _flat(model.parameters())
    out: dict[str, Any] = {"world_size": dist.get_world_size(group), "optimizer": f"AdamW({opt_kind})",
                           "ddp": {"losses": [round(v, 5) for v in losses], "mismatched": _mismatch(ddp_flat, group),
                                   "params": int(ddp_flat.numel())}}
    say("ddp compared")
    if not p.get("fsdp", True):
        out["fsdp"] = {"skipped": "fsdp is off in the profile"}
        return out
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401 - FSDP2, public from torch 2.6
    except ImportError as exc:
        out["fsdp"] = {"skipped": f"this torch has no torch.distributed.fsdp.fully_shard (FSDP2): {exc}"}
        return out
    model, losses, _ = _run("fsdp", device, p, seed, rank, say, group)
    flat = _flat(model.parameters())
    scale = float(ddp_flat.abs().max()) or 1.0
    out["fsdp"] = {"losses": [round(v, 5) for v in losses], "mismatched": _mismatch(flat, group),
                   "max_rel_diff_vs_ddp": float((flat - ddp_flat).abs().max()) / scale}
    say("fsdp compared")
    return out


def judge(out: dict[str, Any], loss_drop: float, rtol: float) -> tuple[list[str], dict[str, Any]]:
    """(problems, metrics) of one rank's summary (pure)."""
    problems: list[str] = []
    ddp = out.get("ddp") or {}
    losses = ddp.get("losses") or []
    k = max(1, min(5, len(losses) // 4))
    first, last = (sum(losses[:k]) / k, sum(losses[-k:]) / k) if losses else (math.nan, math.nan)
    metrics: dict[str, Any] = {"world_size": out.get("world_size"), "optimizer": out.get("optimizer"),
                               "ddp_mismatched": ddp.get("mismatched"), "params": ddp.get("params"),
                               "loss_first": round(first, 5), "loss_last": round(last, 5)}
    if ddp.get("mismatched"):
        problems.append(f"DDP replicas differ after {len(losses)} steps: {ddp['mismatched']} parameter element(s) "
                        "differ from rank 0's")
    if not all(math.isfinite(v) for v in losses):
        problems.append("DDP loss is NaN/Inf")
    elif not (last > 0 and first / last >= loss_drop):
        problems.append(f"DDP loss fell only {first:.3f} -> {last:.3f} (need x{loss_drop:g})")
    fsdp = out.get("fsdp") or {}
    if "skipped" in fsdp:
        metrics["fsdp_skipped"] = fsdp["skipped"]
    else:
        metrics["fsdp_mismatched"] = fsdp.get("mismatched")
        metrics["fsdp_max_rel_diff_vs_ddp"] = fsdp.get("max_rel_diff_vs_ddp")
        if fsdp.get("mismatched"):
            problems.append(f"FSDP2 full parameters differ across ranks: {fsdp['mismatched']} element(s)")
        diff = fsdp.get("max_rel_diff_vs_ddp")
        if diff is None or not math.isfinite(diff) or diff > rtol:
            problems.append(f"FSDP2 and DDP disagree after the same steps: max relative difference {diff:.3g} "
                            f"(tolerance {rtol:g})")
    return problems, metrics


def _body(device, params: dict[str, Any], mark: Callable[[str], None]) -> dict[str, Any]:
    return train(device, params, int(params["seed"]), mark)


def run(ctx: CheckContext) -> CheckResult:
    from envcheck.validate.checks.allreduce import _describe_failure, launch

    faults.at_start("ddp")
    cfg, p = ctx.config, dict(ctx.params)
    params = dict(p, seed=int(cfg.seed), n_sizes=max(1, int(p["steps"]) // 2))
    result = launch(cfg.world_size, cfg.device, params, float(cfg.timeout), ctx.progress,
                    module="envcheck.validate.checks.ddp")
    backend = "nccl" if cfg.device == "cuda" else "gloo"
    details: dict[str, Any] = {"marks": result["marks"], "exit_codes": result["exit_codes"]}
    if result.get("logs"):
        details["logs"] = result["logs"]
    if not result["ok"]:
        msg = _describe_failure(result, cfg.world_size, float(cfg.timeout)).replace("all-reduce", "ddp", 1)
        return CheckResult("ddp", FAIL, {"world_size": cfg.world_size, "backend": backend}, msg, details=details,
                           error={"kind": "hang" if result["hung"] is not None else "rank_failed",
                                  "type": "DataParallelFailure", "message": "", "traceback": ""})
    out = result["results"][0]
    details["ranks"] = out
    problems, metrics = judge(out, float(p["loss_drop"]), float(p["fsdp_rtol"]))
    metrics["backend"] = backend
    if problems:
        return CheckResult("ddp", FAIL, metrics, "; ".join(problems), details=details)
    fsdp = (f"FSDP2 identical across ranks, within {metrics['fsdp_max_rel_diff_vs_ddp']:.2g} of DDP"
            if "fsdp_skipped" not in metrics else f"FSDP2 skipped: {metrics['fsdp_skipped']}")
    msg = (f"{metrics['world_size']} rank(s) over {backend}: DDP replicas bit-identical after {p['steps']} steps "
           f"({metrics['params']} parameters, loss {metrics['loss_first']:.3f} -> {metrics['loss_last']:.3f}, "
           f"{metrics['optimizer']}); {fsdp}")
    return CheckResult("ddp", PASS, metrics, msg, details=details)


if __name__ == "__main__":
    from envcheck.proc import exit_now
    from envcheck.validate.checks.collectives import rank_main

    exit_now(rank_main(body=_body))
