"""compile: torch.compile (inductor) builds the CNN, matches eager, and trains.

Metrics: compile seconds (the first forward+backward, where dynamo traces and inductor
generates and builds the kernels), steady-state speedup (eager step time / compiled step
time). On failure the message names the root cause: no C/C++ compiler, missing Python
headers, triton missing or too old, or a GPU too old for triton; found by reading the
exception and the environment (:func:`environment`), decided by the pure :func:`diagnose`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import sys
import sysconfig
import threading
import time
import traceback
from typing import Any

from envcheck import recipes
from envcheck.validate import faults
from envcheck.validate.checks import CheckContext
from envcheck.validate.results import FAIL, PASS, CheckResult


def _which(*names: str | None) -> str | None:
    for name in names:
        if name:
            found = shutil.which(name.split()[0])
            if found:
                return found
    return None


def environment(device_type: str) -> dict[str, Any]:
    """What inductor needs from this machine: compilers, Python.h, triton (CUDA only)."""
    include = sysconfig.get_paths().get("include") or sysconfig.get_config_var("INCLUDEPY") or ""
    header = os.path.join(include, "Python.h")
    facts: dict[str, Any] = {
        # inductor's CPU backend builds C++ (torch._inductor.config.cpp.cxx: $CXX or g++);
        # triton builds its launcher stub with a C compiler ($CC, else gcc/cc/clang).
        "cxx": _which(os.environ.get("CXX"), "g++", "c++", "clang++"),
        "cc": _which(os.environ.get("CC"), "gcc", "cc", "clang"),
        "python_include": include,
        "python_headers": header if os.path.isfile(header) else None,
        "device_type": device_type,
        "triton": None,
    }
    if device_type == "cuda":
        facts["triton"] = _triton_facts()
    return facts


def _triton_facts() -> dict[str, Any]:
    from importlib import metadata

    from packaging.requirements import Requirement

    info: dict[str, Any] = {"available": importlib.util.find_spec("triton") is not None,
                            "version": None, "required": None}
    for dist in ("triton", "pytorch-triton"):
        try:
            info["version"] = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    try:
        for line in metadata.requires("torch") or []:
            req = Requirement(line)
            if req.name in ("triton", "pytorch-triton") and (req.marker is None or req.marker.evaluate()):
                info["required"] = str(req.specifier) or None
    except Exception:  # noqa: BLE001 - a torch without METADATA still compiles or not
        pass
    return info


def diagnose(error_text: str, facts: dict[str, Any], torch_version: str = "") -> str:
    """The root cause of a torch.compile failure, in one sentence with its fix (pure)."""
    text = error_text or ""
    low = text.lower()
    triton = facts.get("triton") or {}
    if "python.h" in low or (facts.get("python_headers") is None and "calledprocesserror" in low):
        return (f"missing Python headers: Python.h is not in {facts.get('python_include') or 'the include dir'} "
                "(inductor/triton build C extensions); install python3-dev (Debian/Ubuntu: "
                f"apt install python3.{sys.version_info[1]}-dev; RHEL: dnf install python3-devel)")
    no_cc = ("failed to find c compiler" in low or "invalidcxxcompiler" in low
             or "no working c++ compiler" in low or "no such file or directory: 'g++'" in low
             or "no such file or directory: 'gcc'" in low or "g++: not found" in low
             or "gcc: not found" in low)
    if no_cc or (facts.get("device_type") == "cpu" and not facts.get("cxx")) or (
            facts.get("device_type") == "cuda" and not facts.get("cc")):
        return ("no C/C++ compiler found (inductor builds its CPU kernels with $CXX or g++; triton "
                "builds its launcher with $CC or gcc): install one (apt install build-essential) "
                "or set CC/CXX")
    if "too old to be supported by the triton" in low:
        return ("this GPU is too old for triton (inductor's GPU code generator needs compute "
                "capability >= 7.0): torch.compile on it needs backend='aot_eager' or an older torch")
    if facts.get("device_type") == "cuda" and (not triton.get("available") or "no module named 'triton'" in low
                                               or "cannot find a working triton" in low):
        need = f" ({triton['required']})" if triton.get("required") else ""
        return (f"triton is missing: torch {torch_version} compiles GPU kernels with triton{need}; "
                f"install the version its wheel pins: pip install 'triton{triton.get('required') or ''}'")
    if facts.get("device_type") == "cuda" and triton.get("version") and triton.get("required"):
        from packaging.specifiers import SpecifierSet

        if triton["version"] not in SpecifierSet(triton["required"]):
            return (f"triton {triton['version']} does not match what torch {torch_version} requires "
                    f"({triton['required']}; too old or too new): pip install 'triton{triton['required']}'")
    if "triton" in low and ("importerror" in low or "cannot import name" in low or "attributeerror" in low):
        return (f"triton {triton.get('version') or ''} looks too old for torch {torch_version}: "
                f"{_first_line(text)}; install the version torch pins"
                + (f" ({triton['required']})" if triton.get("required") else ""))
    return f"torch.compile failed: {_first_line(text)}"


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # The exception line (last) says more than the traceback's first frame.
    return (lines[-1] if lines else "unknown error")[:300]


def judge(metrics: dict[str, Any], tol: dict[str, Any]) -> list[str]:
    """What is wrong with the measured figures (pure); [] when the compiled model is right."""
    problems = []
    worst = metrics["err_vs_tolerance"]
    if not (worst <= 1.0):
        problems.append(f"compiled output differs from eager by {metrics['max_abs_err']:.3g} ({worst:.3g}x the "
                        f"tolerance rtol={tol['output_rtol']}, atol={tol['output_atol']})")
    if not metrics["train_finite"]:
        problems.append("compiled training produced a NaN/Inf loss")
    return problems


@contextlib.contextmanager
def _heartbeat(ctx: CheckContext):
    """Compiling is progress: keep the runner's stall watchdog informed every 5 s."""
    stop = threading.Event()
    t_start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(5.0):
            ctx.progress(0.1, f"compiling ({time.perf_counter() - t_start:.0f} s)")

    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def _compile(model, xb, yb, dev):
    """(eager output, compiled model, its first output, seconds to build and run it once)."""
    import torch
    import torch.nn.functional as F

    from envcheck.validate import model as M

    with M.exact_fp32():
        eager_out = model(xb).detach()
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        out = compiled(xb)
        F.cross_entropy(out, yb).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    return eager_out, compiled, out, time.perf_counter() - t0


def _measure(ctx: CheckContext, model, optim, compiled, eager_out, out, xb, yb, dev, tol) -> dict[str, Any]:
    """Compiled vs eager: output error, a few training steps, and the step times."""
    import torch.nn.functional as F

    from envcheck.validate import model as M
    from envcheck.validate.timing import time_loop

    p = ctx.params
    diff = (out.detach() - eager_out).abs()
    bound = float(tol["output_atol"]) + float(tol["output_rtol"]) * eager_out.abs()

    def step(fwd):
        loss = F.cross_entropy(fwd(xb), yb)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        return loss

    with M.exact_fp32():
        losses = [float(step(compiled).detach()) for _ in range(int(p["train_steps"]))]
        ctx.progress(0.75, "timing eager vs compiled")
        eager_s = time_loop(lambda: step(model), int(p["speed_steps"]), int(p["warmup"]), dev)
        compiled_s = time_loop(lambda: step(compiled), int(p["speed_steps"]), int(p["warmup"]), dev)
    return {"max_abs_err": float(diff.max()), "err_vs_tolerance": round(float((diff / bound).max()), 6),
            "train_steps": len(losses), "train_finite": all(math.isfinite(v) for v in losses),
            "eager_step_ms": round(eager_s * 1e3, 4), "compiled_step_ms": round(compiled_s * 1e3, 4),
            "speedup": round(eager_s / compiled_s, 3) if compiled_s > 0 else None}


def run(ctx: CheckContext) -> CheckResult:
    import torch

    from envcheck.validate import model as M

    faults.at_start("compile")
    cnn_p = ctx.config.check_params("cnn")
    tol = recipes.load("validate_floors")["tolerances"]["compile"]
    dev = torch.device(ctx.device)
    facts = environment(dev.type)
    details: dict[str, Any] = {"environment": facts, "tolerance": tol}
    x, y = M.make_task(dev, int(cnn_p["samples"]), ctx.config.seed)
    gen = torch.Generator(device=dev).manual_seed(ctx.config.seed + 7)
    idx = torch.randint(0, x.shape[0], (int(ctx.params["batch"]),), generator=gen, device=dev)
    xb, yb = x[idx], y[idx]
    model = M.build(ctx.config.seed + 3, dev)
    optim = torch.optim.Adam(model.parameters(), lr=float(cnn_p["lr"]))
    try:
        with _heartbeat(ctx):
            eager_out, compiled, out, compile_s = _compile(model, xb, yb, dev)
    except Exception as exc:  # noqa: BLE001 - every compile failure is a finding
        text = "".join(traceback.format_exception_only(type(exc), exc))
        cause = diagnose(text, facts, torch.__version__)
        return CheckResult("compile", FAIL, {"compiled": False}, cause, details=details,
                           error={"kind": "compile", "type": type(exc).__name__,
                                  "message": text.strip()[-2000:], "traceback": traceback.format_exc()[-4000:]})
    ctx.progress(0.6, f"compiled in {compile_s:.1f} s; comparing with eager")
    metrics = {"compiled": True, "compile_s": round(compile_s, 3),
               **_measure(ctx, model, optim, compiled, eager_out, out, xb, yb, dev, tol)}
    problems = judge(metrics, tol)
    if problems:
        return CheckResult("compile", FAIL, metrics, "; ".join(problems), details=details)
    msg = (f"inductor built in {compile_s:.1f} s, matches eager (max err {metrics['max_abs_err']:.2g}), "
           f"{metrics['train_steps']} train steps, x{metrics['speedup']:.2f} vs eager")
    return CheckResult("compile", PASS, metrics, msg, details=details)
