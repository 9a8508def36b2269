"""Watch the GPUs through NVML while a check stresses them (issue 16).

DCGM's diagnostics fail a test when, during the run, a double-bit ECC error, an XID, a PCIe
replay burst or a pending row remap appears, and record clock-event (throttle) reasons,
peak temperature and power (NVIDIA/DCGM modules/health/DcgmHealthWatch.cpp). envcheck read
NVML once before its checks; :class:`Watcher` samples during each GPU check instead: a
daemon thread in the runner (the parent, torch-free) takes a sample every ``interval`` s,
a few Hz, and one last sample when the check ends. It reads NVML only through
:mod:`envcheck.probes._nvml` (every call classified, none raises).

Per GPU and check it keeps: the deltas of the volatile SBE/DBE counts and the PCIe replay
counter, row-remap pending/failure at the end, XIDs (NVML ``nvmlEventTypeXidCriticalError``
events, when the driver lets this user register them), seconds under each clock-event
reason, peak GPU and memory temperature, peak power and the limit, SM clock min/max, and
``events``: which counter changed, on which GPU, how many seconds into the check; and
``trace``, the samples over time for the HTML report (:class:`_Trace`: at most
:data:`TRACE_POINTS` points per GPU per check, however long the check runs).
Judging is :func:`envcheck.validate.certify.judge_watch`; :func:`finish` applies it to the
check's result. On a CPU run, or without NVML, the watcher says why it is not available.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from envcheck.probes import _nvml

# clock-event reason constant -> short name (pynvml names; "Throttle" is the pre-R535 alias)
REASONS = {
    "nvmlClocksEventReasonHwSlowdown": "hw_slowdown",
    "nvmlClocksEventReasonHwThermalSlowdown": "hw_thermal_slowdown",
    "nvmlClocksEventReasonSwThermalSlowdown": "sw_thermal_slowdown",
    "nvmlClocksEventReasonHwPowerBrakeSlowdown": "hw_power_brake",
    "nvmlClocksEventReasonSwPowerCap": "sw_power_cap",
}
_XID_EVENT = "nvmlEventTypeXidCriticalError"

TRACE_POINTS = 240  # per GPU per check: a 30 min burn-in at 4 Hz (7200 samples) keeps 225 points
TRACE_KEYS = ("t", "temp_c", "mem_temp_c", "power_w", "power_limit_w", "sm_clock_mhz", "events")


def _hi(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _lo(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


class _Trace:
    """A bounded, columnar trace of one GPU's samples (stride doubling with merged buckets).

    Each point stands for ``stride`` consecutive samples: ``t`` is the time of the bucket's last
    sample, temperatures and power are the bucket's maxima, the SM clock its minimum (a dip or a
    spike survives downsampling: they are what the check is judged by), the power limit its last
    value and ``events`` the union of the clock-event reasons active in any of its samples.
    When the columns reach :data:`TRACE_POINTS`, adjacent points are merged pairwise and the
    stride doubles, so the points stay evenly spaced and at most ``TRACE_POINTS``. Per sample it
    only updates a few running values; a list grows by one point per completed bucket."""

    __slots__ = ("cols", "stride", "_n", "_acc")

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {k: [] for k in TRACE_KEYS}
        self.stride = 1
        self._n = 0
        self._acc: list[Any] = [None] * len(TRACE_KEYS)

    def add(self, at: float, v: dict[str, Any]) -> None:
        a = self._acc
        power = v.get("power_w")
        power = None if power is None else round(power, 1)
        reasons = v.get("reasons") or []
        if self._n == 0:
            a[:] = [at, v.get("temp_c"), v.get("mem_temp_c"), power, v.get("power_limit_w"),
                    v.get("sm_clock_mhz"), sorted(reasons)]
        else:
            a[0] = at
            a[1], a[2], a[3] = _hi(a[1], v.get("temp_c")), _hi(a[2], v.get("mem_temp_c")), _hi(a[3], power)
            if v.get("power_limit_w") is not None:
                a[4] = v["power_limit_w"]
            a[5] = _lo(a[5], v.get("sm_clock_mhz"))
            for r in reasons:
                if r not in a[6]:
                    a[6] = sorted(a[6] + [r])
        self._n += 1
        if self._n >= self.stride:
            self._push(a)
            self._n = 0

    def _push(self, point: list[Any]) -> None:
        for key, value in zip(TRACE_KEYS, point):
            self.cols[key].append(value)
        if len(self.cols["t"]) >= TRACE_POINTS:
            self._halve()

    def _halve(self) -> None:
        merge = {"t": lambda a, b: b, "temp_c": _hi, "mem_temp_c": _hi, "power_w": _hi,
                 "power_limit_w": lambda a, b: a if b is None else b, "sm_clock_mhz": _lo,
                 "events": lambda a, b: sorted(set(a) | set(b))}
        for key, col in self.cols.items():
            fn = merge[key]
            col[:] = [fn(col[i], col[i + 1]) if i + 1 < len(col) else col[i] for i in range(0, len(col), 2)]
        self.stride *= 2

    def columns(self) -> dict[str, Any]:
        """The trace with the bucket in progress as its last point (JSON-ready copies)."""
        out: dict[str, Any] = {k: list(col) for k, col in self.cols.items()}
        if self._n:
            for key, value in zip(TRACE_KEYS, self._acc):
                out[key].append(value)
        out["events"] = [list(e) for e in out["events"]]
        out["stride"] = self.stride
        return out


def visible_indices(ndevices: int, env: dict[str, str] | None = None) -> list[int | str]:
    """NVML indices (or UUIDs) of the CUDA devices a run uses (pure).

    CUDA_VISIBLE_DEVICES picks and orders devices; integer entries are taken as NVML indices
    (true when CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML's order; NVIDIA CUDA C Programming Guide,
    "CUDA Environment Variables"), UUID entries are matched by UUID."""
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None or not raw.strip():
        return list(range(ndevices))
    out: list[int | str] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        out.append(int(item) if item.isdigit() else item)
    return out[:ndevices]


class _Gpu:
    def __init__(self, index: int, handle: Any, name: str | None, uuid: str | None):
        self.index, self.handle, self.name, self.uuid = index, handle, name, uuid
        self.base: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.peaks: dict[str, Any] = {}
        self.reason_samples: dict[str, int] = {}
        self.reason_first: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.xids: list[dict[str, Any]] = []
        self.unavailable: dict[str, str] = {}
        self.pcie: tuple[int | None, int | None] = (None, None)
        self.trace = _Trace()


class Watcher:
    """Samples NVML in a thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, indices: list[int | str], *, backend: Any = None, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        self.indices = indices
        self.backend = backend
        self.interval = float(interval)
        self.clock = clock
        self._ctx = None
        self.session: _nvml.Session | None = None
        self.failure: str | None = None
        self.gpus: list[_Gpu] = []
        self._events = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.samples = 0

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> Watcher:
        self._ctx = _nvml.open_session(self.backend)
        session, failure = self._ctx.__enter__()
        if failure is not None:
            self.failure = f"NVML is not usable: {failure.message}"
            self._ctx.__exit__(None, None, None)
            self._ctx = None
            return self
        self.session = session
        self._open_gpus()
        if not self.gpus:
            self.failure = self.failure or "NVML lists none of the GPUs this run uses"
            self.close()
            return self
        self._register_xids()
        self._t0 = self.clock()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="envcheck-nvml-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """End sampling (one last sample) and return the summary (see the module doc)."""
        if self.session is None:
            return {"available": False, "reason": self.failure or "NVML is not usable"}
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 4 * self.interval))
        self._drain_xids(0)
        self._sample()
        out = self.summary()
        self.close()
        return out

    def close(self) -> None:
        if self._events is not None and self.session is not None:
            self.session.call("nvmlEventSetFree", self._events)
            self._events = None
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None
        self.session = None

    # -- setup --------------------------------------------------------------------------
    def _open_gpus(self) -> None:
        s = self.session
        count, failure = s.call("nvmlDeviceGetCount")
        if failure is not None:
            self.failure = f"nvmlDeviceGetCount: {failure.message}"
            return
        handles = []
        for i in range(int(count)):
            h, failure = s.call("nvmlDeviceGetHandleByIndex", i)
            if failure is None:
                uuid, _ = s.call("nvmlDeviceGetUUID", h)
                handles.append((i, h, uuid))
        for want in self.indices:
            for i, h, uuid in handles:
                if want == i or (isinstance(want, str) and uuid and str(uuid).startswith(want)):
                    name, _ = s.call("nvmlDeviceGetName", h)
                    g = _Gpu(i, h, name, uuid)
                    gen, _ = s.call("nvmlDeviceGetCurrPcieLinkGeneration", h)
                    width, _ = s.call("nvmlDeviceGetCurrPcieLinkWidth", h)
                    g.pcie = (gen, width)
                    self.gpus.append(g)

    def _register_xids(self) -> None:
        s = self.session
        kind = s.const(_XID_EVENT)
        events, failure = s.call("nvmlEventSetCreate")
        if failure is not None or kind is None:
            why = failure.message if failure else "this nvidia-ml-py has no XID event type"
            for g in self.gpus:
                g.unavailable["xid"] = why
            return
        for g in self.gpus:
            _, failure = s.call("nvmlDeviceRegisterEvents", g.handle, kind, events)
            if failure is not None:
                g.unavailable["xid"] = failure.message
        self._events = events

    # -- sampling -----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            t = self.clock()
            if self._events is not None:
                self._drain_xids(int(self.interval * 1000))
            else:
                self._stop.wait(self.interval)
            if self._stop.is_set():
                break
            self._sample()
            # keep the rate when the XID wait returned early
            rest = self.interval - (self.clock() - t)
            if rest > 0 and self._events is not None:
                self._stop.wait(rest)

    def _drain_xids(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for XID events; record every one that arrives."""
        if self._events is None:
            return
        for _ in range(64):  # bounded: a storm of events must not pin the thread
            data, failure = self.session.call_first(("nvmlEventSetWait_v2", "nvmlEventSetWait"),
                                                    self._events, timeout_ms)
            if failure is not None:
                return  # NVML_ERROR_TIMEOUT: nothing happened
            timeout_ms = 0
            xid = int(getattr(data, "eventData", 0) or 0)
            # match by UUID: pynvml hands back a fresh ctypes handle, which compares by identity
            uuid, _ = self.session.call("nvmlDeviceGetUUID", getattr(data, "device", None))
            for g in self.gpus:
                if uuid is not None and uuid == g.uuid:
                    at = round(self.clock() - self._t0, 3)
                    g.xids.append({"xid": xid, "t": at})
                    g.events.append({"t": at, "counter": "xid", "value": xid})

    def _read(self, g: _Gpu) -> dict[str, Any]:
        s = self.session
        b = s.backend
        v: dict[str, Any] = {}

        def get(key: str, fn: str, *args: Any) -> Any:
            value, failure = s.call(fn, *args)
            if failure is not None:
                g.unavailable.setdefault(key, failure.message)
                return None
            return value

        unc, cor, vol = (s.const("NVML_MEMORY_ERROR_TYPE_UNCORRECTED"), s.const("NVML_MEMORY_ERROR_TYPE_CORRECTED"),
                         s.const("NVML_VOLATILE_ECC"))
        v["dbe_volatile"] = get("dbe_volatile", "nvmlDeviceGetTotalEccErrors", g.handle, unc, vol)
        v["sbe_volatile"] = get("sbe_volatile", "nvmlDeviceGetTotalEccErrors", g.handle, cor, vol)
        v["pcie_replay"] = get("pcie_replay", "nvmlDeviceGetPcieReplayCounter", g.handle)
        rows = get("row_remap", "nvmlDeviceGetRemappedRows", g.handle)
        if rows is not None:
            v["remap_pending"], v["remap_failure"] = bool(rows[2]), bool(rows[3])
        reasons, failure = s.call_first(("nvmlDeviceGetCurrentClocksEventReasons",
                                         "nvmlDeviceGetCurrentClocksThrottleReasons"), g.handle)
        if failure is not None:
            g.unavailable.setdefault("clock_events", failure.message)
        else:
            v["reasons"] = [short for const, short in REASONS.items()
                            if int(reasons) & int(getattr(b, const, 0) or 0)]
        v["temp_c"] = get("temp_c", "nvmlDeviceGetTemperature", g.handle, s.const("NVML_TEMPERATURE_GPU"))
        v["mem_temp_c"] = self._memory_temp(g)
        power = get("power_w", "nvmlDeviceGetPowerUsage", g.handle)
        v["power_w"] = None if power is None else power / 1000.0
        limit = get("power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", g.handle)
        v["power_limit_w"] = None if limit is None else limit / 1000.0
        v["sm_clock_mhz"] = get("sm_clock_mhz", "nvmlDeviceGetClockInfo", g.handle, s.const("NVML_CLOCK_SM"))
        return v

    def _memory_temp(self, g: _Gpu) -> float | None:
        """HBM temperature (field NVML_FI_DEV_MEMORY_TEMP); None where the GPU lacks it."""
        if "mem_temp_c" in g.unavailable:
            return None
        fid = self.session.const("NVML_FI_DEV_MEMORY_TEMP")
        values, failure = self.session.call("nvmlDeviceGetFieldValues", g.handle, [fid])
        if failure is not None or not values:
            g.unavailable["mem_temp_c"] = failure.message if failure else "no field value"
            return None
        fv = values[0]
        if int(getattr(fv, "nvmlReturn", 0) or 0) != 0:
            g.unavailable["mem_temp_c"] = f"field value error {fv.nvmlReturn}"
            return None
        val = getattr(fv, "value", None)
        # c_nvmlValue_t is a union: read the member that valueType names (nvml.h nvmlValueType_t)
        kinds = {self.session.const(f"NVML_VALUE_TYPE_{k}"): attr for k, attr in (
            ("DOUBLE", "dVal"), ("UNSIGNED_INT", "uiVal"), ("UNSIGNED_LONG", "ulVal"),
            ("UNSIGNED_LONG_LONG", "ullVal"), ("SIGNED_LONG_LONG", "sllVal"), ("SIGNED_INT", "siVal"))}
        attr = kinds.get(getattr(fv, "valueType", None), "uiVal")
        return float(getattr(val, attr)) if hasattr(val, attr) else None

    def _sample(self, first: bool = False) -> None:
        at = round(self.clock() - self._t0, 3)
        self.samples += 1
        for g in self.gpus:
            v = self._read(g)
            if first:
                g.base = dict(v)
            for key in ("dbe_volatile", "sbe_volatile", "pcie_replay", "remap_pending", "remap_failure"):
                old, new = g.last.get(key), v.get(key)
                if not first and new is not None and old is not None and new != old:
                    g.events.append({"t": at, "counter": key, "from": old, "to": new})
            for reason in v.get("reasons") or []:
                g.reason_samples[reason] = g.reason_samples.get(reason, 0) + 1
                g.reason_first.setdefault(reason, at)
            for key, peak in (("temp_c", max), ("mem_temp_c", max), ("power_w", max), ("sm_clock_mhz", max)):
                if v.get(key) is not None:
                    g.peaks[key] = v[key] if key not in g.peaks else peak(g.peaks[key], v[key])
            if v.get("sm_clock_mhz") is not None:
                g.peaks["sm_clock_mhz_min"] = min(g.peaks.get("sm_clock_mhz_min", v["sm_clock_mhz"]),
                                                  v["sm_clock_mhz"])
            g.trace.add(at, v)
            g.last = {k: val for k, val in v.items() if val is not None} | {"power_limit_w": v.get("power_limit_w")}

    # -- result -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        seconds = round(self.clock() - self._t0, 3)
        gpus = []
        for g in self.gpus:
            def delta(key: str, g: _Gpu = g) -> int | None:
                a, b = g.base.get(key), g.last.get(key)
                return None if a is None or b is None else int(b) - int(a)

            gpus.append({
                "index": g.index, "name": g.name, "uuid": g.uuid,
                "dbe_volatile_delta": delta("dbe_volatile"), "sbe_volatile_delta": delta("sbe_volatile"),
                "pcie_replay_delta": delta("pcie_replay"),
                "pcie_gen": g.pcie[0], "pcie_width": g.pcie[1],
                "remap_pending": g.last.get("remap_pending"), "remap_failure": g.last.get("remap_failure"),
                "remap_pending_before": g.base.get("remap_pending"),
                "xids": list(g.xids),
                "clock_event_samples": dict(g.reason_samples),
                "clock_event_first_t": dict(g.reason_first),
                "temp_c_peak": g.peaks.get("temp_c"), "mem_temp_c_peak": g.peaks.get("mem_temp_c"),
                "power_w_peak": g.peaks.get("power_w"), "power_limit_w": g.last.get("power_limit_w"),
                "sm_clock_mhz_min": g.peaks.get("sm_clock_mhz_min"), "sm_clock_mhz_max": g.peaks.get("sm_clock_mhz"),
                "events": list(g.events),
                "trace": g.trace.columns(),
                "unavailable": dict(g.unavailable),
            })
        return {"available": True, "interval_s": self.interval, "samples": self.samples, "seconds": seconds,
                "gpus": gpus}


# --------------------------------------------------------------------------- runner hook


def begin(device: str, ndevices: int, *, backend: Any = None, interval: float | None = None) -> Watcher | str:
    """Start watching the run's GPUs; or the reason the watcher is not available."""
    if device != "cuda":
        return "not available, because the run is on the CPU (NVML watches NVIDIA GPUs only)"
    if interval is None:
        from envcheck import recipes

        interval = float(recipes.load("validate_floors").get("watch", {}).get("interval_s", 0.25))
    try:
        w = Watcher(visible_indices(ndevices), backend=backend, interval=interval).start()
    except Exception as exc:  # noqa: BLE001 - the watcher must never cost the check its result
        return f"not available, because starting it failed: {type(exc).__name__}: {exc}"
    if w.session is None:
        return f"not available, because {w.failure}"
    return w


def finish(handle: Watcher | str, result, floors: dict[str, Any] | None = None):
    """Stop watching, attach the summary to ``result.details['watch']`` and judge it: a new
    DBE, a hardware XID or a row-remap failure/pending fails the check; throttling under
    load or a replay burst makes a passing check warn (certify.judge_watch)."""
    from envcheck.validate.certify import judge_watch
    from envcheck.validate.results import FAIL, PASS, SKIP, WARN

    if isinstance(handle, str):
        summary: dict[str, Any] = {"available": False, "reason": handle}
    else:
        try:
            summary = handle.stop()
        except Exception as exc:  # noqa: BLE001
            summary = {"available": False, "reason": f"stopping the watcher failed: {type(exc).__name__}: {exc}"}
    if result.status == SKIP:
        return result
    result.details["watch"] = summary
    if floors is None:
        from envcheck import recipes

        floors = recipes.load("validate_floors")
    fails, warns = judge_watch(summary, floors)
    if fails:
        result.status = FAIL
        result.message = "; ".join(fails) + (f"; {result.message}" if result.message else "")
    elif warns and result.status == PASS:
        result.status = WARN
        result.message = "; ".join(warns) + (f"; {result.message}" if result.message else "")
    elif warns:
        result.message = f"{result.message}; " + "; ".join(warns)
    return result
