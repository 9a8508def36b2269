"""Cross-node consensus (issue 17 part 3): the same fixed-seed computation on every rank.

Every rank's all-reduce child (rank.py) runs :func:`compute` once on its device: a chain of
float32 GEMMs and a few SGD steps of a tiny MLP, inputs and weights drawn on the CPU from a
fixed seed (the CPU generator gives the same numbers everywhere), TF32 off and
``torch.use_deterministic_algorithms(True)``; it sends the sha256 of the result tensors'
bytes. Rank 0 (:func:`consensus_section`, pure) groups the digests by what makes a result
bit-reproducible - the device model, the driver, the torch build and its CUDA, and on CPUs the
kernel capability torch dispatches to - and in each group a digest that differs from the
strict majority names a silent-data-corruption suspect: its node fails. A group without a
strict majority (2 ranks that disagree, a tie) is inconclusive and no node is blamed; a group
of one rank has nothing to compare with. Different GPU models or builds legitimately round
differently (other kernels, other reduction orders), hence the grouping.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

SEED = 20260417
GEMM_N, GEMM_STEPS = 256, 8
MLP_IN, MLP_HIDDEN, MLP_OUT, BATCH, TRAIN_STEPS = 64, 128, 10, 32, 5


def _bytes(t) -> bytes:
    import torch

    return bytes(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).tolist())  # no numpy


def compute(device, rank: int = 0) -> dict[str, Any]:
    """Run the fixed computation on ``device``; ``{"digest", "key": {...}}``."""
    import os
    import platform

    import torch

    from envcheck.validate import faults

    # cuBLAS is deterministic only with a fixed workspace (CUDA docs, "Results reproducibility");
    # read when its handle is created, so set it before the first GEMM of this process.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        gen = torch.Generator().manual_seed(SEED)
        x = torch.randn(GEMM_N, GEMM_N, generator=gen).to(device)
        for _ in range(GEMM_STEPS):
            b = (torch.randn(GEMM_N, GEMM_N, generator=gen) / GEMM_N ** 0.5).to(device)
            x = torch.tanh(x @ b)
        w1 = (torch.randn(MLP_IN, MLP_HIDDEN, generator=gen) * 0.1).to(device).requires_grad_()
        w2 = (torch.randn(MLP_HIDDEN, MLP_OUT, generator=gen) * 0.1).to(device).requires_grad_()
        data = torch.randn(BATCH, MLP_IN, generator=gen).to(device)
        # one-hot targets and an explicit loss: CUDA's nll_loss and gather's backward use atomics
        # (torch.use_deterministic_algorithms lists them), dense ops and reductions do not.
        target = torch.nn.functional.one_hot(torch.randint(0, MLP_OUT, (BATCH,), generator=gen),
                                             MLP_OUT).float().to(device)
        for _ in range(TRAIN_STEPS):
            logp = torch.log_softmax(torch.relu(data @ w1) @ w2, dim=1)
            loss = -(logp * target).sum() / BATCH
            g1, g2 = torch.autograd.grad(loss, (w1, w2))
            with torch.no_grad():
                w1 -= 0.1 * g1
                w2 -= 0.1 * g2
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        flip = faults.active("consensus", "flip")
        if flip is not None and rank == int(flip.get("rank", 1)):
            with torch.no_grad():
                x.view(torch.int32).view(-1)[0] ^= 1  # one low mantissa bit: a silent error
        h = hashlib.sha256()
        for t in (x, w1, w2, loss):
            h.update(_bytes(t))
    finally:
        torch.use_deterministic_algorithms(before)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if device.type == "cuda":
        # cuBLAS is bit-reproducible on the same architecture *and SM count* (a MIG slice differs).
        dev = f"{torch.cuda.get_device_name(device)} ({torch.cuda.get_device_properties(device).multi_processor_count} SMs)"
    else:
        cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()
        dev = f"cpu {platform.machine()} {cap}"
    return {"digest": h.hexdigest(), "key": {"device": dev, "torch": torch.__version__,
                                             "cuda": torch.version.cuda}}


def _digests(entries: list[Mapping]) -> list[dict]:
    """One row per rank that sent a digest (in its all-reduce check's details)."""
    out = []
    for e in entries:
        rep = e.get("report") or {}
        driver = (rep.get("machine") or {}).get("driver_version") if isinstance(rep.get("machine"), Mapping) else None
        for c in rep.get("checks") or []:
            cons = (c.get("details") or {}).get("consensus") if isinstance(c, dict) else None
            if c.get("name") == "allreduce" and isinstance(cons, Mapping) and isinstance(cons.get("digest"), str):
                key = dict(cons.get("key") or {})
                key["driver"] = driver
                out.append({"rank": e.get("rank"), "node_rank": e.get("node_rank"), "hostname": e.get("hostname"),
                            "digest": cons["digest"], "key": key})
    return out


def _label(key: Mapping) -> str:
    parts = [str(key.get("device"))]
    if key.get("driver"):
        parts.append(f"driver {key['driver']}")
    parts.append(f"torch {key.get('torch')}" + (f" CUDA {key['cuda']}" if key.get("cuda") else ""))
    return ", ".join(parts)


def consensus_section(entries: list[Mapping]) -> dict | None:
    """The ``consensus`` section: ``groups[]`` {label, ranks, status: agree|outliers|inconclusive|
    alone, majority (digest), outliers [{rank, node_rank, hostname, digest}]}; None when no rank
    sent a digest."""
    rows = _digests(entries)
    if not rows:
        return None
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_label(r["key"]), []).append(r)
    out = []
    for label in sorted(groups):
        g = groups[label]
        counts = Counter(r["digest"] for r in g).most_common()
        top, n = counts[0]
        entry = {"label": label, "ranks": len(g), "digests": len(counts), "majority": None, "outliers": []}
        if len(g) == 1:
            entry["status"] = "alone"
        elif len(counts) == 1:
            entry.update(status="agree", majority=top)
        elif n * 2 > len(g):
            entry.update(status="outliers", majority=top,
                         outliers=[{k: r[k] for k in ("rank", "node_rank", "hostname", "digest")}
                                   for r in g if r["digest"] != top])
        else:
            entry["status"] = "inconclusive"
        out.append(entry)
    return {"groups": out}


def apply(nodes: list[dict], section: dict | None) -> tuple[list[str], list[str]]:
    """Fail the outliers' nodes; (reasons, extra cluster verdicts: degraded when inconclusive)."""
    if not section:
        return [], []
    by_node = {n["node_rank"]: n for n in nodes}
    reasons, extra = [], []
    for g in section["groups"]:
        for o in g["outliers"]:
            n = by_node.get(o["node_rank"])
            if n is not None:
                n["verdict"] = "failed"
                n["consensus_suspect"] = True
            reasons.append(f"consensus: node {o['node_rank']} ({o['hostname']}) rank {o['rank']} on {g['label']} "
                           f"computed digest {o['digest'][:12]} where {g['ranks'] - len(g['outliers'])} of "
                           f"{g['ranks']} ranks computed {g['majority'][:12]}: silent data corruption suspect")
        if g["status"] == "inconclusive":
            reasons.append(f"consensus: the {g['ranks']} ranks on {g['label']} computed {g['digests']} different "
                           "digests with no majority: inconclusive, no node blamed")
            extra = ["degraded"]
    return reasons, extra
