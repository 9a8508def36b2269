"""memory: copy bandwidth, pinned host<->device bandwidth, pattern write/verify.

Per device:
- ``d2d_GBps``: ``dst.copy_(src)`` of ``copy_bytes`` (1 GiB on GPUs), counted as read +
  write bytes like STREAM's Copy, so it compares with the spec memory bandwidth. On the CPU
  this is a host-memory copy.
- ``h2d_GBps`` / ``d2h_GBps`` (CUDA): pinned host buffer <-> device, bytes / time, as
  nvbandwidth's host_to_device/device_to_host_memcpy_ce that Azure NHC gates on.
- pattern test: ``pattern_fraction`` of free device memory (a bounded buffer on CPUs) in
  chunks of at most 1 GiB; each pattern (all zeros, all ones, 0x55.., 0xAA.., then each
  word's own index) is written to every chunk before any chunk is read back, so a write
  that lands in the wrong place shows too; every word is compared.
"""

from __future__ import annotations

import time
from typing import Any

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.config import GiB, MiB, human_bytes
from envcheck.validate.results import FAIL, PASS, SKIP, CheckResult

PATTERNS = (0x00000000, 0xFFFFFFFF, 0x55555555, 0xAAAAAAAA)
_CHUNK = 1 * GiB
_SUB = 64 * MiB // 4  # words per verification slice (bounds the comparison temporaries)


def _as_int32(word: int) -> int:
    return word - (1 << 32) if word >= (1 << 31) else word


def copy_bandwidth(dev, nbytes: int, iters: int) -> float:
    """GB/s of a device-local copy, counting read + write bytes."""
    import torch

    from envcheck.validate.timing import time_loop

    src = torch.empty(nbytes // 4, dtype=torch.int32, device=dev).fill_(1)
    dst = torch.empty_like(src)
    sec = time_loop(lambda: dst.copy_(src), iters, 2, dev)
    return 2 * nbytes / sec / 1e9


def host_bandwidth(dev, nbytes: int, iters: int) -> tuple[float, float]:
    """(h2d, d2h) GB/s between a pinned host buffer and ``dev``."""
    import torch

    from envcheck.validate.timing import time_loop

    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    devbuf = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    h2d = time_loop(lambda: devbuf.copy_(host, non_blocking=True), iters, 2, dev)
    d2h = time_loop(lambda: host.copy_(devbuf, non_blocking=True), iters, 2, dev)
    return nbytes / h2d / 1e9, nbytes / d2h / 1e9


def _allocate(dev, target: int) -> list:
    """Chunks of at most 1 GiB up to ``target`` bytes; stops early when allocation fails."""
    import torch

    chunks, left = [], target
    while left >= 4 * MiB:
        size = min(_CHUNK, left)
        try:
            chunks.append(torch.empty(size // 4, dtype=torch.int32, device=dev))
        except (torch.OutOfMemoryError, RuntimeError):
            break
        left -= size
    return chunks


def pattern_test(dev, chunks: list, progress=None) -> dict[str, Any]:
    """Write every pattern to every chunk, then verify every word. Returns counts."""
    import torch

    flip = faults.active("memory", "flip")
    words = sum(c.numel() for c in chunks)
    bad, first = 0, None
    steps = len(PATTERNS) + 1
    t0 = time.perf_counter()
    for step, word in enumerate(list(PATTERNS) + [None]):
        for i, c in enumerate(chunks):
            if word is None:  # each word's own index (offset by the chunk number)
                torch.arange(c.numel(), dtype=torch.int32, device=dev, out=c)
                c.add_(i * 7919)
            else:
                c.fill_(_as_int32(word))
        if flip is not None and word == 0x55555555 and chunks:
            chunks[0].view(-1)[chunks[0].numel() // 3] ^= 1  # injected: one flipped bit
        for i, c in enumerate(chunks):
            for s in range(0, c.numel(), _SUB):
                e = min(c.numel(), s + _SUB)
                if word is None:
                    expected = torch.arange(s, e, dtype=torch.int32, device=dev).add_(i * 7919)
                    diff = c[s:e] != expected
                else:
                    diff = c[s:e] != _as_int32(word)
                n = int(diff.sum())
                if n:
                    bad += n
                    if first is None:
                        first = {"pattern": "index" if word is None else f"0x{word:08X}", "chunk": i,
                                 "byte_offset": 4 * (s + int(diff.nonzero()[0, 0]))}
        if progress is not None:
            progress((step + 1) / steps)
    if str(dev).startswith("cuda"):
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return {"bytes": 4 * words, "patterns": steps, "mismatched_words": bad, "first_mismatch": first,
            "seconds": round(seconds, 4),
            # every pattern writes and reads every byte once (plus the compare's reads)
            "GBps": round(2 * 4 * words * steps / seconds / 1e9, 3) if seconds > 0 else None}


def _bandwidths(ctx: CheckContext, dev, name: str, base: float, nd: int) -> dict[str, Any]:
    """Device copy bandwidth, and pinned host<->device bandwidth on CUDA."""
    import torch

    p = ctx.params
    copy_bytes = int(p["copy_bytes"])
    if dev.type == "cuda":
        copy_bytes = min(copy_bytes, int(torch.cuda.mem_get_info(dev)[0]) // 4)
    ctx.progress(base, f"{name}: copy bandwidth")
    row: dict[str, Any] = {"device": name, "d2d_GBps": round(copy_bandwidth(dev, copy_bytes, int(p["copy_iters"])), 3),
                           "copy_bytes": copy_bytes}
    if dev.type == "cuda" and int(p.get("transfer_bytes") or 0):
        ctx.progress(base + 0.1 / nd, f"{name}: pinned host<->device bandwidth")
        h2d, d2h = host_bandwidth(dev, int(p["transfer_bytes"]), int(p["copy_iters"]))
        row["h2d_GBps"], row["d2h_GBps"] = round(h2d, 3), round(d2h, 3)
    else:
        row["host_transfer"] = {"status": SKIP, "reason": "no device: host<->device copies need CUDA"}
    return row


def _pattern(ctx: CheckContext, dev, name: str, base: float, nd: int) -> dict[str, Any]:
    """The pattern write/verify over most of the free memory, repeated for the burn-in duration."""
    import torch

    p = ctx.params
    free = None
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        free = int(torch.cuda.mem_get_info(dev)[0])
        target = int(free * float(p["pattern_fraction"]))
    else:
        target = int(p["pattern_bytes"])
    chunks = _allocate(dev, target)
    duration = p.get("duration")
    started = time.monotonic()
    passes = 0
    total: dict[str, Any] | None = None
    note = f"{name}: pattern write/verify over {human_bytes(4 * sum(c.numel() for c in chunks))}"
    while True:
        res = pattern_test(dev, chunks, lambda f: ctx.progress(base + (0.2 + 0.8 * f) / nd, note))
        passes += 1
        if total is None:
            total = res
        else:
            total["mismatched_words"] += res["mismatched_words"]
            total["first_mismatch"] = total["first_mismatch"] or res["first_mismatch"]
        if not duration or time.monotonic() - started >= float(duration) / nd:
            break
    del chunks
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {**total, "passes": passes, "target_bytes": target, "free_bytes_before": free}


def judge(name: str, pattern: dict[str, Any]) -> list[str]:
    """What the pattern test of one device found wrong (pure)."""
    problems = []
    if pattern["mismatched_words"]:
        f = pattern["first_mismatch"]
        problems.append(f"{name}: {pattern['mismatched_words']} word(s) read back wrong in the pattern test "
                        f"(first: pattern {f['pattern']}, chunk {f['chunk']}, byte {f['byte_offset']})")
    if pattern["bytes"] < 0.5 * pattern["target_bytes"]:
        problems.append(f"{name}: could allocate only {human_bytes(pattern['bytes'])} of the "
                        f"{human_bytes(pattern['target_bytes'])} free for the pattern test")
    return problems


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The check's metrics: the worst device's figures (pure)."""
    metrics: dict[str, Any] = {}
    for key in ("d2d_GBps", "h2d_GBps", "d2h_GBps"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            metrics[key] = min(vals)
    metrics["pattern_bytes"] = min(r["pattern"]["bytes"] for r in rows)
    metrics["pattern_mismatched_words"] = sum(r["pattern"]["mismatched_words"] for r in rows)
    metrics["pattern_passes"] = min(r["pattern"]["passes"] for r in rows)
    return metrics


def run(ctx: CheckContext) -> CheckResult:
    import torch

    faults.at_start("memory")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    nd = len(ctx.devices)
    for k, name in enumerate(ctx.devices):
        dev = torch.device(name)
        row = _bandwidths(ctx, dev, name, k / nd, nd)
        row["pattern"] = _pattern(ctx, dev, name, k / nd, nd)
        rows.append(row)
        problems += judge(name, row["pattern"])
    metrics = summary(rows)
    details = {"devices": rows}
    if problems:
        return CheckResult("memory", FAIL, metrics, "; ".join(problems), details=details)
    parts = [f"copy {metrics['d2d_GBps']:.1f} GB/s"]
    if "h2d_GBps" in metrics:
        parts.append(f"h2d {metrics['h2d_GBps']:.1f} / d2h {metrics['d2h_GBps']:.1f} GB/s pinned")
    else:
        parts.append("host<->device skipped (CPU)")
    parts.append(f"{human_bytes(metrics['pattern_bytes'])} pattern-verified, 0 errors")
    return CheckResult("memory", PASS, metrics, "; ".join(parts), details=details)
