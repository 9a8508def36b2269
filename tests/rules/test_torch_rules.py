"""torch.* rules: each one triggered, not triggered, and its evidence and fix."""

from __future__ import annotations

import pytest

from envcheck import recommend
from envcheck.findings import Severity
from envcheck.rules._util import INSTALL_FALLBACK


@pytest.fixture
def fixed_install(monkeypatch):
    """The install engine's answer, so the tests check doctor uses it verbatim."""
    cmd = "/home/alice/.venv/bin/python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"
    monkeypatch.setattr(recommend, "install_fix", lambda snapshot: cmd)
    return cmd


# ------------------------------------------------------------------ presence and import


def test_missing(machine, fixed_install):
    f = machine.one(machine("torch_missing"), "torch.missing")
    assert f.severity is Severity.ERROR
    assert f.fix == fixed_install
    assert f.evidence["python"] == "/home/alice/.venv/bin/python"
    assert "torch.missing" not in machine.ids(machine("healthy_8xh100"))


def test_missing_falls_back_to_envcheck_install(machine, monkeypatch):
    monkeypatch.setattr(recommend, "install_fix", lambda snapshot: None)
    assert machine.one(machine("torch_missing"), "torch.missing").fix == INSTALL_FALLBACK


def test_probe_failed(machine):
    f = machine.one(machine("probe_failed"), "torch.probe-failed")
    assert f.severity is Severity.WARN and "No such file" in f.evidence["message"]
    assert "torch.probe-failed" not in machine.ids(machine("torch_import_hang"))


def test_import_failed_names_the_ld_library_path_cause(machine):
    f = machine.one(machine("torch_import_error_ld_path"), "torch.import-failed")
    assert f.severity is Severity.ERROR
    assert "__nvJitLinkAddData_12_1" in f.title
    assert f.fix == "`export LD_LIBRARY_PATH=/usr/local/lib`, then run again"
    assert "pytorch/pytorch#111469" in f.detail
    assert "stderr_tail" in f.evidence


@pytest.mark.parametrize("message,needle", [
    ("ImportError: /lib64/libc.so.6: version `GLIBC_2.28' not found (required by libtorch_python.so)", "glibc"),
    ("ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory", None),
    ("ImportError: /usr/lib/libstdc++.so.6: version `GLIBCXX_3.4.30' not found", "libstdc++"),
    ("ModuleNotFoundError: No module named 'torch._C'", "local `torch` directory"),
    ("OSError: [WinError 126] The specified module could not be found. Error loading c10.dll", "Visual C++"),
    ("ImportError: something nobody has seen", None),
])
def test_import_failed_causes(machine, fixed_install, message, needle):
    s = machine("torch_import_error_ld_path", {"torch.error.message": message, "torch.error.stderr_tail": "",
                                              "env.vars.LD_LIBRARY_PATH": "/usr/local/lib"})
    f = machine.one(s, "torch.import-failed")
    if needle is None:
        # unknown cause or a missing CUDA library: the engine's command, as a reinstall
        assert f.fix == fixed_install.replace("pip install", "pip install --force-reinstall")
    else:
        assert needle in (f.detail or "")


def test_import_crashed(machine):
    f = machine.one(machine("torch_import_crash"), "torch.import-crashed")
    assert f.evidence["signal"] == 11 and f.evidence["signal_name"] == "SIGSEGV"
    assert "SIGSEGV" in f.title and "LD_PRELOAD" in f.fix
    unknown = machine("torch_import_crash", {"torch.error.signal": 42})
    assert "signal 42" in machine.one(unknown, "torch.import-crashed").title
    assert "torch.import-crashed" not in machine.ids(machine("torch_import_hang"))


def test_import_hung(machine):
    f = machine.one(machine("torch_import_hang"), "torch.import-hung")
    assert f.evidence["timeout_s"] == 30.0 and "30.0 s" in f.title
    assert "importtime" in f.fix


def test_multiple_installs(machine):
    f = machine.one(machine("multiple_installs"), "torch.multiple-installs")
    assert f.severity is Severity.WARN
    assert f.evidence["installed"][0].startswith("torch 2.7.1+cu126 at /home/alice/.local")
    assert f.evidence["imported"] == "2.7.1+cu126"
    assert "torch.multiple-installs" not in machine.ids(machine("healthy_8xh100"))


# ------------------------------------------------------------------ build vs machine


def test_cpu_build_on_gpu_host(machine, fixed_install):
    f = machine.one(machine("windows_cpu_wheel"), "torch.cpu-build-on-gpu-host")
    assert f.severity is Severity.ERROR and f.fix == fixed_install
    assert f.evidence["nvidia_gpus"] == ["NVIDIA GeForce RTX 4090"]
    assert "Windows" in f.detail
    # a CPU build where there is no GPU is fine
    assert "torch.cpu-build-on-gpu-host" not in machine.ids(machine("cpu_only_vm"))
    assert "torch.cpu-build-on-gpu-host" not in machine.ids(machine("cpu_only_laptop"))


def test_rocm_build_on_nvidia_host(machine):
    s = machine("healthy_8xh100", {"torch.cuda": None, "torch.hip": "6.4.43482", "torch.version": "2.9.0+rocm6.4"})
    f = machine.one(s, "torch.cpu-build-on-gpu-host")
    assert "ROCm" in f.title and f.evidence["torch_hip"] == "6.4.43482"


def test_driver_too_old(machine, fixed_install):
    f = machine.one(machine("driver_too_old_cu130"), "torch.driver-too-old")
    assert f.severity is Severity.ERROR and f.fix == fixed_install
    assert f.evidence["driver"] == "570.124.06" and f.evidence["torch_cuda"] == "13.0"
    assert f.evidence["required"].startswith(">= 580")
    assert "too old (found version 12080)" in f.evidence["torch_warning"]
    # the same driver runs a cu128 build
    ok = machine("driver_too_old_cu130", {"torch.cuda": "12.8", "torch.cuda_available": True})
    assert "torch.driver-too-old" not in machine.ids(ok)


def test_driver_too_old_uses_the_recipes_minimum(machine, monkeypatch):
    calls = []

    def minimum(cuda, os="linux"):
        calls.append((cuda, os))
        return "999.1"

    monkeypatch.setattr(recommend, "driver_minimum", minimum)
    f = machine.one(machine("healthy_8xh100"), "torch.driver-too-old")
    assert calls == [("12.6", "linux")] and f.evidence["required"] == ">= 999.1"


def test_driver_too_old_windows_minimum_under_wsl(machine, monkeypatch):
    seen = []
    monkeypatch.setattr(recommend, "driver_minimum", lambda cuda, os="linux": seen.append(os) or "500")
    machine.findings(machine("wsl_rtx4090"))
    assert seen == ["windows"]


def test_driver_too_old_without_nvml_uses_torch_warning(machine, monkeypatch):
    s = machine("driver_too_old_cu130", {"nvidia.driver_version": machine.na(), "nvidia.cuda_driver_version": machine.na()})
    f = machine.one(s, "torch.driver-too-old")
    assert f.evidence["driver"] is None and "torch_warning" in f.evidence


def test_driver_too_old_without_recipe_uses_driver_cuda_version(machine, monkeypatch):
    monkeypatch.setattr(recommend, "driver_minimum", lambda *a, **k: None)
    s = machine("driver_too_old_cu130", {"torch.cuda_unavailable_reason": None})
    assert machine.one(s, "torch.driver-too-old").evidence["required"] is None
    assert "torch.driver-too-old" not in machine.ids(machine("healthy_8xh100"))


def test_arch_unsupported_new_gpu_old_wheel(machine, fixed_install):
    f = machine.one(machine("rtx5090_old_wheel"), "torch.arch-unsupported")
    assert f.severity is Severity.ERROR and f.fix == fixed_install
    assert f.evidence["gpus"] == ["GPU 0 (NVIDIA GeForce RTX 5090) sm_120"]
    assert "newer than every architecture" in f.detail
    assert "no kernel image" in f.detail


def test_arch_unsupported_old_gpu_new_wheel(machine):
    f = machine.one(machine("v100_cu13_wheel"), "torch.arch-unsupported")
    assert "dropped" in f.detail and "sm_70" in f.evidence["gpus"][0]


def test_arch_supported_and_unknown(machine):
    assert "torch.arch-unsupported" not in machine.ids(machine("healthy_8xh100"))
    no_list = machine("rtx5090_old_wheel", {"torch.arch_list": []})
    assert "torch.arch-unsupported" not in machine.ids(no_list)


def test_arch_falls_back_to_torch_devices(machine):
    s = machine("rtx5090_old_wheel", {"nvidia.gpus.0.compute_capability": machine.na()})
    assert "cuda:0" in machine.one(s, "torch.arch-unsupported").evidence["gpus"][0]


def test_arch_ptx_only(machine):
    f = machine.one(machine("arch_ptx_only"), "torch.arch-ptx-only")
    assert f.severity is Severity.WARN and "JIT" in f.title


def test_python_unsupported_with_torch(machine, monkeypatch, fixed_install):
    monkeypatch.setattr(recommend, "python_range",
                        lambda v, platform=None: ("3.9", "3.13") if v == "2.7.1" else None)
    f = machine.one(machine("healthy_8xh100", {"python.version": "3.14.0"}), "torch.python-unsupported")
    assert f.severity is Severity.WARN  # it imported: unsupported but working
    assert f.evidence == {"python": "3.14", "torch": "2.7.1", "supported": "3.9..3.13",
                          "platform": "linux-x86_64"}
    assert f.fix == fixed_install
    broken = machine("torch_import_crash", {"python.version": "3.14.0"})
    assert machine.one(broken, "torch.python-unsupported").severity is Severity.ERROR
    assert "torch.python-unsupported" not in machine.ids(machine("healthy_8xh100"))


def test_python_unsupported_without_torch(machine, monkeypatch):
    monkeypatch.setattr(recommend, "newest_known_release", lambda: "2.14.0")
    monkeypatch.setattr(recommend, "python_range", lambda v: ("3.10", "3.14"))
    new = machine.one(machine("torch_missing", {"python.version": "3.15.0"}), "torch.python-unsupported")
    assert new.severity is Severity.ERROR and "Could not find a version" in new.detail
    old = machine.one(machine("torch_missing", {"python.version": "3.9.18"}), "torch.python-unsupported")
    assert old.severity is Severity.WARN and "old release" in old.detail


def test_python_unsupported_unknown_release(machine, monkeypatch):
    monkeypatch.setattr(recommend, "python_range", lambda v: None)
    assert "torch.python-unsupported" not in machine.ids(machine("torch_missing_py38"))


def test_newer_than_known(machine, monkeypatch):
    monkeypatch.setattr(recommend, "is_newer_than_known", lambda v: v.startswith("2.99"))
    monkeypatch.setattr(recommend, "newest_known_release", lambda: "2.14.0")
    f = machine.one(machine("torch_nightly_newer"), "torch.newer-than-known")
    assert f.severity is Severity.INFO and f.evidence["newest_known"] == "2.14.0"
    assert "torch.newer-than-known" not in machine.ids(machine("healthy_8xh100"))


def test_newer_than_known_without_the_engine(machine, monkeypatch):
    monkeypatch.delattr(recommend, "is_newer_than_known", raising=False)
    monkeypatch.setattr(recommend, "newest_known_release", lambda: "2.14.0")
    assert "torch.newer-than-known" in machine.ids(machine("torch_nightly_newer"))
    assert "torch.newer-than-known" not in machine.ids(machine("healthy_8xh100"))


# ------------------------------------------------------------------ runtime


def test_cuda_unavailable_carries_torchs_warning(machine):
    f = machine.one(machine("cuda_unavailable_unexplained"), "torch.cuda-unavailable")
    assert f.severity is Severity.ERROR
    assert f.evidence["torch_warning"].startswith("CUDA initialization: CUDA unknown error")
    assert "nvidia-uvm" in f.fix


@pytest.mark.parametrize("scenario", ["driver_too_old_cu130", "docker_without_gpus", "no_driver_nouveau",
                                      "driver_library_mismatch", "cvd_empty", "uvm_missing",
                                      "nvml_no_permission"])
def test_cuda_unavailable_defers_to_the_rule_naming_the_cause(machine, scenario):
    assert "torch.cuda-unavailable" not in machine.ids(machine(scenario))


def test_cuda_unavailable_not_on_cpu_machines(machine):
    assert "torch.cuda-unavailable" not in machine.ids(machine("cpu_only_vm"))
    assert "torch.cuda-unavailable" not in machine.ids(machine("healthy_8xh100"))


def test_sees_fewer_gpus(machine):
    f = machine.one(machine("one_gpu_lost"), "torch.sees-fewer-gpus")
    assert f.evidence == {"torch_device_count": 3, "nvml_gpu_count": 4}
    # CUDA_VISIBLE_DEVICES or MIG explain a smaller count
    assert "torch.sees-fewer-gpus" not in machine.ids(machine("one_gpu_lost", {"env.vars.CUDA_VISIBLE_DEVICES": "0,1,3"}))
    assert "torch.sees-fewer-gpus" not in machine.ids(machine("one_gpu_lost", {"nvidia.gpus.0.mig_mode.current": True}))


def test_compile_prereqs_missing(machine):
    f = machine.one(machine("compile_prereqs_missing"), "torch.compile-prereqs-missing")
    assert f.evidence["missing"] == ["C compiler", "Python headers (Python.h)", "triton"]
    assert "sudo apt-get install -y build-essential python3.11-dev" in f.fix
    assert "pip check" in f.fix
    assert "torch.compile-prereqs-missing" not in machine.ids(machine("healthy_8xh100"))


def test_compile_prereqs_triton_only_matters_for_linux_gpu_builds(machine):
    # CPU builds (the VM) and macOS do not need triton
    assert "torch.compile-prereqs-missing" not in machine.ids(machine("cpu_only_vm"))
    assert "torch.compile-prereqs-missing" not in machine.ids(machine("cpu_only_laptop"))
    # and Windows is not judged at all (no C compiler check there)
    assert "torch.compile-prereqs-missing" not in machine.ids(machine("windows_cpu_wheel"))


def test_compile_prereqs_rhel_command(machine):
    s = machine("compile_prereqs_missing", {"host.os.distro_id": "rocky", "torch.compile.triton.available": True})
    f = machine.one(s, "torch.compile-prereqs-missing")
    assert f.fix == "sudo dnf install -y gcc gcc-c++ python3.11-devel"


def test_compile_prereqs_unknown_is_not_missing(machine):
    s = machine("compile_prereqs_missing", {"torch.compile.cc": machine.na(), "torch.compile.python_headers": machine.na(),
                                            "torch.compile.triton": machine.na()})
    assert "torch.compile-prereqs-missing" not in machine.ids(s)


# -- issue 13 (6): the fixes' specifics -------------------------------------------------------


def test_driver_in_the_image_says_remove_it_not_reboot():
    import doctor_scenarios

    from envcheck import rules as _rules

    found = {f.id: f for f in _rules.evaluate(doctor_scenarios.build("container_driver_in_image"))}
    fix = found["nvidia.driver-library-mismatch"].fix
    assert "remove the driver from the image" in fix and "libnvidia-compute-565" in fix
    assert "reboot" not in fix


def test_wheel_lib_dirs_of_another_environment_still_shadow():
    from envcheck.rules._util import cuda_lib_dirs

    mine = "/home/alice/.venv/lib/python3.11/site-packages"
    other = "/opt/conda/lib/python3.11/site-packages/nvidia/cublas/lib"
    assert cuda_lib_dirs(f"{mine}/nvidia/cudnn/lib", mine)[0] == []
    assert cuda_lib_dirs(f"{other}:{mine}/nvidia/cudnn/lib", mine)[0] == [other]
    assert cuda_lib_dirs("/usr/local/cuda-12.1/lib64", mine)[0] == ["/usr/local/cuda-12.1/lib64"]


def test_wsl_workaround_on_ld_library_path_silences_the_libcuda_finding():
    import doctor_scenarios

    from envcheck import rules as _rules

    s = doctor_scenarios.build("wsl_libcuda_missing")
    s["env"]["vars"]["LD_LIBRARY_PATH"] = "/usr/lib/wsl/lib"
    assert "torch.wsl-libcuda-unversioned-missing" not in {f.id for f in _rules.evaluate(s)}


def test_python_range_per_platform():
    from envcheck import recommend

    assert recommend.python_range("2.5.1", "windows-x86_64") == ("3.9", "3.12")
    assert recommend.python_range("2.5.1", "linux-x86_64") == ("3.9", "3.13")
    assert recommend.python_range("2.5.1") == ("3.9", "3.13")
    assert recommend.python_range("2.5.1", "plan9-mips") == ("3.9", "3.13")
