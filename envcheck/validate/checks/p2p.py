"""p2p: copy bandwidth and data integrity for every ordered pair of GPUs.

A bad NVLink or PCIe path between two GPUs hides inside a node's all-reduce; AzNHC checks
device-to-device copy bandwidth per pair with nvbandwidth (floor 335 GB/s on H100/H200
SXM, Azure/azurehpc-health-checks conf/, check_gpu_bw), gpud reports the P2P status matrix.
Per ordered pair (src, dst): whether CUDA reports peer access (``cudaDeviceCanAccessPeer``
via ``torch.cuda.can_device_access_peer``); ``warmup`` + ``iters`` copies of ``bytes`` from
a buffer on src into one on dst (``Tensor.copy_``, a copy-engine memcpy; PyTorch issues a
cross-device copy on the *source* device's current stream, aten/src/ATen/native/cuda/Copy.cu,
so this is the source writing into its peer; without peer access the driver stages it
through host memory), synchronised around the timed block; then every element of dst is
compared with the pattern src held. GB/s = bytes x copies / seconds / 1e9.

The check fails on any wrong element (naming the pair) and warns on a pair below
``outlier_fraction`` of the median pair (a slow link among healthy ones); the absolute
floors per NVLink class are judged in certification (recipes/validate_floors.json "p2p").
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.config import human_bytes
from envcheck.validate.results import FAIL, PASS, WARN, CheckResult

_CHUNK = 1 << 24  # elements per verification chunk


def ordered_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def slow_pairs(rows: list[dict[str, Any]], fraction: float) -> list[dict[str, Any]]:
    """Pairs below ``fraction`` of the median pair's bandwidth (pure)."""
    values = [r["GBps"] for r in rows if r.get("GBps")]
    if len(values) < 3:  # two pairs have no meaningful median to stand out from
        return []
    median = statistics.median(values)
    return [r for r in rows if r.get("GBps") is not None and r["GBps"] < fraction * median]


def describe(rows: list[dict[str, Any]], fraction: float) -> tuple[str, list[str], list[str]]:
    """(status, problems, warnings) of the pair rows (pure)."""
    problems = [f"cuda:{r['src']} -> cuda:{r['dst']}: {r['wrong']} wrong element(s) after the copy "
                f"(first at index {r['first_wrong']})" for r in rows if r.get("wrong")]
    values = [r["GBps"] for r in rows if r.get("GBps")]
    median = statistics.median(values) if values else 0.0
    warns = [f"cuda:{r['src']} -> cuda:{r['dst']}: {r['GBps']:.1f} GB/s, below {fraction:g} x the median pair "
             f"({median:.1f} GB/s)" + ("" if r.get("peer_access") else "; no peer access")
             for r in slow_pairs(rows, fraction)]
    return (FAIL if problems else WARN if warns else PASS), problems, warns


def _pattern(count: int, salt: int, device, start: int = 0):
    import torch

    i = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return (i * 2654435761 + salt).remainder_(2147483647).to(torch.int32)


def measure_pair(src: int, dst: int, nbytes: int, warmup: int, iters: int, salt: int,
                 bufs: dict[int, Any], outs: dict[int, Any]) -> dict[str, Any]:
    import torch

    from envcheck.validate.timing import sync

    a, b = bufs[src], outs[dst]
    peer = bool(torch.cuda.can_device_access_peer(src, dst))
    b.zero_()
    for _ in range(warmup):
        b.copy_(a)
    sync(f"cuda:{src}")
    sync(f"cuda:{dst}")
    t0 = time.perf_counter()
    for _ in range(iters):
        b.copy_(a)
    sync(f"cuda:{src}")
    sync(f"cuda:{dst}")
    sec = time.perf_counter() - t0
    flip = faults.active("p2p", "flip")
    if flip is not None and (src, dst) == (int(flip.get("src", 0)), int(flip.get("dst", 1))):
        b[b.numel() // 3] ^= 1  # injected: one flipped bit in the copy
    wrong, first = 0, None
    for s in range(0, b.numel(), _CHUNK):
        e = min(b.numel(), s + _CHUNK)
        bad = b[s:e] != _pattern(e - s, salt + src, b.device, start=s)
        n_bad = int(bad.sum())
        if n_bad and first is None:
            first = s + int(bad.nonzero()[0, 0])
        wrong += n_bad
    gbps = nbytes * iters / sec / 1e9 if sec > 0 else None
    return {"src": src, "dst": dst, "peer_access": peer, "bytes": nbytes, "copies": iters,
            "seconds": round(sec, 6), "GBps": None if gbps is None else round(gbps, 3),
            "wrong": wrong, "first_wrong": first}


def run(ctx: CheckContext) -> CheckResult:
    import torch

    from envcheck import recipes

    faults.at_start("p2p")
    p = ctx.params
    n = len(ctx.devices)
    fraction = float(recipes.load("validate_floors").get("p2p", {}).get("outlier_fraction_of_median", 0.5))
    free = min(int(torch.cuda.mem_get_info(i)[0]) for i in range(n))
    nbytes = min(int(p["bytes"]), free // 4)
    nbytes -= nbytes % 4
    count = nbytes // 4
    salt = int(ctx.config.seed)
    bufs = {i: _pattern(count, salt + i, torch.device("cuda", i)) for i in range(n)}
    outs = {i: torch.empty(count, dtype=torch.int32, device=torch.device("cuda", i)) for i in range(n)}
    access = [[None if i == j else bool(torch.cuda.can_device_access_peer(i, j)) for j in range(n)]
              for i in range(n)]
    rows = []
    pairs = ordered_pairs(n)
    for k, (src, dst) in enumerate(pairs):
        ctx.progress(k / len(pairs), f"cuda:{src} -> cuda:{dst}")
        rows.append(measure_pair(src, dst, nbytes, int(p["warmup"]), int(p["iters"]), salt, bufs, outs))
    del bufs, outs
    status, problems, warns = describe(rows, fraction)
    values = [r["GBps"] for r in rows if r["GBps"] is not None]
    metrics = {"gpus": n, "pairs": len(rows), "bytes": nbytes,
               "min_GBps": min(values) if values else None,
               "median_GBps": round(statistics.median(values), 3) if values else None,
               "max_GBps": max(values) if values else None,
               "pairs_without_peer_access": sum(1 for r in rows if not r["peer_access"]),
               "wrong": sum(r["wrong"] for r in rows)}
    worst = min(rows, key=lambda r: r["GBps"] or 0) if rows else None
    details = {"pairs": rows, "peer_access": access,
               "names": [torch.cuda.get_device_name(i) for i in range(n)]}
    if status == FAIL:
        return CheckResult("p2p", FAIL, metrics, "; ".join(problems), details=details)
    msg = (f"{len(rows)} ordered pairs of {n} GPUs, {human_bytes(nbytes)} copies verified; "
           f"{metrics['min_GBps']:.1f}..{metrics['max_GBps']:.1f} GB/s (slowest cuda:{worst['src']} -> "
           f"cuda:{worst['dst']})")
    if metrics["pairs_without_peer_access"]:
        msg += f"; {metrics['pairs_without_peer_access']} pair(s) without peer access (copied through the host)"
    if status == WARN:
        return CheckResult("p2p", WARN, metrics, "; ".join(warns + [msg]), details=details)
    return CheckResult("p2p", PASS, metrics, msg, details=details)
