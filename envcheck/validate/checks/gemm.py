"""gemm: matmul TFLOPS per device and dtype, with a gpu-burn-style bit-exact repeat check.

Per device and dtype (fp32 with TF32 off, tf32, bf16, fp16): A and B random n x n (n = 8192
on GPUs like DCGM's diagnostic on H100 and gpu-burn, halved until A, B, the reference and one
output fit in half of free memory; smaller fixed sizes on CPUs), ``warmup`` untimed products,
then ``iters`` timed products into a ring of output buffers (synchronised around each
block). Every repeated product is compared bit for bit with the first one: the same inputs
on the same device must give the same bits (wilicc/gpu-burn compare.cu checks every result
against the first; Imbue's gpu_stress_test compares bit-exactly), so any difference is
silent data corruption. TFLOPS = 2 n^3 x products / timed seconds / 1e12.
"""

from __future__ import annotations

import time
from typing import Any

from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, SKIP, CheckResult

DTYPES = ("fp32", "tf32", "bf16", "fp16")


def skip_reason(dtype: str, device_type: str, capability: tuple[int, int] | None) -> str | None:
    """Why ``dtype`` is not measured on this device, or None (pure)."""
    if dtype == "tf32":
        if device_type != "cuda":
            return "TF32 is a CUDA tensor-core math mode (compute capability >= 8.0)"
        if capability is not None and capability < (8, 0):
            return f"TF32 needs compute capability >= 8.0 (this GPU: {capability[0]}.{capability[1]})"
    if dtype == "bf16" and device_type == "cuda" and capability is not None and capability < (8, 0):
        return f"bf16 tensor cores need compute capability >= 8.0 (this GPU: {capability[0]}.{capability[1]})"
    return None


def fit_size(n: int, elt_bytes: int, budget: int, minimum: int = 256) -> int:
    """Largest n' = n / 2^k with A, B, the reference and one output (4 n'^2) in ``budget``."""
    while n > minimum and 4 * n * n * elt_bytes > budget:
        n //= 2
    return n


def _bits(t):
    import torch

    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def measure(device: str, dtype: str, n: int, warmup: int, iters: int, seed: int,
            duration: float | None = None, ring: int | None = None, progress=None) -> dict[str, Any]:
    """Time ``iters`` products (or products for ``duration`` s) and compare each with the first."""
    import torch

    from envcheck.validate.timing import Stopwatch

    dev = torch.device(device)
    tdtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    elt = torch.tensor([], dtype=tdtype).element_size()
    if dev.type == "cuda":
        free = int(torch.cuda.mem_get_info(dev)[0])
        budget = free // 2
        n = fit_size(n, elt, budget)
        ring = ring or max(1, min(iters, (budget - 3 * n * n * elt) // (n * n * elt)))
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    else:
        ring = ring or min(iters, 8)
    gen = torch.Generator(device=dev).manual_seed(seed)
    a = torch.randn(n, n, generator=gen, device=dev, dtype=torch.float32).to(tdtype)
    b = torch.randn(n, n, generator=gen, device=dev, dtype=torch.float32).to(tdtype)
    ref = torch.empty(n, n, device=dev, dtype=tdtype)
    # zeros, not empty: the first write to fresh host pages page-faults, which would be
    # billed to the timed products (measured ~10 % of a 1024^3 fp32 product on the CI host).
    outs = [torch.zeros(n, n, device=dev, dtype=tdtype) for _ in range(ring)]
    torch.matmul(a, b, out=ref)
    for _ in range(max(0, warmup - 1)):
        torch.matmul(a, b, out=outs[0])
    sdc = faults.active("gemm", "sdc")
    watch = Stopwatch(dev)
    products = bad_products = bad_elements = 0
    first_bad: int | None = None
    started = time.monotonic()
    ref_bits = _bits(ref)
    while True:
        if duration is None:
            k = min(ring, iters - products)
            if k <= 0:
                break
        else:
            if products and time.monotonic() - started >= duration:
                break
            k = ring
        with watch:
            for j in range(k):
                torch.matmul(a, b, out=outs[j])
        if sdc is not None and products == 0 and dtype == sdc.get("dtype", dtype):
            _bits(outs[min(k - 1, 1)]).view(-1)[7] += 1  # injected: one flipped low bit
        for j in range(k):
            if not torch.equal(_bits(outs[j]), ref_bits):
                bad_products += 1
                bad_elements += int((_bits(outs[j]) != ref_bits).sum())
                if first_bad is None:
                    first_bad = products + j + 1
        products += k
        if progress is not None:
            progress(products)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    seconds = watch.seconds
    tflops = 2.0 * n ** 3 * products / seconds / 1e12 if seconds > 0 else None
    del a, b, ref, outs
    return {"n": n, "products": products, "seconds": round(seconds, 6),
            "tflops": None if tflops is None else round(tflops, 4), "ring": ring,
            "mismatched_products": bad_products, "mismatched_elements": bad_elements,
            "first_mismatch": first_bad}


def run(ctx: CheckContext) -> CheckResult:
    import torch

    faults.at_start("gemm")
    p = ctx.params
    dtypes = [d for d in p.get("dtypes", DTYPES) if d in DTYPES]
    devices = ctx.devices
    plan = [(dev, dt) for dev in devices for dt in dtypes]
    duration = p.get("duration")
    # burn-in: the duration is shared by the (device, dtype) pairs that run, not those skipped
    # (fp16/tf32 on the CPU), so a skipped dtype does not shorten the stress
    runnable = [(dev, dt) for dev, dt in plan if not skip_reason(
        dt, "cuda" if dev.startswith("cuda") else "cpu",
        torch.cuda.get_device_capability(dev) if dev.startswith("cuda") else None)]
    per_duration = float(duration) / max(1, len(runnable)) if duration else None
    rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    problems: list[str] = []
    done = 0
    for dev in devices:
        dtype_rows: dict[str, Any] = {}
        is_cuda = dev.startswith("cuda")
        cap = torch.cuda.get_device_capability(dev) if is_cuda else None
        name = torch.cuda.get_device_name(dev) if is_cuda else "cpu"
        for dt in dtypes:
            why = skip_reason(dt, "cuda" if is_cuda else "cpu", cap)
            if why:
                dtype_rows[dt] = {"status": SKIP, "reason": why}
                done += 1
                continue
            n = int(p["n"][dt]) if isinstance(p["n"], dict) else int(p["n"])
            iters = int(p["iters"])
            base = done / len(plan)

            def tick(k, base=base, dt=dt, dev=dev, iters=iters):
                frac = min(1.0, k / iters) if per_duration is None else 0.5
                ctx.progress(base + frac / len(plan), f"{dev} {dt}: {k} products")

            m = measure(dev, dt, n, int(p["warmup"]), iters, ctx.config.seed,
                        duration=per_duration, progress=tick)
            m["status"] = FAIL if m["mismatched_products"] else PASS
            dtype_rows[dt] = m
            done += 1
            if m["mismatched_products"]:
                problems.append(f"{dev} {dt}: {m['mismatched_products']} of {m['products']} repeated products "
                                f"differ from the first (first: product {m['first_mismatch']}, "
                                f"{m['mismatched_elements']} element(s)): silent data corruption")
        rows.append({"device": dev, "name": name, "dtypes": dtype_rows})
    for dt in dtypes:
        vals = [r["dtypes"][dt]["tflops"] for r in rows if r["dtypes"].get(dt, {}).get("tflops") is not None]
        if vals:
            metrics[f"{dt}_tflops"] = min(vals)  # the slowest device bounds a data-parallel job
            metrics[f"{dt}_n"] = rows[0]["dtypes"][dt]["n"]
    metrics["products_compared"] = sum(r["dtypes"][dt].get("products", 0) for r in rows for dt in r["dtypes"])
    metrics["mismatched_products"] = sum(r["dtypes"][dt].get("mismatched_products", 0)
                                         for r in rows for dt in r["dtypes"])
    details = {"devices": rows}
    if problems:
        return CheckResult("gemm", FAIL, metrics, "; ".join(problems), details=details)
    shown = ", ".join(f"{dt} {metrics[f'{dt}_tflops']:.3g}" for dt in dtypes if f"{dt}_tflops" in metrics)
    skipped = sorted({f"{dt} skipped: {r['dtypes'][dt]['reason']}" for r in rows for dt in dtypes
                      if r["dtypes"][dt].get("status") == SKIP})
    msg = (f"TFLOPS {shown} ({'slowest of ' + str(len(devices)) + ' devices' if len(devices) > 1 else devices[0]}); "
           f"{metrics['products_compared']} repeated products bit-identical")
    return CheckResult("gemm", PASS, metrics, "; ".join([msg] + skipped), details=details)
