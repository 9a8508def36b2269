"""Timing helpers: warm-up first, synchronise the device around the timed region.

CUDA launches are asynchronous, so a wall clock read without ``torch.cuda.synchronize``
measures the launch, not the work (PyTorch "CUDA semantics: asynchronous execution").
"""

from __future__ import annotations

import time
from typing import Callable


def sync(device) -> None:
    """Wait until all queued work on ``device`` is done (no-op on CPU)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_loop(fn: Callable[[], object], iters: int, warmup: int, device) -> float:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``iters`` timed ones."""
    for _ in range(max(0, warmup)):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / max(1, iters)


class Stopwatch:
    """Accumulates synchronised wall time over several timed blocks."""

    def __init__(self, device) -> None:
        self.device = device
        self.seconds = 0.0
        self._t0: float | None = None

    def __enter__(self) -> Stopwatch:
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds += time.perf_counter() - (self._t0 or time.perf_counter())
        self._t0 = None
