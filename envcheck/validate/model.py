"""The workload: the classic CIFAR-10-shaped CNN and a learnable synthetic task for it.

The network is the one of PyTorch's "Training a classifier" tutorial (conv-pool-conv-pool-
fc-fc-fc, 3x32x32 input, 10 classes); ``width`` scales its channels and hidden sizes for
the AMP speed measurement. The task is generated on the device, nothing is downloaded:
smooth random images (8x8 noise upsampled to 32x32) labelled by a fixed, randomly
initialised teacher of the same architecture, its logits standardised per class so the ten
labels are roughly balanced (a raw random network puts most inputs into a few classes).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from envcheck.validate import faults


class CifarCNN(nn.Module):
    def __init__(self, width: int = 1) -> None:
        super().__init__()
        c1, c2, h1, h2 = 6 * width, 16 * width, 120 * width, 84 * width
        self.conv1 = nn.Conv2d(3, c1, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * 5 * 5, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build(seed: int, device, width: int = 1) -> CifarCNN:
    """A model initialised from ``seed`` on the CPU RNG, so every device starts identical."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CifarCNN(width)
    return model.to(device)


def make_task(device, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of the synthetic task, generated on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(samples, 3, 8, 8, generator=gen, device=device)
    x = F.interpolate(noise, size=(32, 32), mode="bilinear", align_corners=False)
    teacher = build(seed + 1, device).eval()
    with torch.no_grad():
        logits = teacher(x)
        z = (logits - logits.mean(0)) / logits.std(0).clamp_min(1e-6)
        y = z.argmax(1)
    return x.contiguous(), y


def batch_order(device, samples: int, batch: int, steps: int, seed: int) -> torch.Tensor:
    """Index of every sample of every step (one reshuffle per epoch), made on the device."""
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    epochs = -(-steps * batch // samples)
    order = torch.cat([torch.randperm(samples, generator=gen, device=device) for _ in range(epochs)])
    return order[: steps * batch].view(steps, batch)


@contextmanager
def exact_fp32():
    """Disable TF32 for matmul and cuDNN conv (cuDNN allows it by default) while inside."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def optimizer_step(loss: torch.Tensor, opt, scaler=None) -> None:
    """Backward and step, through the GradScaler when fp16 needs one."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    lr: float,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: Any = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    step_seconds: list[float] | None = None,
) -> list[float]:
    """Train with Adam over the precomputed ``order``; returns every step's loss.

    ``amp_dtype`` runs the forward under autocast; ``scaler`` is a GradScaler (fp16);
    ``forward`` replaces ``model`` (a torch.compile'd module sharing its parameters);
    ``step_seconds`` collects synchronised per-step wall times.
    """
    import time

    from envcheck.validate.timing import sync

    device = x.device
    fwd = forward or model
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    nan_fault = faults.active("cnn", "nan")
    nan_step = int(nan_fault.get("step", 5)) if nan_fault is not None else -1
    losses_t: list[torch.Tensor] = []
    for step in range(order.shape[0]):
        t0 = time.perf_counter()
        idx = order[step]
        xb, yb = x[idx], y[idx]
        if step == nan_step:
            xb = xb * float("nan")
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        with ctx:
            loss = F.cross_entropy(fwd(xb), yb)
        optimizer_step(loss, opt, scaler)
        losses_t.append(loss.detach().float())
        if step_seconds is not None:
            sync(device)
            step_seconds.append(time.perf_counter() - t0)
        if progress is not None:
            progress(step)
    # One transfer at the end: a .item() per step would synchronise every step.
    return torch.stack(losses_t).cpu().tolist()


def reference_error(model: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> dict[str, Any]:
    """Compare the device's fp32 forward with a float64 forward on the CPU.

    Returns the largest absolute error, the largest error relative to the tolerance
    (``|out-ref| / (atol + rtol*|ref|)``; <= 1 passes) and whether it passed.
    """
    ref_model = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    with torch.no_grad():
        ref = ref_model(x.detach().cpu().double())
        with exact_fp32():
            out = model.eval()(x).double().cpu()
    model.train()
    diff = (out - ref).abs()
    bound = atol + rtol * ref.abs()
    worst = float((diff / bound).max())
    return {
        "max_abs_err": float(diff.max()),
        "worst_vs_tolerance": worst,
        "ok": bool(torch.isfinite(out).all()) and worst <= 1.0,
    }
