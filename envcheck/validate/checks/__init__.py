"""The checks: what each needs, and where its code lives (imported lazily: no torch here).

A check is a function ``run(ctx: CheckContext) -> CheckResult`` in its own module. The
runner imports it only inside the worker process (or in-process when asked), so listing,
planning and skipping checks never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from envcheck.validate.config import ValidateConfig


@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    target: str  # "module:function"
    needs_cuda: bool = False
    min_devices: int = 1
    needs_distributed: bool = False

    def unmet(self, config: ValidateConfig, info: dict[str, Any]) -> str | None:
        """Why this check cannot run here (a skip reason), or None."""
        if self.needs_cuda and config.device != "cuda":
            return "needs a CUDA device (running on the CPU)"
        if config.device == "cuda" and config.ndevices < self.min_devices:
            return f"needs at least {self.min_devices} devices, {config.ndevices} selected"
        if self.needs_distributed:
            dist = info.get("distributed") or {}
            backend = "nccl" if config.device == "cuda" else "gloo"
            if not dist.get("available"):
                return "torch.distributed is not available in this torch build"
            if not dist.get(backend):
                return f"torch.distributed has no {backend} backend in this torch build"
        return None

    def load(self) -> Callable[[CheckContext], Any]:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


REGISTRY: dict[str, CheckSpec] = {
    spec.name: spec
    for spec in (
        CheckSpec("cnn", "CNN training converges, is reproducible and matches a CPU reference",
                  "envcheck.validate.checks.cnn:run"),
        CheckSpec("amp", "Mixed precision (fp16+GradScaler, bf16) is finite, close to fp32, faster",
                  "envcheck.validate.checks.amp:run"),
        CheckSpec("compile", "torch.compile (inductor) builds, matches eager and trains",
                  "envcheck.validate.checks.compile:run"),
        CheckSpec("allreduce", "All-reduce is exact across all ranks; algbw/busbw per size",
                  "envcheck.validate.checks.allreduce:run", needs_distributed=True),
        CheckSpec("gemm", "Matmul TFLOPS per dtype; every repeat bit-identical (SDC)",
                  "envcheck.validate.checks.gemm:run"),
        CheckSpec("memory", "Copy bandwidth, host<->device bandwidth, pattern write/verify",
                  "envcheck.validate.checks.memory:run"),
        CheckSpec("transformer", "Decoder-only transformer trains: SDPA, bf16 autocast, fused AdamW; MFU",
                  "envcheck.validate.checks.transformer:run"),
        CheckSpec("collectives", "All-gather, reduce-scatter, all-to-all, broadcast exact; busbw per size",
                  "envcheck.validate.checks.collectives:run", needs_distributed=True),
        CheckSpec("p2p", "GPU pair copy bandwidth (read, write), data verified; P2P access per pair",
                  "envcheck.validate.checks.p2p:run", needs_cuda=True, min_devices=2),
        CheckSpec("ddp", "DDP (and FSDP2) training keeps every rank's parameters identical",
                  "envcheck.validate.checks.ddp:run", needs_distributed=True),
    )
}


@dataclass
class CheckContext:
    """What a running check gets: the options, the preflight facts and a progress callback."""

    name: str
    config: ValidateConfig
    info: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[float, str], None] = lambda fraction, note="": None

    @property
    def params(self) -> dict[str, Any]:
        return self.config.check_params(self.name)

    @property
    def devices(self) -> list[str]:
        if self.config.device == "cuda":
            return [f"cuda:{i}" for i in range(self.config.ndevices)]
        return ["cpu"]

    @property
    def device(self) -> str:
        """The device of single-device checks (cnn, amp, compile): the first one."""
        return self.devices[0]
