"""Pure pieces of validate: options, sizes, error classification, fault parsing, root causes.

Nothing here imports torch (the check modules import it only inside their functions).
"""

from __future__ import annotations

import pytest

from envcheck.validate import app, errors, faults
from envcheck.validate.checks import REGISTRY, CheckSpec
from envcheck.validate.checks.allreduce import busbw_factor, pattern_modulus
from envcheck.validate.checks.amp import modes
from envcheck.validate.checks.compile import diagnose
from envcheck.validate.checks.gemm import fit_size, skip_reason
from envcheck.validate.config import GiB, KiB, MiB, ValidateConfig, human_bytes, sizes

# ------------------------------------------------------------------------------ options


def test_parse_checks_keeps_canonical_order_and_rejects_unknown():
    assert app.parse_checks(None) == ["cnn", "amp", "compile", "allreduce", "gemm", "memory",
                                      "transformer", "collectives", "p2p", "ddp"]
    assert app.parse_checks("all") == app.parse_checks(None)
    assert app.parse_checks("memory, gemm ,cnn") == ["cnn", "gemm", "memory"]
    with pytest.raises(app.UsageProblem, match="unknown check.*bogus.*choose from cnn"):
        app.parse_checks("gemm,bogus")
    with pytest.raises(app.UsageProblem, match="empty"):
        app.parse_checks(",")


@pytest.mark.parametrize("kw, match", [
    ({"duration": 60.0}, "--duration only applies to --profile burn-in"),
    ({"device": "cpu", "gpus": 1}, "--gpus selects CUDA devices"),
    ({"device": "cuda", "procs": 2}, "--procs sets CPU all-reduce ranks"),
])
def test_static_option_errors(kw, match):
    args = dict(device=None, gpus=None, procs=None, profile="standard", duration=None)
    args.update(kw)
    with pytest.raises(app.UsageProblem, match=match):
        app.check_static(**args)


CPU_INFO = {"torch": "2.13.0+cpu", "cuda": None, "device_count": 0, "devices": []}
GPU_INFO = {"torch": "2.7.1+cu126", "cuda": "12.6", "device_count": 2,
            "devices": [{"index": i, "name": "NVIDIA H100 80GB HBM3"} for i in range(2)]}


def resolve(info, **kw):
    args = dict(device=None, gpus=None, procs=None, profile="standard", duration=None, timeout=120.0,
                allreduce_max_mib=None)
    args.update(kw)
    return app.resolve(info, **args)


def test_gpus_on_a_machine_without_gpu_says_how_many_devices_exist():
    with pytest.raises(app.UsageProblem) as exc:
        resolve(CPU_INFO, gpus=1)
    msg = str(exc.value)
    assert msg.startswith("--gpus 1: 0 CUDA devices visible to torch (torch 2.13.0+cpu is a CPU-only build)")
    assert "\n" not in msg


def test_gpus_beyond_the_visible_count():
    with pytest.raises(app.UsageProblem, match=r"--gpus 4: 2 CUDA device\(s\) visible \(NVIDIA H100 80GB HBM3\); use --gpus 1..2"):
        resolve(GPU_INFO, gpus=4)
    with pytest.raises(app.UsageProblem, match="--device cuda: 0 CUDA devices"):
        resolve(CPU_INFO, device="cuda")


def test_resolve_defaults():
    cfg = resolve(CPU_INFO)
    assert (cfg.device, cfg.procs, cfg.world_size, cfg.duration) == ("cpu", 2, 2, None)
    cfg = resolve(CPU_INFO, procs=3, allreduce_max_mib=8)
    assert (cfg.world_size, cfg.allreduce_max_bytes) == (3, 8 * MiB)
    cfg = resolve(GPU_INFO)
    assert (cfg.device, cfg.ndevices, cfg.world_size) == ("cuda", 2, 2)
    assert resolve(GPU_INFO, gpus=1).world_size == 1
    assert resolve(GPU_INFO, device="cpu").device == "cpu"
    assert resolve(CPU_INFO, profile="burn-in").duration == 600.0


def test_quick_plan_is_the_health_check_set_in_a_budget():
    plan = app.plan(None, None, quick=True)
    assert (plan.checks, plan.profile, plan.budget) == (["cnn", "allreduce", "gemm", "memory"], "quick", 50.0)
    assert plan.budget < 60  # Slurm kills a HealthCheckProgram after 60 s
    narrowed = app.plan("gemm,memory", "quick", quick=True, budget=20)
    assert (narrowed.checks, narrowed.profile, narrowed.budget) == (["gemm", "memory"], "quick", 20.0)
    default = app.plan(None, None)
    assert (len(default.checks), default.profile, default.budget) == (10, "standard", None)  # issue 16: +4
    assert app.plan("cnn", "burn-in", budget=30).budget == 30.0
    with pytest.raises(app.UsageProblem, match="--quick runs --profile quick; drop --profile burn-in"):
        app.plan(None, "burn-in", quick=True)


def test_profiles_and_burn_in_split():
    quick, std = ValidateConfig(profile="quick"), ValidateConfig()
    assert quick.check_params("gemm")["iters"] < std.check_params("gemm")["iters"]
    assert std.check_params("gemm")["n"]["fp16"] == 256  # CPU fp16 matmul is ~50x slower than fp32
    assert ValidateConfig(device="cuda").check_params("gemm")["n"]["bf16"] == 8192
    burn = ValidateConfig(profile="burn-in", duration=90)
    assert burn.check_params("gemm")["duration"] == pytest.approx(60)
    assert burn.check_params("memory")["duration"] == pytest.approx(30)
    over = ValidateConfig(params={"gemm": {"iters": 1}})
    assert over.check_params("gemm")["iters"] == 1
    assert ValidateConfig.from_dict(burn.to_dict()) == burn


def test_size_ladder_and_bytes():
    assert sizes(KiB, 64 * MiB, 4) == [KiB * 4**k for k in range(9)]
    assert sizes(KiB, GiB, 4)[-1] == GiB and len(sizes(KiB, GiB, 4)) == 11
    assert sizes(KiB, 512, 4) == []
    assert [human_bytes(b) for b in (512, KiB, 3 * MiB // 2, GiB)] == ["512 B", "1 KiB", "1.5 MiB", "1 GiB"]


def test_check_needs():
    info = {"distributed": {"available": True, "gloo": True, "nccl": False}}
    ar = REGISTRY["allreduce"]
    assert ar.unmet(ValidateConfig(), info) is None
    assert "no nccl backend" in ar.unmet(ValidateConfig(device="cuda", ndevices=2), info)
    assert "not available" in ar.unmet(ValidateConfig(), {"distributed": {"available": False}})
    spec = CheckSpec("x", "x", "m:f", needs_cuda=True, min_devices=2)
    assert spec.unmet(ValidateConfig(), {}) == "needs a CUDA device (running on the CPU)"
    assert spec.unmet(ValidateConfig(device="cuda", ndevices=1), {}) == "needs at least 2 devices, 1 selected"


# ------------------------------------------------------------------------------ arithmetic


def test_busbw_factor_is_nccl_tests_formula():
    assert [busbw_factor(n) for n in (1, 2, 4, 8)] == [0.0, 1.0, 1.5, 1.75]


@pytest.mark.parametrize("n", [1, 2, 8, 64, 512, 5793, 6000, 100_000, 1_000_000])
def test_pattern_sums_are_exact_in_float32(n):
    m = pattern_modulus(n)
    assert 1 <= m <= 251
    assert n * m < 1 << 24  # every rank's value is at most K: no sum leaves float32's integers


def test_gemm_size_fits_memory_and_dtype_support():
    assert fit_size(8192, 2, 80 << 30) == 8192
    assert fit_size(8192, 4, 1 << 30) == 8192  # 4 * 8192^2 * 4 B = exactly 1 GiB
    assert fit_size(8192, 4, (1 << 30) - 1) == 4096
    assert fit_size(8192, 4, 1) == 256  # never below the minimum
    assert "CUDA tensor-core" in skip_reason("tf32", "cpu", None)
    assert skip_reason("tf32", "cuda", (8, 0)) is None
    assert "8.0" in skip_reason("bf16", "cuda", (7, 0))
    assert skip_reason("fp16", "cpu", None) is None


def test_amp_modes_per_device():
    assert modes("cpu", None) == {"fp16": modes("cpu", None)["fp16"], "bf16": None}
    assert "CUDA path" in modes("cpu", None)["fp16"]
    assert modes("cuda:0", (9, 0)) == {"fp16": None, "bf16": None}
    assert "7.5" in modes("cuda:0", (7, 5))["bf16"]


# ------------------------------------------------------------------------------ errors, faults


def test_oom_is_recognised_by_class_or_text():
    class OutOfMemoryError(RuntimeError):
        pass

    msg, err = errors.describe(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert err["kind"] == "oom" and msg.startswith("out of memory: CUDA out of memory.")
    msg, err = errors.describe(RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    assert err["kind"] == "oom"
    _, err = errors.describe(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert err["kind"] == "cuda_error"
    msg, err = errors.describe(ValueError("bad"))
    assert (msg, err["kind"], err["type"]) == ("ValueError: bad", "exception", "ValueError")
    assert "Traceback" in err["traceback"] or err["traceback"].startswith("ValueError")


def test_worker_exit_descriptions():
    msg, err = errors.describe_exit(-11, "some output\nFatal Python error: Segmentation fault\n")
    assert msg == "the check's process crashed (SIGSEGV): Fatal Python error: Segmentation fault"
    assert err["kind"] == "crash" and err["returncode"] == -11
    msg, err = errors.describe_exit(1, "torch.OutOfMemoryError: CUDA out of memory\n")
    assert err["kind"] == "oom" and "exited with code 1" in msg


def test_fault_spec_parsing(monkeypatch):
    monkeypatch.setenv(faults.ENV, "gemm.sdc:dtype=bf16, allreduce.hang:rank=1:op=2")
    assert faults.active("gemm", "sdc") == {"dtype": "bf16"}
    assert faults.active("allreduce", "hang") == {"rank": 1, "op": 2}
    assert faults.active("allreduce", "exit") is None
    monkeypatch.delenv(faults.ENV)
    assert faults.active("gemm", "sdc") is None
    faults.at_start("cnn")  # nothing injected: returns


def test_fault_raise_at_start(monkeypatch):
    monkeypatch.setenv(faults.ENV, "cnn.raise")
    with pytest.raises(RuntimeError, match="injected fault: cnn raised"):
        faults.at_start("cnn")
    faults.at_start("gemm")  # only the named check


# ------------------------------------------------------------------------------ compile root causes

CPU_OK = {"device_type": "cpu", "cxx": "/usr/bin/g++", "cc": "/usr/bin/gcc", "python_headers": "/x/Python.h",
          "python_include": "/x", "triton": None}
CUDA_OK = dict(CPU_OK, device_type="cuda", triton={"available": True, "version": "3.3.1", "required": "==3.3.1"})


def test_compile_root_cause_no_compiler():
    facts = dict(CPU_OK, cxx=None, cc=None)
    text = "torch._inductor.exc.InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx"
    assert diagnose(text, facts).startswith("no C/C++ compiler found")
    assert diagnose("RuntimeError: Failed to find C compiler. Please specify via CC environment variable.",
                    dict(CUDA_OK, cc=None)).startswith("no C/C++ compiler found")


def test_compile_root_cause_missing_python_headers():
    text = "CalledProcessError: ... fatal error: Python.h: No such file or directory"
    msg = diagnose(text, dict(CUDA_OK, python_headers=None, python_include="/usr/include/python3.11"))
    assert msg.startswith("missing Python headers: Python.h is not in /usr/include/python3.11")
    assert "python3-dev" in msg


def test_compile_root_cause_triton():
    msg = diagnose("ModuleNotFoundError: No module named 'triton'",
                   dict(CUDA_OK, triton={"available": False, "version": None, "required": "==3.3.1"}), "2.7.1")
    assert msg.startswith("triton is missing: torch 2.7.1") and "triton==3.3.1" in msg
    msg = diagnose("ImportError: cannot import name 'AttrsDescriptor' from 'triton.compiler.compiler'",
                   dict(CUDA_OK, triton={"available": True, "version": "2.1.0", "required": "==3.3.1"}), "2.7.1")
    assert msg.startswith("triton 2.1.0 does not match what torch 2.7.1 requires (==3.3.1")
    msg = diagnose("RuntimeError: Found Tesla P100 which is too old to be supported by the triton GPU compiler",
                   CUDA_OK)
    assert msg.startswith("this GPU is too old for triton")


def test_compile_root_cause_other_errors_keep_the_exception_line():
    msg = diagnose("Traceback...\n  File x\ntorch._dynamo.exc.Unsupported: call_function foo\n", CPU_OK)
    assert msg == "torch.compile failed: torch._dynamo.exc.Unsupported: call_function foo"


def test_nccl_version_text_old_and_new_encodings():
    from envcheck.validate.checks.allreduce import nccl_version_text

    assert [nccl_version_text(v) for v in ((2, 26, 2), 2708, 21903)] == ["2.26.2", "2.7.8", "2.19.3"]


def test_collateral_rank_errors_are_told_apart_from_the_cause():
    from envcheck.validate.checks.allreduce import _describe_failure, collateral

    gloo = ("RuntimeError: [../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:40117: Connection reset by "
            "peer. This is typically caused by a remote worker hanging")
    assert collateral(gloo) and not collateral("RuntimeError: CUDA error: an illegal memory access")
    run = {"hung": None, "failed": [0, 1], "exit_codes": {0: 1, 1: 3}, "errors": {0: gloo},
           "marks": {0: "entering all_reduce #1", 1: "finished all_reduce #0"}}
    msg = _describe_failure(run, 2, 120)
    assert msg.startswith("all-reduce failed: rank 1 exited with code 3 after 'finished all_reduce #0'; "
                          "then rank 0 exited with code 1 after 'entering all_reduce #1' (RuntimeError")


def test_backend_message_drops_source_locations_and_decorations():
    raw = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
           "Timed out waiting 15000ms for recv operation to complete \u2014 \x1b")
    assert errors.backend_message(raw) == "Timed out waiting 15000ms for recv operation to complete"


def test_fault_injection_needs_the_test_switch(monkeypatch):
    """A stray ENVCHECK_FAULT in a user's environment does nothing (issue 10, class 10)."""
    from envcheck.validate import faults

    monkeypatch.setenv("ENVCHECK_FAULT", "cnn.raise,allreduce.hang:rank=1")
    assert faults.active("allreduce", "hang") == {"rank": 1}
    monkeypatch.delenv("ENVCHECK_TEST_FAULTS")
    assert faults.active("allreduce", "hang") is None
    faults.at_start("cnn")  # does not raise
    monkeypatch.setenv("ENVCHECK_TEST_FAULTS", "yes")
    assert faults.active("cnn", "raise") is None
