"""Probe: nvidia. The driver and every GPU's identity and health, through NVML only.

All NVML access goes through :mod:`envcheck.probes._nvml` (the one choke point). Shape of the
``nvidia`` section (see tests/fixtures/snapshots/example_8xh100.json, the contract)::

    nvml {status, error}, driver_version, cuda_driver_version ("12.4"), nvml_version,
    gpu_count, gpus[]: index, name, uuid, pci_bus_id, compute_capability ("9.0"),
      memory {total_bytes, used_bytes}, ecc {mode_current, mode_pending, volatile_uncorrected,
      aggregate_uncorrected, volatile_corrected}, retired_pages {pending, count},
      row_remap {correctable, uncorrectable, pending, failure}, temperature_c,
      power {draw_w, limit_w}, clocks {sm_mhz, sm_max_mhz, mem_mhz, mem_max_mhz},
      throttle_reasons [names], pcie {gen_current, gen_max, width_current, width_max},
      nvlink {up, down, total}, mig_mode {current, pending}, persistence_mode,
      compute_mode, processes [{pid, name, used_bytes}], error (null | {class, message})

Any value may be ``na("<why>: NVML_ERROR_...")``. One GPU failing never affects the others.
"""

from __future__ import annotations

from typing import Any, Callable

from envcheck.probes import _nvml
from envcheck.snapshot import na

# Clock event ("throttle") reasons: snake_case name, pynvml constant suffix, bit from nvml.h.
# The backend's constants are preferred; the bits are the fallback for old bindings.
THROTTLE_REASONS: tuple[tuple[str, str, int], ...] = (
    ("gpu_idle", "GpuIdle", 0x1),
    ("applications_clocks_setting", "ApplicationsClocksSetting", 0x2),
    ("sw_power_cap", "SwPowerCap", 0x4),
    ("hw_slowdown", "HwSlowdown", 0x8),
    ("sync_boost", "SyncBoost", 0x10),
    ("sw_thermal_slowdown", "SwThermalSlowdown", 0x20),
    ("hw_thermal_slowdown", "HwThermalSlowdown", 0x40),
    ("hw_power_brake_slowdown", "HwPowerBrakeSlowdown", 0x80),
    ("display_clock_setting", "DisplayClockSetting", 0x100),
    ("board_limit", "BoardLimit", 0x200),
    ("reliability", "Reliability", 0x400),
)

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}

# Field order of a GPU entry (everything except index and error is a metric).
GPU_METRICS = (
    "name", "uuid", "pci_bus_id", "compute_capability", "memory", "ecc", "retired_pages",
    "row_remap", "temperature_c", "power", "clocks", "throttle_reasons", "pcie", "nvlink",
    "mig_mode", "persistence_mode", "compute_mode", "processes",
)

ProcessNamer = Callable[[int], "str | None"]


def probe(nvml: Any = None, process_name: ProcessNamer | None = None) -> dict:
    """The ``nvidia`` section. ``nvml``: a pynvml-like backend (default: the real pynvml);
    ``process_name``: pid -> name (default: psutil; tests inject the fake's names)."""
    namer = process_name or _psutil_name
    with _nvml.open_session(nvml) as (session, failure):
        if session is None:
            return _without_nvml(failure)
        return _with_nvml(session, namer)


def hung(timeout: float) -> dict:
    """The section when NVML did not answer in time. NVML calls run in-process and cannot be
    interrupted; a wedged GPU (Xid 79, fallen off the bus) can block them for minutes, so the
    caller runs the probe in a daemon thread and reports this instead of waiting forever."""
    return _without_nvml(_nvml.Failure(
        _nvml.UNKNOWN_ERROR, "NVML_TIMEOUT",
        f"NVML did not answer within {timeout:g} s (a GPU may be hung or fallen off the bus; "
        "look for Xid errors in `sudo dmesg`)",
    ))


def _without_nvml(failure: _nvml.Failure) -> dict:
    missing = failure.na("NVML did not start")
    return {
        "nvml": {"status": failure.cls, "error": failure.to_error()},
        "driver_version": missing,
        "cuda_driver_version": missing,
        "nvml_version": missing,
        "gpu_count": missing,
        "gpus": [],
    }


def _with_nvml(s: _nvml.Session, namer: ProcessNamer) -> dict:
    cuda, failure = s.call_first(
        ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
    )
    count, count_failure = s.call("nvmlDeviceGetCount")
    if count_failure is None and not isinstance(count, int):
        count_failure = _nvml.Failure(
            _nvml.UNKNOWN_ERROR, "bad value", f"NVML returned a GPU count of {count!r}"
        )
    gpus = [] if count_failure else [_isolated_gpu(s, i, namer) for i in range(count)]
    return {
        "nvml": {"status": "ok", "error": None},
        "driver_version": _text(s.query("nvmlSystemGetDriverVersion")),
        "cuda_driver_version": failure.na() if failure else format_cuda_version(cuda),
        "nvml_version": _text(s.query("nvmlSystemGetNVMLVersion")),
        "gpu_count": count_failure.na() if count_failure else int(count),
        "gpus": gpus,
    }


def format_cuda_version(value: Any) -> Any:
    """NVML encodes CUDA 12.4 as 12040 (1000*major + 10*minor)."""
    if not isinstance(value, int) or value <= 0:
        return na(f"NVML reported an unusable CUDA driver version {value!r}")
    return f"{value // 1000}.{(value % 1000) // 10}"


def decode_throttle_reasons(mask: int, backend: Any = None) -> list[str]:
    """Bitmask -> snake_case names, in bit order; unknown bits become ``unknown_0x...``."""
    names, seen = [], 0
    for name, suffix, bit in THROTTLE_REASONS:
        bit = getattr(backend, "nvmlClocksEventReason" + suffix, None) or getattr(
            backend, "nvmlClocksThrottleReason" + suffix, bit
        )
        seen |= bit
        if mask & bit:
            names.append(name)
    rest = mask & ~seen
    if rest:
        names.append(f"unknown_{rest:#x}")
    return names


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class _Gpu:
    """Collects one GPU's metrics; remembers whether any call said the GPU is lost."""

    def __init__(self, s: _nvml.Session, handle: Any):
        self.s, self.h, self.lost = s, handle, None

    def call(self, fn_name: str, *args: Any, **kwargs: Any) -> tuple[Any, _nvml.Failure | None]:
        value, failure = self.s.call(fn_name, self.h, *args, **kwargs)
        if failure is not None and failure.cls == _nvml.GPU_LOST:
            self.lost = self.lost or failure
        return value, failure

    def query(self, fn_name: str, *args: Any) -> Any:
        value, failure = self.call(fn_name, *args)
        return failure.na() if failure else value


def _isolated_gpu(s: _nvml.Session, index: int, namer: ProcessNamer) -> dict:
    """One GPU's entry; a surprise while reading it (an odd value) spoils only this entry."""
    try:
        return _gpu(s, index, namer)
    except Exception as exc:  # noqa: BLE001 - one GPU failing must not affect the others
        failure = _nvml.Failure(
            _nvml.UNKNOWN_ERROR, type(exc).__name__, f"envcheck could not read this GPU ({exc})"
        )
        entry = {key: failure.na() for key in GPU_METRICS}
        entry.update(index=index, error=failure.to_error())
        return dict(sorted(entry.items()))


def _gpu(s: _nvml.Session, index: int, namer: ProcessNamer) -> dict:
    entry: dict[str, Any] = {"index": index}
    handle, failure = s.call("nvmlDeviceGetHandleByIndex", index)
    if failure is None:
        g = _Gpu(s, handle)
        name, failure = g.call("nvmlDeviceGetName")
    if failure is not None:
        # No handle, or the very first call failed (a lost GPU typically answers here): no
        # metric can be trusted, so every one is na() with that reason.
        entry.update({key: failure.na() for key in GPU_METRICS})
        entry["error"] = failure.to_error()
        return dict(sorted(entry.items()))
    entry["name"] = _text(name)
    entry.update(_metrics(g, namer))
    entry["error"] = g.lost.to_error() if g.lost else None
    return dict(sorted(entry.items()))


def _metrics(g: _Gpu, namer: ProcessNamer) -> dict:
    s = g.s
    out: dict[str, Any] = {"uuid": _text(g.query("nvmlDeviceGetUUID"))}

    pci, failure = g.call("nvmlDeviceGetPciInfo")
    out["pci_bus_id"] = failure.na() if failure else _text(getattr(pci, "busId", None))

    cc, failure = g.call("nvmlDeviceGetCudaComputeCapability")
    major = None
    if failure:
        out["compute_capability"] = failure.na()
    else:
        major = int(cc[0])
        out["compute_capability"] = f"{int(cc[0])}.{int(cc[1])}"

    out["memory"] = _memory(g)
    out["ecc"] = _ecc(g)
    out["row_remap"] = _row_remap(g, major)
    remaps = isinstance(out["row_remap"], dict) and "unavailable" not in out["row_remap"]
    out["retired_pages"] = _retired_pages(g, major, remaps)
    out["temperature_c"] = g.query("nvmlDeviceGetTemperature", s.const("NVML_TEMPERATURE_GPU", 0))
    out["power"] = {
        "draw_w": _watts(g.call("nvmlDeviceGetPowerUsage")),
        "limit_w": _watts(g.call("nvmlDeviceGetEnforcedPowerLimit")),
    }
    sm, mem = s.const("NVML_CLOCK_SM", 1), s.const("NVML_CLOCK_MEM", 2)
    out["clocks"] = {
        "sm_mhz": g.query("nvmlDeviceGetClockInfo", sm),
        "sm_max_mhz": g.query("nvmlDeviceGetMaxClockInfo", sm),
        "mem_mhz": g.query("nvmlDeviceGetClockInfo", mem),
        "mem_max_mhz": g.query("nvmlDeviceGetMaxClockInfo", mem),
    }
    # EventReasons is the current name; ThrottleReasons is the same call on older drivers.
    mask, failure = s.call_first(
        ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"),
        g.h,
    )
    if failure and failure.cls == _nvml.GPU_LOST:
        g.lost = g.lost or failure
    out["throttle_reasons"] = failure.na() if failure else decode_throttle_reasons(int(mask), s.backend)
    out["pcie"] = {
        "gen_current": g.query("nvmlDeviceGetCurrPcieLinkGeneration"),
        # "Max" is what this device *and* its slot can reach (NVML API reference,
        # nvmlDeviceGetMaxPcieLinkGeneration/Width), so a gen4 slot under a gen5 GPU reports 4
        # here and current < max means the link trained below what it can do. Idle GPUs lower
        # the *generation* to save power, so only a loaded GPU's gen is conclusive.
        "gen_max": g.query("nvmlDeviceGetMaxPcieLinkGeneration"),
        "width_current": g.query("nvmlDeviceGetCurrPcieLinkWidth"),
        "width_max": g.query("nvmlDeviceGetMaxPcieLinkWidth"),
    }
    out["nvlink"] = _nvlink(g)
    out["mig_mode"] = _mig(g)
    out["persistence_mode"] = _enabled(g.call("nvmlDeviceGetPersistenceMode"), s)
    mode, failure = g.call("nvmlDeviceGetComputeMode")
    out["compute_mode"] = failure.na() if failure else COMPUTE_MODES.get(mode, f"unknown_{mode}")
    out["processes"] = _processes(g, namer)
    return out


def _watts(result: tuple[Any, _nvml.Failure | None]) -> Any:
    value, failure = result
    return failure.na() if failure else float(value) / 1000.0  # NVML reports milliwatts


def _enabled(result: tuple[Any, _nvml.Failure | None], s: _nvml.Session) -> Any:
    value, failure = result
    return failure.na() if failure else value == s.const("NVML_FEATURE_ENABLED", 1)


def _memory(g: _Gpu) -> Any:
    # v2 separates driver-reserved memory from "used" (what processes hold), as nvidia-smi
    # shows it since driver 510; v1's "used" includes the reservation.
    v2 = g.s.const("nvmlMemory_v2")
    failure = None
    if v2 is not None:
        info, failure = g.call("nvmlDeviceGetMemoryInfo", version=v2)
    if v2 is None or (failure is not None and failure.function_missing):
        info, failure = g.call("nvmlDeviceGetMemoryInfo")
    if failure:
        return failure.na()
    return {"total_bytes": int(info.total), "used_bytes": int(info.used)}


def _ecc(g: _Gpu) -> Any:
    s = g.s
    modes, failure = g.call("nvmlDeviceGetEccMode")
    if failure:
        no_ecc = failure.cls == _nvml.NOT_SUPPORTED
        return failure.na("not supported on this GPU (no ECC memory) or driver" if no_ecc else None)
    on = s.const("NVML_FEATURE_ENABLED", 1)
    unc = s.const("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
    cor = s.const("NVML_MEMORY_ERROR_TYPE_CORRECTED", 0)
    vol, agg = s.const("NVML_VOLATILE_ECC", 0), s.const("NVML_AGGREGATE_ECC", 1)
    return {
        "mode_current": modes[0] == on,
        "mode_pending": modes[1] == on,
        "volatile_uncorrected": g.query("nvmlDeviceGetTotalEccErrors", unc, vol),
        "aggregate_uncorrected": g.query("nvmlDeviceGetTotalEccErrors", unc, agg),
        "volatile_corrected": g.query("nvmlDeviceGetTotalEccErrors", cor, vol),
    }


def _retired_pages(g: _Gpu, major: int | None, remaps: bool) -> Any:
    pending, failure = g.call("nvmlDeviceGetRetiredPagesPendingStatus")
    if failure:
        why = None
        if failure.cls == _nvml.NOT_SUPPORTED:
            why = "not supported on this GPU"
            if remaps and major is not None and major >= 8:
                why += " (Ampere and newer use row remapping)"
        return failure.na(why)
    cause = g.s.const("NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR", 1)
    pages, failure = g.call("nvmlDeviceGetRetiredPages", cause)
    return {
        "pending": pending == g.s.const("NVML_FEATURE_ENABLED", 1),
        "count": failure.na() if failure else len(pages),
    }


def _row_remap(g: _Gpu, major: int | None) -> Any:
    rows, failure = g.call("nvmlDeviceGetRemappedRows")
    if failure:
        why = None
        if failure.cls == _nvml.NOT_SUPPORTED:
            why = "not supported on this GPU"
            if major is not None and major < 8:
                why += " (row remapping is Ampere and newer; older GPUs retire pages)"
        return failure.na(why)
    correctable, uncorrectable, pending, failed = rows
    return {
        "correctable": int(correctable),
        "uncorrectable": int(uncorrectable),
        "pending": bool(pending),
        "failure": bool(failed),
    }


def _nvlink(g: _Gpu) -> Any:
    """Count links until NVML says there are no more (NOT_SUPPORTED / INVALID_ARGUMENT).

    NVML_NVLINK_MAX_LINKS is a bound over all architectures (36 in nvidia-ml-py 13); the driver
    rejects indices past the GPU's own link count with INVALID_ARGUMENT, e.g. 18..35 on GB200
    (NVIDIA/TensorRT-LLM#17060). Inactive links (a PCIe card without a bridge) count as down.
    """
    up = down = 0
    for link in range(int(g.s.const("NVML_NVLINK_MAX_LINKS", 18))):
        state, failure = g.call("nvmlDeviceGetNvLinkState", link)
        if failure is None:
            if state == g.s.const("NVML_FEATURE_ENABLED", 1):
                up += 1
            else:
                down += 1
            continue
        end = failure.cls == _nvml.NOT_SUPPORTED or failure.code_name == "NVML_ERROR_INVALID_ARGUMENT"
        if link == 0:
            return failure.na("no NVLink on this GPU" if end else None)
        if not end:
            return failure.na(f"link {link} could not be read")
        break
    return {"up": up, "down": down, "total": up + down}


def _mig(g: _Gpu) -> Any:
    modes, failure = g.call("nvmlDeviceGetMigMode")
    if failure:
        return failure.na()
    on = g.s.const("NVML_DEVICE_MIG_ENABLE", 1)
    return {"current": modes[0] == on, "pending": modes[1] == on}


def _processes(g: _Gpu, namer: ProcessNamer) -> Any:
    # The unversioned pynvml call maps to _v3; drivers older than that symbol need _v2.
    procs, failure = g.s.call_first(
        ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"), g.h
    )
    if failure:
        if failure.cls == _nvml.GPU_LOST:
            g.lost = g.lost or failure
        return failure.na()
    out = []
    for p in procs:
        pid = int(p.pid)
        used = getattr(p, "usedGpuMemory", None)
        out.append({
            "pid": pid,
            "name": _safe_name(namer, pid),
            "used_bytes": int(used) if used is not None else na("not reported by the driver"),
        })
    return out


def _safe_name(namer: ProcessNamer, pid: int) -> str | None:
    try:
        return namer(pid)
    except Exception:  # noqa: BLE001 - a name is a nicety; never worth a failure
        return None


def _psutil_name(pid: int) -> str | None:
    # NVML reports PIDs of the host's namespace; inside a container the name may be missing.
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001 - gone, other namespace, no permission
        return None
