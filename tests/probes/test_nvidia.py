"""The nvidia probe and its NVML choke point, on named fake-NVML scenarios and on this machine.

The fake raises the real pynvml.NVMLError(code) subclasses, so error classification is tested
against the real NVML codes; only the values are invented (see tests/fixtures/nvml_scenarios).
"""

from __future__ import annotations

import copy
import ctypes
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from envcheck import snapshot
from envcheck.probes import _nvml, nvidia

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

import fake_nvml  # noqa: E402
from fake_nvml import FakeNvml, load_scenario, recorded, scenario_names, scenario_snapshot  # noqa: E402

CONTRACT = json.loads((FIXTURES / "snapshots" / "example_8xh100.json").read_text())["nvidia"]
SECTION_KEYS = set(CONTRACT)
GPU_KEYS = set(CONTRACT["gpus"][0])
NVML_STATUSES = {"ok", "library_not_found", "driver_not_loaded", "driver_library_mismatch",
                 "no_permission", "unknown_error", "gpu_lost", "gpu_fatal"}

EXPECTED_SCENARIOS = {
    "no_driver", "driver_not_loaded", "driver_library_mismatch", "one_gpu_lost",
    "function_not_supported", "healthy_8xh100", "rtx5090", "v100", "throttled", "ecc_errors",
    "retired_pages_pending", "pcie_degraded", "memory_used_by_others", "mig_enabled",
    "nvlink_down", "count_gpu_lost", "count_no_permission", "count_unknown",
    "driver_535_process_struct", "gpu_fatal", "gpu_hung", "gpu_slow", "name_call_failed",
    "not_allocated_7_of_8", "nvlink_all_down", "nvlink_errors",
}


def probe_scenario(scenario: dict) -> tuple[dict, FakeNvml]:
    backend = FakeNvml(scenario)
    return nvidia.probe(nvml=backend, process_name=backend.process_name), backend


_NO_NVLINK_ERRORS = {"replay": 0, "recovery": 0, "crc_flit": 0, "crc_data": 0}


def gpu0(name: str) -> dict:
    return scenario_snapshot(name)["gpus"][0]


# -- scenarios, recorded fixtures, contract ---------------------------------------------


def test_all_named_scenarios_exist():
    assert set(scenario_names()) == EXPECTED_SCENARIOS


@pytest.mark.parametrize("name", sorted(EXPECTED_SCENARIOS))
def test_recorded_section_equals_a_fresh_probe(name):
    # python3 tests/fixtures/regen_nvidia.py re-records after an intended change
    assert recorded(name) == json.loads(json.dumps(scenario_snapshot(name)))


@pytest.mark.parametrize("name", sorted(EXPECTED_SCENARIOS))
def test_every_scenario_has_exactly_the_contract_keys(name):
    section = scenario_snapshot(name)
    assert set(section) == SECTION_KEYS
    assert section["nvml"]["status"] in NVML_STATUSES
    for i, gpu in enumerate(section["gpus"]):
        assert set(gpu) == GPU_KEYS
        assert gpu["index"] == i
    # a snapshot holding it serialises
    json.loads(snapshot.dumps(snapshot.new({"nvidia": section})))


def test_healthy_8xh100_reproduces_the_contract_exactly():
    assert scenario_snapshot("healthy_8xh100") == CONTRACT


def test_init_and_shutdown_once_per_probe():
    section, backend = probe_scenario(load_scenario("healthy_8xh100"))
    assert (backend.inits, backend.shutdowns) == (1, 1)
    assert backend.calls[0] == "nvmlInit" and backend.calls[-1] == "nvmlShutdown"
    assert section["gpu_count"] == 8


class _SignatureChecking:
    """Forwards to a fake, but first binds every call against the real pynvml signature."""

    def __init__(self, backend):
        self._backend = backend
        self.checked: set[str] = set()

    def __dir__(self):
        return dir(self._backend)

    def __getattr__(self, name):
        attr = getattr(self._backend, name)
        if not (callable(attr) and name.startswith("nvml")):
            return attr
        real = inspect.signature(getattr(pynvml, name))  # AttributeError: no such pynvml call

        def checked(*args, **kwargs):
            real.bind(*args, **kwargs)  # TypeError: the real call would not accept these
            self.checked.add(name)
            return attr(*args, **kwargs)

        return checked


@pytest.mark.parametrize("name", ["healthy_8xh100", "function_not_supported", "v100",
                                  "memory_used_by_others"])
def test_probe_calls_exist_in_real_pynvml_with_these_arguments(name):
    backend = fake_nvml.fake(name)
    checking = _SignatureChecking(backend)
    section = nvidia.probe(nvml=checking, process_name=backend.process_name)
    assert section == scenario_snapshot(name)  # nothing was refused
    assert "nvmlDeviceGetNvLinkState" in checking.checked and len(checking.checked) > 25


# -- NVML cannot start ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "code", "words"),
    [
        ("no_driver", "library_not_found", "NVML_ERROR_LIBRARY_NOT_FOUND",
         "libnvidia-ml.so.1 not found: no NVIDIA driver installed, or not visible in this container"),
        ("driver_not_loaded", "driver_not_loaded", "NVML_ERROR_DRIVER_NOT_LOADED",
         "kernel driver is not loaded"),
        ("driver_library_mismatch", "driver_library_mismatch",
         "NVML_ERROR_LIB_RM_VERSION_MISMATCH", "Driver/library version mismatch"),
    ],
)
def test_nvml_that_cannot_start(name, status, code, words):
    section, backend = probe_scenario(load_scenario(name))
    assert section["nvml"]["status"] == status
    assert section["nvml"]["error"]["class"] == status
    assert words in section["nvml"]["error"]["message"]
    assert section["nvml"]["error"]["message"].endswith(": " + code)
    assert section["gpus"] == []
    for key in ("driver_version", "cuda_driver_version", "nvml_version", "gpu_count"):
        assert section[key] == {"unavailable": f"NVML did not start: {code}"}
    assert backend.shutdowns == 0  # nothing to shut down after a failed init


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("NVML_ERROR_NO_PERMISSION", "no_permission"),
        ("NVML_ERROR_UNKNOWN", "unknown_error"),
        ("NVML_ERROR_GPU_IS_LOST", "unknown_error"),  # not an nvml.status name: unknown_error
        ("NVML_ERROR_TIMEOUT", "unknown_error"),
    ],
)
def test_other_init_errors_map_to_contract_statuses(code, status):
    section, _ = probe_scenario({"init_error": code, "system": {}, "gpus": []})
    assert section["nvml"]["status"] == status
    assert section["nvml"]["error"]["message"].endswith(code)


def test_bindings_that_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    section = nvidia.probe()
    assert section["nvml"]["status"] == "unknown_error"
    assert "nvidia-ml-py" in section["nvml"]["error"]["message"]
    assert section["gpus"] == []


# -- error classification against the real pynvml codes ------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "library_not_found"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver_not_loaded"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "driver_library_mismatch"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, "gpu_lost"),
        (pynvml.NVML_ERROR_NOT_SUPPORTED, "not_supported"),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, "not_supported"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no_permission"),
        (pynvml.NVML_ERROR_UNKNOWN, "unknown_error"),
        (pynvml.NVML_ERROR_TIMEOUT, "unknown_error"),
        (pynvml.NVML_ERROR_CORRUPTED_INFOROM, "gpu_fatal"),
        (pynvml.NVML_ERROR_RESET_REQUIRED, "gpu_fatal"),
        (pynvml.NVML_ERROR_INSUFFICIENT_POWER, "gpu_fatal"),
        (pynvml.NVML_ERROR_IRQ_ISSUE, "gpu_fatal"),
        (pynvml.NVML_ERROR_MEMORY, "unknown_error"),
    ],
)
def test_classify_real_nvml_errors(code, cls):
    failure = _nvml.Session(pynvml).classify(pynvml.NVMLError(code))
    assert failure.cls == cls
    assert failure.code == code
    assert getattr(pynvml, failure.code_name) == code
    assert failure.na() == {"unavailable": failure.message}


def test_unknown_errors_keep_the_nvml_text():
    failure = _nvml.Session(pynvml).classify(pynvml.NVMLError(pynvml.NVML_ERROR_MEMORY))
    assert failure.message == "NVML error (Insufficient Memory): NVML_ERROR_MEMORY"


def test_classify_non_nvml_exceptions():
    s = _nvml.Session(pynvml)
    mismatch = s.classify(pynvml.NVMLLibraryMismatchError("old driver"))
    assert (mismatch.cls, mismatch.code_name) == ("not_supported", "NVMLLibraryMismatchError")
    assert mismatch.function_missing
    other = s.classify(TypeError("bad ctypes argument"))
    assert other.cls == "unknown_error"
    assert other.message == "pynvml raised TypeError: bad ctypes argument: TypeError"


def test_query_returns_value_or_na():
    s = _nvml.Session(FakeNvml({"system": {"driver_version": "550.90.07"}, "gpus": []}))
    s.call("nvmlInit")
    assert s.query("nvmlSystemGetDriverVersion") == "550.90.07"
    assert s.query("nvmlNoSuchFunction") == {
        "unavailable": "not supported by the installed nvidia-ml-py (it has no nvmlNoSuchFunction; "
        "upgrade it): AttributeError"
    }
    value, failure = s.call_first(("nvmlNoSuchFunction", "nvmlSystemGetDriverVersion"))
    assert (value, failure) == ("550.90.07", None)


def test_call_first_stops_at_a_real_failure():
    scenario = {"system": {"cuda_driver_version": 12040},
                "system_errors": {"nvmlSystemGetCudaDriverVersion_v2": "NVML_ERROR_NO_PERMISSION"},
                "gpus": []}
    s = _nvml.Session(FakeNvml(scenario))
    s.call("nvmlInit")
    value, failure = s.call_first(("nvmlSystemGetCudaDriverVersion_v2",
                                   "nvmlSystemGetCudaDriverVersion"))
    assert value is None and failure.cls == "no_permission"


# -- no exception escapes ---------------------------------------------------------------


class _Exploding:
    """Every nvml* call after nvmlInit/nvmlDeviceGetCount raises ``exc``."""

    def __init__(self, exc: BaseException, count: int = 2):
        for attr in dir(pynvml):
            if attr.startswith(("NVML_", "NVMLError", "nvmlClocks", "nvmlMemory_v")):
                setattr(self, attr, getattr(pynvml, attr))
        self.NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError
        self._exc, self._count = exc, count

    def nvmlInit(self):
        return None

    def nvmlDeviceGetCount(self):
        return self._count

    def __getattr__(self, name):
        if not name.startswith("nvml"):
            raise AttributeError(name)

        def boom(*args, **kwargs):
            raise self._exc

        return boom


_ALL_CODES = sorted({v for k, v in vars(pynvml).items() if k.startswith("NVML_ERROR_")})


@pytest.mark.parametrize(
    "exc",
    [pynvml.NVMLError(code) for code in _ALL_CODES]
    + [pynvml.NVMLLibraryMismatchError("x"), RuntimeError("x"), OSError(5, "EIO"),
       ValueError("x"), KeyError("x"), ZeroDivisionError("x")],
    ids=lambda e: type(e).__name__ + (f"_{e.value}" if hasattr(e, "value") else ""),
)
def test_no_exception_escapes_when_every_call_raises(exc):
    section = nvidia.probe(nvml=_Exploding(exc))
    assert section["nvml"] == {"status": "ok", "error": None}
    assert len(section["gpus"]) == 2
    for gpu in section["gpus"]:
        assert set(gpu) == GPU_KEYS
        assert gpu["error"] is not None  # the handle itself failed
        assert all(snapshot.is_na(gpu[k]) for k in nvidia.GPU_METRICS)
    json.dumps(section)


def test_no_exception_escapes_when_init_and_shutdown_raise():
    class Broken(_Exploding):
        def nvmlInit(self):
            raise MemoryError("no memory")

    section = nvidia.probe(nvml=Broken(RuntimeError("x")))
    assert section["nvml"]["status"] == "unknown_error"
    assert "MemoryError" in section["nvml"]["error"]["message"]


def test_odd_values_spoil_only_that_gpu():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][1]["compute_capability"] = [9]  # NVML answered, but not a pair
    section, _ = probe_scenario(scenario)
    assert section["gpus"][1]["error"]["class"] == "unknown_error"
    assert section["gpus"][1]["index"] == 1
    assert [g["error"] for i, g in enumerate(section["gpus"]) if i != 1] == [None] * 7


def test_a_gpu_count_that_is_not_a_number():
    class OddCount(_Exploding):
        def nvmlDeviceGetCount(self):
            return "two"

    section = nvidia.probe(nvml=OddCount(RuntimeError("x")))
    assert snapshot.is_na(section["gpu_count"]) and section["gpus"] == []


# -- lost and inaccessible GPUs -------------------------------------------------------------


def test_one_gpu_lost_leaves_the_others_intact():
    section = scenario_snapshot("one_gpu_lost")
    healthy = scenario_snapshot("healthy_8xh100")["gpus"]
    assert section["gpu_count"] == 4
    lost = section["gpus"][2]
    assert lost["index"] == 2
    assert lost["error"]["class"] == "gpu_lost"
    assert lost["error"]["message"].startswith("GPU is lost")
    assert all(lost[k] == {"unavailable": lost["error"]["message"]} for k in nvidia.GPU_METRICS)
    for i in (0, 1, 3):
        assert section["gpus"][i] == healthy[i]


def test_gpu_lost_at_the_handle():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][5]["errors"] = {"nvmlDeviceGetHandleByIndex": "NVML_ERROR_GPU_IS_LOST"}
    section, _ = probe_scenario(scenario)
    assert section["gpus"][5]["error"]["class"] == "gpu_lost"
    assert snapshot.is_na(section["gpus"][5]["name"])
    assert sum(g["error"] is not None for g in section["gpus"]) == 1


def test_gpu_lost_midway_keeps_what_was_read():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][0]["errors"]["nvmlDeviceGetComputeRunningProcesses"] = "NVML_ERROR_GPU_IS_LOST"
    gpu = probe_scenario(scenario)[0]["gpus"][0]
    assert gpu["error"]["class"] == "gpu_lost"
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["processes"]["unavailable"].endswith("NVML_ERROR_GPU_IS_LOST")


def test_gpu_without_permission():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][3]["errors"] = {"nvmlDeviceGetHandleByIndex": "NVML_ERROR_NO_PERMISSION"}
    gpu = probe_scenario(scenario)[0]["gpus"][3]
    assert gpu["error"]["class"] == "not_allocated"
    assert gpu["uuid"]["unavailable"].endswith("NVML_ERROR_NO_PERMISSION)")


# -- exact values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [(12040, "12.4"), (12090, "12.9"), (13000, "13.0"), (11080, "11.8"), (12100, "12.10")],
)
def test_cuda_version_formatting(raw, text):
    assert nvidia.format_cuda_version(raw) == text


@pytest.mark.parametrize("raw", [0, -1, None, "12.4"])
def test_unusable_cuda_version(raw):
    assert snapshot.is_na(nvidia.format_cuda_version(raw))


def test_throttle_decoding_uses_the_pynvml_bits():
    mask = (pynvml.nvmlClocksEventReasonGpuIdle | pynvml.nvmlClocksEventReasonHwSlowdown
            | pynvml.nvmlClocksEventReasonSwThermalSlowdown)
    assert nvidia.decode_throttle_reasons(mask, pynvml) == ["gpu_idle", "hw_slowdown",
                                                            "sw_thermal_slowdown"]
    assert nvidia.decode_throttle_reasons(0, pynvml) == []
    every = pynvml.nvmlClocksThrottleReasonAll | 0x10000
    assert nvidia.decode_throttle_reasons(every, pynvml) == [
        "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
        "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown",
        "display_clock_setting", "board_limit", "reliability", "unknown_0x10000",
    ]
    # without a backend (old bindings) the documented bits decode the same
    assert nvidia.decode_throttle_reasons(mask) == nvidia.decode_throttle_reasons(mask, pynvml)


def test_throttled_scenario():
    gpu = gpu0("throttled")
    assert gpu["throttle_reasons"] == ["gpu_idle", "hw_slowdown", "sw_thermal_slowdown"]
    assert gpu["temperature_c"] == 92
    assert scenario_snapshot("throttled")["gpus"][1]["throttle_reasons"] == ["gpu_idle"]


def test_milliwatts_become_watts():
    scenario = load_scenario("v100")
    scenario["gpus"][0].update(power_mw=123456, power_limit_mw=300000)
    power = probe_scenario(scenario)[0]["gpus"][0]["power"]
    assert power == {"draw_w": 123.456, "limit_w": 300.0}
    assert all(isinstance(v, float) for v in power.values())
    assert gpu0("healthy_8xh100")["power"] == {"draw_w": 71.5, "limit_w": 700.0}


def test_memory_uses_v2_and_falls_back_to_v1():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][0]["memory"] = {"total": 1000, "reserved": 100, "used": 300}
    assert probe_scenario(scenario)[0]["gpus"][0]["memory"] == {"total_bytes": 1000, "used_bytes": 300}
    scenario["gpus"][0]["errors"]["nvmlDeviceGetMemoryInfo_v2"] = "NVML_ERROR_FUNCTION_NOT_FOUND"
    # v1's "used" includes the driver's reservation
    assert probe_scenario(scenario)[0]["gpus"][0]["memory"] == {"total_bytes": 1000, "used_bytes": 400}


def test_old_driver_falls_back_to_older_calls():
    section, backend = probe_scenario(load_scenario("function_not_supported"))
    gpu = section["gpus"][0]
    assert section["cuda_driver_version"] == "11.4"
    assert gpu["throttle_reasons"] == ["gpu_idle"]
    assert gpu["memory"] == {"total_bytes": 11811160064, "used_bytes": 306184192}
    for fn in ("nvmlSystemGetCudaDriverVersion", "nvmlDeviceGetCurrentClocksThrottleReasons",
               "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses_v2"):
        assert fn in backend.calls
    assert gpu["processes"] == {
        "unavailable": "not supported on this GPU or driver: NVML_ERROR_NOT_SUPPORTED"}
    assert gpu["ecc"] == {"unavailable": "not supported on this GPU (no ECC memory) or driver: "
                                         "NVML_ERROR_NOT_SUPPORTED"}
    assert gpu["nvlink"] == {"unavailable": "no NVLink on this GPU: NVML_ERROR_NOT_SUPPORTED"}
    assert gpu["row_remap"]["unavailable"].startswith("not supported on this GPU (row remapping is")
    assert snapshot.is_na(gpu["mig_mode"]) and snapshot.is_na(gpu["retired_pages"])
    assert gpu["persistence_mode"] is False
    assert gpu["error"] is None


def test_rtx5090_and_v100_identity():
    section = scenario_snapshot("rtx5090")
    gpu = section["gpus"][0]
    assert (section["driver_version"], section["cuda_driver_version"]) == ("575.57.08", "12.9")
    assert gpu["compute_capability"] == "12.0"
    assert gpu["memory"]["total_bytes"] == 32 * 1024**3
    assert gpu["retired_pages"] == {"unavailable": "not supported on this GPU: NVML_ERROR_NOT_SUPPORTED"}
    section = scenario_snapshot("v100")
    gpu = section["gpus"][0]
    assert section["driver_version"].startswith("580.") and section["cuda_driver_version"] == "13.0"
    assert gpu["compute_capability"] == "7.0"
    assert gpu["retired_pages"] == {"pending": False, "double_bit": 0, "single_bit": 0}
    assert gpu["nvlink"] == {"up": 6, "down": 0, "total": 6, "errors": _NO_NVLINK_ERRORS}


def test_health_scenarios():
    ecc = gpu0("ecc_errors")
    assert ecc["ecc"]["volatile_uncorrected"] == 2 and ecc["ecc"]["aggregate_uncorrected"] == 5
    assert ecc["ecc"]["volatile_corrected"] == 14
    assert ecc["row_remap"] == {"correctable": 1, "uncorrectable": 3, "pending": True, "failure": True}
    assert gpu0("retired_pages_pending")["retired_pages"] == {"pending": True, "double_bit": 2,
                                                              "single_bit": 1}
    assert gpu0("pcie_degraded")["pcie"] == {"gen_current": 3, "gen_max": 5, "width_current": 8,
                                             "width_max": 16}
    assert gpu0("mig_enabled")["mig_mode"] == {"current": True, "pending": True}
    assert gpu0("nvlink_down")["nvlink"] == {"up": 16, "down": 2, "total": 18,
                                             "errors": _NO_NVLINK_ERRORS}
    others = gpu0("memory_used_by_others")
    assert others["processes"] == [{"pid": 48213, "name": "python3", "used_bytes": 76968728985}]
    assert others["memory"]["used_bytes"] / others["memory"]["total_bytes"] == pytest.approx(0.9)
    # the second GPU of each health scenario stays healthy
    for name in ("ecc_errors", "pcie_degraded", "mig_enabled", "nvlink_down", "memory_used_by_others"):
        assert scenario_snapshot(name)["gpus"][1] == scenario_snapshot("healthy_8xh100")["gpus"][1]


@pytest.mark.parametrize("past_last", ["NVML_ERROR_INVALID_ARGUMENT", "NVML_ERROR_NOT_SUPPORTED"])
def test_nvlink_counting_stops_at_the_last_link(past_last):
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][0]["nvlink"] = {"links": 12, "down": [0], "past_last": past_last}
    assert probe_scenario(scenario)[0]["gpus"][0]["nvlink"] == {"up": 11, "down": 1, "total": 12,
                                                                "errors": _NO_NVLINK_ERRORS}


def test_nvlink_read_error_after_the_first_link():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][0]["nvlink"] = {"links": 3, "past_last": "NVML_ERROR_NO_PERMISSION"}
    assert probe_scenario(scenario)[0]["gpus"][0]["nvlink"] == {
        "unavailable": "link 3 could not be read: NVML_ERROR_NO_PERMISSION"}


@pytest.mark.parametrize(
    ("raw", "name"),
    [(0, "default"), (2, "prohibited"), (3, "exclusive_process"), (1, "exclusive_thread"),
     (7, "unknown_7")],
)
def test_compute_modes(raw, name):
    scenario = load_scenario("v100")
    scenario["gpus"][0]["compute_mode"] = raw
    assert probe_scenario(scenario)[0]["gpus"][0]["compute_mode"] == name


def test_process_memory_the_driver_does_not_report():
    scenario = load_scenario("v100")
    scenario["gpus"][0]["processes"] = [{"pid": 7, "name": "a.out", "used_bytes": None}]
    procs = probe_scenario(scenario)[0]["gpus"][0]["processes"]
    assert procs == [{"pid": 7, "name": "a.out", "used_bytes": {"unavailable": "not reported by the driver"}}]


def test_process_names():
    assert nvidia._psutil_name(os.getpid()) == __import__("psutil").Process().name()
    assert nvidia._psutil_name(2**22 + 12345) is None  # above pid_max: no such process

    def broken(pid):
        raise RuntimeError("namespace")

    assert nvidia._safe_name(broken, 1) is None


def test_bytes_from_old_bindings_are_decoded():
    class OldBindings(FakeNvml):
        def nvmlDeviceGetName(self, h):
            return super().nvmlDeviceGetName(h).encode()

        def nvmlSystemGetDriverVersion(self):
            return super().nvmlSystemGetDriverVersion().encode()

    backend = OldBindings(load_scenario("v100"))
    section = nvidia.probe(nvml=backend, process_name=backend.process_name)
    assert section["driver_version"] == "580.65.06"
    assert section["gpus"][0]["name"] == "Tesla V100-SXM2-16GB"
    assert section["gpus"][0]["pci_bus_id"] == "00000000:06:00.0"


def test_fake_refuses_calls_before_init():
    backend = fake_nvml.fake("v100")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        backend.nvmlDeviceGetCount()


# -- this machine ------------------------------------------------------------------------------


def _libnvml_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_probe_on_this_machine_never_raises():
    section = nvidia.probe()
    assert set(section) == SECTION_KEYS
    assert section["nvml"]["status"] in NVML_STATUSES
    if not _libnvml_loads():
        # no driver here (the CI machine): the exact class, and no GPUs
        assert section["nvml"]["status"] == "library_not_found"
        assert section["gpus"] == []
    elif section["nvml"]["status"] == "ok":
        assert len(section["gpus"]) == section["gpu_count"]
    else:
        assert section["gpus"] == []


def test_importing_the_probe_does_not_import_pynvml():
    # keeps `envcheck doctor` start-up lean: pynvml loads only when the probe runs
    code = "import sys, envcheck.probes.nvidia; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_real_gpu_is_seen_with_sane_values():
    section = nvidia.probe()
    assert section["nvml"] == {"status": "ok", "error": None}, section["nvml"]
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", section["driver_version"])
    assert re.fullmatch(r"\d+\.\d+", section["cuda_driver_version"])
    assert section["gpu_count"] >= 1 and len(section["gpus"]) == section["gpu_count"]
    for gpu in section["gpus"]:
        assert gpu["error"] is None, gpu["error"]
        assert set(gpu) == GPU_KEYS
        assert gpu["name"].startswith("NVIDIA") or "Tesla" in gpu["name"]
        assert gpu["uuid"].startswith(("GPU-", "MIG-"))
        assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-9A-F]", gpu["pci_bus_id"])
        assert re.fullmatch(r"\d+\.\d", gpu["compute_capability"])
        mem = gpu["memory"]
        assert mem["total_bytes"] > 1024**3 and 0 <= mem["used_bytes"] <= mem["total_bytes"]
        assert 0 < gpu["temperature_c"] < 110
        assert 0 < gpu["power"]["limit_w"] <= 2000 and 0 <= gpu["power"]["draw_w"] <= 2000
        assert 0 < gpu["clocks"]["sm_mhz"] <= gpu["clocks"]["sm_max_mhz"] <= 4000
        assert 1 <= gpu["pcie"]["gen_current"] <= gpu["pcie"]["gen_max"] <= 6
        assert isinstance(gpu["throttle_reasons"], list)
        assert all(re.fullmatch(r"[a-z_0-9x]+", r) for r in gpu["throttle_reasons"])
        assert isinstance(gpu["processes"], list)
        assert gpu["compute_mode"] in ("default", "exclusive_process", "prohibited")
    print(json.dumps(section, indent=1))


# -- issue 13 (5) and issue 10 class 7: NVML on real hardware --------------------------------


@pytest.mark.parametrize(("name", "status", "code"), [
    ("count_gpu_lost", "gpu_lost", "NVML_ERROR_GPU_IS_LOST"),
    ("count_no_permission", "no_permission", "NVML_ERROR_NO_PERMISSION"),
    ("count_unknown", "unknown_error", "NVML_ERROR_UNKNOWN"),
])
def test_a_failed_count_is_a_status_with_its_reason_never_no_gpu(name, status, code):
    section = scenario_snapshot(name)
    assert section["nvml"]["status"] == status
    assert section["nvml"]["error"]["message"].startswith("nvmlDeviceGetCount failed: ")
    assert section["nvml"]["error"]["message"].endswith(code)
    assert snapshot.is_na(section["gpu_count"]) and section["gpus"] == []
    assert section["driver_version"] == "550.90.07"  # the rest of what NVML said is kept


def test_not_allocated_gpus_in_a_job_given_one_of_eight():
    section = scenario_snapshot("not_allocated_7_of_8")
    classes = [g["error"]["class"] if g["error"] else None for g in section["gpus"]]
    assert classes == ["not_allocated"] * 3 + [None] + ["not_allocated"] * 4
    assert section["gpus"][3] == scenario_snapshot("healthy_8xh100")["gpus"][3]
    assert "not allocated to this job" in section["gpus"][0]["error"]["message"]


def test_each_gpu_fatal_error_is_an_error_and_keeps_the_other_facts():
    section = scenario_snapshot("gpu_fatal")
    codes = [g["error"]["message"].rsplit(": ", 1)[1] for g in section["gpus"][:4]]
    assert codes == ["NVML_ERROR_RESET_REQUIRED", "NVML_ERROR_CORRUPTED_INFOROM",
                     "NVML_ERROR_INSUFFICIENT_POWER", "NVML_ERROR_IRQ_ISSUE"]
    assert {g["error"]["class"] for g in section["gpus"][:4]} == {"gpu_fatal"}
    for g in section["gpus"][:4]:
        assert g["name"] == "NVIDIA H100 80GB HBM3" and g["compute_capability"] == "9.0"
    assert section["gpus"][0]["ecc"]["mode_current"] is True  # only the ECC counters failed
    assert [g["error"] for g in section["gpus"][4:]] == [None] * 4


def test_a_failed_name_call_keeps_the_other_facts():
    gpu = scenario_snapshot("name_call_failed")["gpus"][1]
    assert gpu["name"] == {"unavailable": "NVML error (Unknown Error): NVML_ERROR_UNKNOWN"}
    healthy = scenario_snapshot("healthy_8xh100")["gpus"][1]
    assert {k: v for k, v in gpu.items() if k != "name"} == {
        k: v for k, v in healthy.items() if k != "name"}


def test_temperature_uses_the_v_call_and_falls_back():
    section, backend = probe_scenario(load_scenario("healthy_8xh100"))
    assert "nvmlDeviceGetTemperatureV" in backend.calls
    assert "nvmlDeviceGetTemperature" not in backend.calls
    section, backend = probe_scenario(load_scenario("function_not_supported"))
    assert section["gpus"][0]["temperature_c"] == 41
    assert "nvmlDeviceGetTemperature" in backend.calls


def test_a_hung_gpu_costs_about_a_second_and_keeps_the_others():
    backend = fake_nvml.fake("gpu_hung")
    try:
        start = __import__("time").monotonic()
        section = nvidia.probe(nvml=backend, process_name=backend.process_name)
        took = __import__("time").monotonic() - start
    finally:
        backend.release.set()
    assert took < nvidia.CALL_TIMEOUT_S + 1.5
    hung = section["gpus"][2]
    assert hung["error"]["class"] == "gpu_hung"
    assert "GPU 2: nvmlDeviceGetTotalEccErrors did not answer" in hung["error"]["message"]
    assert hung["name"] == "NVIDIA H100 80GB HBM3"  # read before the hang
    assert hung["pcie"]["unavailable"].startswith("not read: GPU 2: nvmlDeviceGetTotalEccErrors")
    healthy = scenario_snapshot("healthy_8xh100")["gpus"]
    assert [g for i, g in enumerate(section["gpus"]) if i != 2] == [
        g for i, g in enumerate(healthy) if i != 2]
    assert backend.shutdowns == 0  # never shut NVML down under a hung call


def test_a_slow_gpu_stops_at_its_budget_and_keeps_the_others():
    start = __import__("time").monotonic()
    section = scenario_snapshot("gpu_slow")
    took = __import__("time").monotonic() - start
    assert took < 4.5  # was 23 s for 0.5 s per call (issue 13); budget 2 s + one call
    slow = section["gpus"][5]
    assert slow["error"]["class"] == "gpu_slow"
    assert slow["name"] == "NVIDIA H100 80GB HBM3"
    assert snapshot.is_na(slow["ecc"])
    assert sum(g["error"] is not None for g in section["gpus"]) == 1


def test_the_outer_deadline_keeps_what_was_read():
    state: dict = {}
    backend = fake_nvml.fake("gpu_hung")
    try:
        section = nvidia.probe(nvml=backend, process_name=backend.process_name, state=state)
    finally:
        backend.release.set()
    partial = copy.deepcopy(state["section"])
    del partial["gpus"][3:]  # as if the caller stopped waiting during GPU 3
    out = nvidia.hung(20.0, {"section": partial})
    assert out["gpus"][:3] == section["gpus"][:3]
    assert [g["error"]["class"] for g in out["gpus"][3:]] == ["gpu_hung"] * 5
    assert "not reached within the NVML deadline of 20 s" in out["gpus"][7]["error"]["message"]
    assert nvidia.hung(20.0)["nvml"]["status"] == "unknown_error"


def test_nvlink_error_counters_and_fabric_info():
    scenario = load_scenario("healthy_8xh100")
    scenario["gpus"][0]["nvlink"]["errors"] = {"3": {"crc_flit": 120, "replay": 2}, "4": {"replay": 1}}
    scenario["gpus"][1]["fabric"] = {"state": 1, "status": pynvml.NVML_ERROR_NOT_SUPPORTED}
    section, _ = probe_scenario(scenario)
    assert section["gpus"][0]["nvlink"]["errors"] == {"replay": 3, "recovery": 0, "crc_flit": 120,
                                                      "crc_data": 0}
    assert section["gpus"][0]["fabric"] == {"state": "completed", "status": "success"}
    assert section["gpus"][1]["fabric"] == {"state": "not_started",
                                            "status": "NVML_ERROR_NOT_SUPPORTED"}
    assert gpu0("rtx5090")["fabric"]["unavailable"].startswith("no NVSwitch fabric")


def test_retired_pages_count_single_and_double_bit():
    scenario = load_scenario("v100")
    scenario["gpus"][0]["retired_pages"] = {"pending": 0, "double_bit": 1, "single_bit": 4}
    assert probe_scenario(scenario)[0]["gpus"][0]["retired_pages"] == {
        "pending": False, "double_bit": 1, "single_bit": 4}


# -- the real NVML (marked gpu: deselected by default; run with -m gpu on a GPU machine) ----


@pytest.mark.gpu
def test_real_nvml_probe_has_the_contract_shape_and_new_facts():
    section = nvidia.probe()
    assert section["nvml"]["status"] == "ok", section["nvml"]
    assert isinstance(section["gpu_count"], int) and section["gpu_count"] >= 1
    for gpu in section["gpus"]:
        assert set(gpu) == GPU_KEYS
        assert gpu["error"] is None or gpu["error"]["class"] == "not_allocated", gpu["error"]
        if gpu["error"] is None:
            assert isinstance(gpu["temperature_c"], int)
            assert isinstance(gpu["retired_pages"], dict) or snapshot.is_na(gpu["retired_pages"])
            fabric = gpu["fabric"]
            assert snapshot.is_na(fabric) or fabric["state"] in nvidia.FABRIC_STATES.values()
            nv = gpu["nvlink"]
            if isinstance(nv, dict) and not snapshot.is_na(nv) and nv["up"]:
                errors = nv["errors"]
                assert snapshot.is_na(errors) or set(errors) == {"replay", "recovery", "crc_flit",
                                                                 "crc_data"}
    json.dumps(section)


@pytest.mark.gpu
def test_real_nvml_probe_stays_within_its_budgets():
    import time

    start = time.monotonic()
    section = nvidia.probe()
    took = time.monotonic() - start
    slow = [g["error"] for g in section["gpus"] if g["error"] and g["error"]["class"] in ("gpu_slow", "gpu_hung")]
    assert not slow, slow  # a healthy GPU answers well within the per-GPU budget
    assert took < nvidia.GPU_BUDGET_S * max(1, len(section["gpus"])), took


@pytest.mark.gpu
def test_real_kernel_log_and_fabric_probes_never_raise():
    from envcheck.probes import fabric, kernel_log

    log = kernel_log.probe()
    assert log["readable"] in (True, False) and (log["readable"] or log["error"])
    fab = fabric.probe()
    assert isinstance(fab["nvswitches"], list)
    json.dumps([log, fab])
