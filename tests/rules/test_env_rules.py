"""env.* rules: CUDA_VISIBLE_DEVICES, LD_LIBRARY_PATH and settings left on from debugging."""

from __future__ import annotations

import pytest

from envcheck.findings import Severity


def _cvd(machine, value, scenario="healthy_8xh100"):
    return machine(scenario, {"env.vars.CUDA_VISIBLE_DEVICES": value})


@pytest.mark.parametrize("value", ["", "-1", "none", "NoDevFiles", "GPU-deadbeef"])
def test_cvd_hiding_every_gpu_is_a_warning(machine, value):
    f = machine.one(_cvd(machine, value), "env.cuda-visible-devices-hides-gpus")
    assert f.severity is Severity.WARN
    assert f.evidence["visible"] == [] and f.evidence["gpu_count"] == 8
    assert "unset CUDA_VISIBLE_DEVICES" in f.fix


def test_cvd_subset_is_info(machine):
    f = machine.one(_cvd(machine, "0,1"), "env.cuda-visible-devices-hides-gpus")
    assert f.severity is Severity.INFO and "2 of 8" in f.title


@pytest.mark.parametrize("value", ["0,1,2,3,4,5,6,7", "7,6,5,4,3,2,1,0",
                                   "GPU-00000000,GPU-00000001,GPU-00000002,GPU-00000003,"
                                   "GPU-00000004,GPU-00000005,GPU-00000006,GPU-00000007"])
def test_cvd_showing_every_gpu_is_silent(machine, value):
    ids = machine.ids(_cvd(machine, value))
    assert not {i for i in ids if i.startswith("env.cuda-visible")}


def test_cvd_without_gpus_is_not_judged_for_hiding(machine):
    assert "env.cuda-visible-devices-hides-gpus" not in machine.ids(_cvd(machine, "", "cpu_only_vm"))


@pytest.mark.parametrize("value,invalid,visible", [
    ("0,,1", "", [0]),
    ("0,9", "9", [0]),
    ("0,gpu1", "gpu1", [0]),
    ("GPU-nothere,0", "GPU-nothere", []),
    ("0,2,-1,1", "-1", [0, 2]),
])
def test_cvd_malformed(machine, value, invalid, visible):
    f = machine.one(_cvd(machine, value), "env.cuda-visible-devices-malformed")
    assert f.severity is Severity.WARN
    assert f.evidence["invalid_entry"] == invalid and f.evidence["visible"] == visible
    assert "nvidia-smi -L" in f.fix


@pytest.mark.parametrize("value", ["0,1,-1", "-1", "", "3"])
def test_cvd_well_formed(machine, value):
    assert "env.cuda-visible-devices-malformed" not in machine.ids(_cvd(machine, value))


def test_cvd_index_not_judged_when_gpu_count_unknown(machine):
    s = machine("healthy_8xh100", {"env.vars.CUDA_VISIBLE_DEVICES": "12", "nvidia.gpu_count": machine.na(),
                                   "nvidia.nvml.status": machine.na()})
    assert "env.cuda-visible-devices-malformed" not in machine.ids(s)


@pytest.mark.parametrize("ld,hits", [
    ("/usr/local/cuda/lib64", ["/usr/local/cuda/lib64"]),
    ("/usr/local/cuda-11.8/lib64:/usr/local/lib", ["/usr/local/cuda-11.8/lib64"]),
    ("/usr/local/cuda-12.4/targets/x86_64-linux/lib/", ["/usr/local/cuda-12.4/targets/x86_64-linux/lib/"]),
    ("/opt/cudnn-8.9/lib:/usr/lib", ["/opt/cudnn-8.9/lib"]),
    ("/home/bob/env/lib/python3.10/site-packages/nvidia/cublas/lib", ["/home/bob/env/lib/python3.10/site-packages/nvidia/cublas/lib"]),
])
def test_ld_library_path_shadows_cuda(machine, ld, hits):
    f = machine.one(machine("healthy_8xh100", {"env.vars.LD_LIBRARY_PATH": ld}), "env.ld-library-path-shadows-cuda")
    assert f.severity is Severity.WARN and f.evidence["cuda_dirs"] == hits
    assert "pytorch/pytorch#111469" in f.detail


def test_ld_library_path_fix_keeps_the_other_entries(machine):
    s = machine("healthy_8xh100", {"env.vars.LD_LIBRARY_PATH": "/opt/x/lib:/usr/local/cuda/lib64:/usr/local/lib"})
    assert machine.one(s, "env.ld-library-path-shadows-cuda").fix.startswith(
        "`export LD_LIBRARY_PATH=/opt/x/lib:/usr/local/lib`")
    only = machine("healthy_8xh100", {"env.vars.LD_LIBRARY_PATH": "/usr/local/cuda/lib64"})
    assert machine.one(only, "env.ld-library-path-shadows-cuda").fix.startswith("`unset LD_LIBRARY_PATH`")


def test_ld_library_path_is_an_error_when_import_fails(machine):
    assert machine.one(machine("torch_import_error_ld_path"), "env.ld-library-path-shadows-cuda").severity is Severity.ERROR


@pytest.mark.parametrize("ld", ["/usr/local/lib", "/usr/local/nvidia/lib64:/usr/local/nvidia/lib",
                                "/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/compat/lib", ""])
def test_ld_library_path_harmless(machine, ld):
    assert "env.ld-library-path-shadows-cuda" not in machine.ids(machine("healthy_8xh100", {"env.vars.LD_LIBRARY_PATH": ld}))


def test_ld_library_path_ignored_for_cpu_and_vendor_builds(machine):
    cpu = machine("cpu_only_vm", {"env.vars.LD_LIBRARY_PATH": "/usr/local/cuda/lib64"})
    assert "env.ld-library-path-shadows-cuda" not in machine.ids(cpu)
    ngc = machine("healthy_8xh100", {"env.vars.LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
                                     "torch.version": "2.5.0a0+e000cf0ad9.nv24.10"})
    assert "env.ld-library-path-shadows-cuda" not in machine.ids(ngc)


def test_debug_settings(machine):
    f = machine.one(machine("big_node_small_host"), "env.debug-setting-left-on")
    assert list(f.evidence) == ["CUDA_LAUNCH_BLOCKING"] and f.fix == "`unset CUDA_LAUNCH_BLOCKING` unless you are debugging right now"
    s = machine("healthy_8xh100", {"env.vars.NCCL_DEBUG": "trace", "env.vars.PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
    assert set(machine.one(s, "env.debug-setting-left-on").evidence) == {"NCCL_DEBUG", "PYTORCH_NO_CUDA_MEMORY_CACHING"}
    quiet = machine("healthy_8xh100", {"env.vars.NCCL_DEBUG": "WARN", "env.vars.CUDA_LAUNCH_BLOCKING": "0"})
    assert "env.debug-setting-left-on" not in machine.ids(quiet)


def test_nccl_transport_disabled(machine):
    f = machine.one(machine("big_node_small_host"), "env.nccl-transport-disabled")
    assert f.severity is Severity.INFO and f.evidence["NCCL_P2P_DISABLE"] == "1"
    single = machine("rtx5090_old_wheel", {"env.vars.NCCL_P2P_DISABLE": "1"})
    assert "env.nccl-transport-disabled" not in machine.ids(single)  # P2P needs two GPUs
    ib = machine("rtx5090_old_wheel", {"env.vars.NCCL_IB_DISABLE": "1"})
    assert "env.nccl-transport-disabled" in machine.ids(ib)


def test_env_section_na(machine):
    s = machine("healthy_8xh100", {"env.vars": machine.na()})
    assert machine.ids(s) == set()


# ------------------------------------------------------------------ the cwd shadows a module (issue 10, class 1)

TORCH_DIR = {"module": "torch", "path": "./torch/", "kind": "package"}
JSON_PY = {"module": "json", "path": "./json.py", "kind": "module"}


def _shadow(machine, entries, **patches):
    return machine.example({"host.cwd_shadowing": entries, **patches})


def test_a_torch_folder_in_the_cwd_is_a_warning_with_its_fix(machine):
    found = [f for f in machine.findings(_shadow(machine, [TORCH_DIR, JSON_PY])) if f.id == "env.cwd-shadows-module"]
    torch_f, json_f = found if found[0].evidence["module"] == "torch" else found[::-1]
    assert torch_f.severity is Severity.WARN
    assert torch_f.title == "`./torch/` in the working directory shadows the installed torch for `python` started here"
    assert torch_f.fix == ("rename it, run from another directory, or use `python -P` / PYTHONSAFEPATH=1 "
                           "(Python \u2265 3.11)")
    assert torch_f.evidence["path"] == "./torch/" and torch_f.evidence["python"] == "3.11.9"
    assert json_f.title == "`./json.py` in the working directory shadows the standard library's json for `python` " \
                           "started here"


def test_before_python_3_11_the_fix_does_not_offer_safe_path(machine):
    snap = _shadow(machine, [TORCH_DIR], **{"python.version": "3.10.12"})
    f = machine.one(snap, "env.cwd-shadows-module")
    assert f.fix.startswith("rename it or run from another directory") and "this is 3.10.12" in f.fix


def test_pythonsafepath_silences_it_only_where_python_honours_it(machine):
    safe = {"env.vars.PYTHONSAFEPATH": "1"}
    assert "env.cwd-shadows-module" not in machine.ids(_shadow(machine, [TORCH_DIR], **safe))
    old = _shadow(machine, [TORCH_DIR], **safe, **{"python.version": "3.10.12"})
    assert "env.cwd-shadows-module" in machine.ids(old)


def test_nothing_in_the_cwd_or_an_unknown_fact_is_silent(machine):
    from envcheck.snapshot import na

    assert "env.cwd-shadows-module" not in machine.ids(_shadow(machine, []))
    assert "env.cwd-shadows-module" not in machine.ids(_shadow(machine, na("cwd deleted")))
    odd = [{"module": "not_in_the_recipe", "path": "./x.py"}, "junk", {"module": "torch"}]
    assert "env.cwd-shadows-module" not in machine.ids(_shadow(machine, odd))


def test_torch_not_installed_is_named_plainly(machine):
    snap = machine("torch_missing", {"host.cwd_shadowing": [TORCH_DIR]})
    f = machine.one(snap, "env.cwd-shadows-module")
    assert "shadows torch for" in f.title


def test_the_shadowing_recipe_is_sourced():
    from envcheck import recipes

    data = recipes.load("cwd_shadowing")
    entries = [data["path_rule"], *data["modules"]]
    assert {m["name"] for m in data["modules"]} >= {"torch", "numpy", "typing_extensions", "triton", "json",
                                                    "random", "copy", "inspect"}
    for e in entries:
        assert e["source"] and e["verified"].startswith("2026-"), e
    assert all(m["kind"] in ("third-party", "stdlib") and m["why"] for m in data["modules"])
