"""The NVML watcher: time-scripted fake NVML scenarios (tests/fixtures/watch_scenarios) drive
it through the real envcheck.probes._nvml door; judging is certify.judge_watch (pure)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from envcheck import recipes
from envcheck.validate import certify, runner, watch
from envcheck.validate.checks import CheckSpec
from envcheck.validate.config import ValidateConfig
from envcheck.validate.results import CheckResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from fake_nvml_watch import scripted, watch_scenario_names  # noqa: E402

FLOORS = recipes.load("validate_floors")


def watched(name: str, seconds: float = 0.4, status: str = "pass") -> CheckResult:
    """A fake 'check' of ``seconds`` under the scripted scenario, judged like the runner does."""
    handle = watch.begin("cuda", 2, backend=scripted(name), interval=0.02)
    assert isinstance(handle, watch.Watcher), handle
    time.sleep(seconds)
    return watch.finish(handle, CheckResult("gemm", status, {}, "TFLOPS bf16 700"), FLOORS)


def test_every_watch_scenario_is_tested():
    assert watch_scenario_names() == sorted(["clean_under_load", "dbe_mid_check", "thermal_slowdown",
                                             "replay_burst", "xid_during_run", "remap_pending", "throttle_and_dbe"])


def test_a_clean_run_under_load_stays_a_pass_with_peaks_recorded():
    r = watched("clean_under_load")
    assert (r.status, r.message) == ("pass", "TFLOPS bf16 700")
    w = r.details["watch"]
    assert w["available"] and w["samples"] >= 5 and [g["index"] for g in w["gpus"]] == [0, 1]
    g0, g1 = w["gpus"]
    assert g0["name"] == "NVIDIA H100 80GB HBM3" and g0["uuid"].startswith("GPU-")
    assert (g0["temp_c_peak"], g0["mem_temp_c_peak"], g0["power_w_peak"], g0["power_limit_w"]) == (71, 64.0, 699.0, 700.0)
    assert g0["sm_clock_mhz_max"] == 1755 and g0["clock_event_samples"]["sw_power_cap"] == w["samples"]
    assert (g0["dbe_volatile_delta"], g0["sbe_volatile_delta"], g0["pcie_replay_delta"]) == (0, 0, 0)
    assert g1["pcie_replay_delta"] == 1 and g1["events"][0]["counter"] == "pcie_replay"  # below the burst limit
    assert g0["xids"] == [] and g0["unavailable"] == {}


def test_a_dbe_mid_check_fails_it_naming_gpu_counter_and_time():
    r = watched("dbe_mid_check")
    assert r.status == "fail"
    assert r.message.startswith("GPU 1 (NVIDIA H100 80GB HBM3): 1 new double-bit ECC error(s) (volatile DBE counter) "
                                "at 0.")
    assert "s into the check; TFLOPS bf16 700" in r.message
    g1 = r.details["watch"]["gpus"][1]
    assert g1["dbe_volatile_delta"] == 1 and 0.08 <= g1["events"][0]["t"] <= 0.4
    assert r.details["watch"]["gpus"][0]["dbe_volatile_delta"] == 0


def test_thermal_slowdown_under_load_degrades_the_check():
    r = watched("thermal_slowdown")
    assert r.status == "warn"
    assert "GPU 0 (NVIDIA H100 80GB HBM3): clocks slowed by hw thermal slowdown under load in" in r.message
    assert "peak 92 C" in r.message and r.message.endswith("; TFLOPS bf16 700")
    g0 = r.details["watch"]["gpus"][0]
    assert g0["sm_clock_mhz_min"] == 1095 and g0["sm_clock_mhz_max"] == 1980


def test_a_clean_run_keeps_a_trace_of_the_scripted_values_over_time():
    r = watched("clean_under_load")
    w = r.details["watch"]
    for g in w["gpus"]:
        tr = g["trace"]
        n = len(tr["t"])
        assert n == w["samples"] and tr["stride"] == 1  # short check: one point per sample
        assert tr["t"][0] == 0.0 and all(a < b for a, b in zip(tr["t"], tr["t"][1:]))
        assert tr["t"][-1] <= w["seconds"]
        assert all(len(tr[k]) == n for k in watch.TRACE_KEYS)
        assert set(tr["temp_c"]) == {71} and set(tr["mem_temp_c"]) == {64.0}
        assert set(tr["power_w"]) == {699.0} and set(tr["power_limit_w"]) == {700.0}
        assert set(tr["sm_clock_mhz"]) == {1755} and all(e == ["sw_power_cap"] for e in tr["events"])
    assert json.loads(json.dumps(w, allow_nan=False)) == w  # the summary stays plain JSON


def test_the_trace_follows_a_thermal_slowdown():
    r = watched("thermal_slowdown")
    g0, g1 = (g["trace"] for g in r.details["watch"]["gpus"])
    hot = [i for i, e in enumerate(g0["events"]) if "hw_thermal_slowdown" in e]
    assert hot and hot == list(range(hot[0], len(g0["t"])))  # from 0.1 s to the end
    assert g0["t"][hot[0]] >= 0.1 and {g0["temp_c"][i] for i in hot} == {92}
    assert {g0["sm_clock_mhz"][i] for i in hot} == {1095} and g0["sm_clock_mhz"][0] == 1980
    assert all(e == [] for e in g1["events"]) and set(g1["sm_clock_mhz"]) == {1980}


def test_a_throttling_gpu_and_a_dbe_on_the_other_fail_the_check_and_are_both_traced():
    r = watched("throttle_and_dbe", seconds=1.8)
    assert r.status == "fail" and r.message.startswith("GPU 1 (NVIDIA H100 80GB HBM3): 1 new double-bit ECC error")
    g0, g1 = r.details["watch"]["gpus"]
    assert g0["clock_event_samples"]["hw_thermal_slowdown"] >= 2 and g1["events"][0]["counter"] == "dbe_volatile"
    assert max(g0["trace"]["temp_c"]) == 91 and min(g0["trace"]["sm_clock_mhz"]) == 1095
    assert g0["trace"]["temp_c"][0] == 52 and max(g1["trace"]["temp_c"]) <= 69
    w = r.details["watch"]
    bare = {**w, "gpus": [{k: v for k, v in g.items() if k != "trace"} for g in w["gpus"]]}
    assert certify.judge_watch(w, FLOORS) == certify.judge_watch(bare, FLOORS)  # the trace is not judged


def test_a_long_check_keeps_a_bounded_evenly_spaced_trace_with_its_extremes():
    """30 minutes at 4 Hz (7200 samples): at most TRACE_POINTS points, the whole span covered,
    the one-sample clock dip and temperature spike and a short slowdown kept."""
    tr = watch._Trace()
    for i in range(7200):
        v = {"temp_c": 95 if i == 5001 else 70, "mem_temp_c": 60.0, "power_w": 650.04 + i % 3,
             "power_limit_w": 700.0, "sm_clock_mhz": 1200 if i == 3333 else 1980,
             "reasons": ["hw_slowdown"] if 4000 <= i < 4040 else []}
        tr.add(i * 0.25, v)
        if i % 500 == 0:
            assert len(tr.cols["t"]) < watch.TRACE_POINTS
    c = tr.columns()
    assert len(c["t"]) <= watch.TRACE_POINTS and len(c["t"]) >= watch.TRACE_POINTS // 2
    assert c["stride"] == 32 and c["t"][-1] == 7199 * 0.25
    steps = {round(b - a, 6) for a, b in zip(c["t"], c["t"][1:])}
    assert steps == {32 * 0.25}
    assert max(c["temp_c"]) == 95 and min(c["sm_clock_mhz"]) == 1200 and max(c["power_w"]) == 652.0
    slowed = [t for t, e in zip(c["t"], c["events"]) if e]
    assert slowed and slowed[0] >= 4000 * 0.25 and slowed[-1] <= 4071 * 0.25
    assert json.loads(json.dumps(c)) == c


def test_a_replay_burst_degrades_the_check():
    r = watched("replay_burst")
    assert r.status == "warn"
    assert "GPU 0 (NVIDIA H100 80GB HBM3): PCIe replay burst, 500 replays in" in r.message
    assert "(limit 30.7 for gen5 x16)" in r.message


def test_a_hardware_xid_fails_an_application_xid_is_only_recorded():
    r = watched("xid_during_run")
    assert r.status == "fail"
    assert "GPU 1 (NVIDIA H100 80GB HBM3): hardware XID 79 at " in r.message and "XID 13" not in r.message
    g0, g1 = r.details["watch"]["gpus"]
    assert [x["xid"] for x in g0["xids"]] == [13] and [x["xid"] for x in g1["xids"]] == [79]


def test_a_pending_row_remap_fails():
    r = watched("remap_pending")
    assert r.status == "fail" and "GPU 0 (NVIDIA H100 80GB HBM3): a row remap is pending" in r.message


def test_a_failed_check_stays_failed_and_keeps_its_own_message_last():
    r = watched("thermal_slowdown", status="fail")
    assert r.status == "fail" and r.message.startswith("TFLOPS bf16 700; GPU 0")


def test_on_the_cpu_the_watcher_says_why_and_the_check_is_untouched():
    handle = watch.begin("cpu", 1)
    assert handle == "not available, because the run is on the CPU (NVML watches NVIDIA GPUs only)"
    r = watch.finish(handle, CheckResult("cnn", "pass", {}, "ok"), FLOORS)
    assert (r.status, r.details["watch"]) == ("pass", {"available": False, "reason": handle})


def test_without_a_driver_it_says_why():
    sys_path_fake = __import__("fake_nvml")
    handle = watch.begin("cuda", 1, backend=sys_path_fake.fake("driver_not_loaded"), interval=0.02)
    assert isinstance(handle, str) and handle.startswith("not available, because NVML is not usable: the NVIDIA "
                                                         "kernel driver is not loaded")


def test_visible_devices_pick_the_watched_gpus():
    assert watch.visible_indices(2, {}) == [0, 1]
    assert watch.visible_indices(2, {"CUDA_VISIBLE_DEVICES": "3,5,7"}) == [3, 5]
    assert watch.visible_indices(1, {"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == ["GPU-abc"]


def test_judging_is_pure_and_ignores_an_unavailable_watch():
    assert certify.judge_watch({"available": False, "reason": "cpu"}, FLOORS) == ([], [])
    one = {"available": True, "samples": 10, "seconds": 2.0, "gpus": [
        {"index": 3, "name": None, "clock_event_samples": {"hw_slowdown": 1, "sw_power_cap": 10},
         "clock_event_first_t": {"hw_slowdown": 0.5}, "xids": [{"xid": 94, "t": 1.0}]}]}
    fails, warns = certify.judge_watch(one, FLOORS)
    assert fails == [] and warns == ["GPU 3: XID 94 at 1 s into the check"]  # one slowdown sample is a transient


def test_the_runner_watches_each_check_it_runs(monkeypatch):
    from envcheck.probes import _nvml

    monkeypatch.setattr(_nvml, "load_backend", lambda: (scripted("dbe_mid_check"), None))

    def slow(ctx):
        time.sleep(0.5)
        return CheckResult(ctx.name, "pass", {}, "fine")

    import envcheck.validate.checks as checks_pkg

    monkeypatch.setattr(checks_pkg.CheckSpec, "load", lambda self: slow)
    reg = {"a": CheckSpec("a", "A", "x:y"), "b": CheckSpec("b", "B", "x:y", min_devices=4)}
    cfg = ValidateConfig(device="cuda", ndevices=2)
    report = runner.run(cfg, ["a", "b"], {"devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"},
                                                      {"index": 1, "name": "NVIDIA H100 80GB HBM3"}]},
                        isolation="inprocess", registry=reg)
    a, b = report.checks
    assert a.status == "fail" and "GPU 1" in a.message and "double-bit" in a.message
    assert b.status == "skip" and "watch" not in b.details
    assert report.verdict == "failed"


@pytest.mark.gpu
def test_real_nvml_watch_of_a_quiet_second():  # pragma: no cover - needs an NVIDIA GPU
    handle = watch.begin("cuda", 1, interval=0.1)
    assert isinstance(handle, watch.Watcher), handle
    time.sleep(1.0)
    r = watch.finish(handle, CheckResult("gemm", "pass", {}, "ok"))
    w = r.details["watch"]
    assert w["available"] and w["samples"] >= 5 and w["gpus"][0]["temp_c_peak"] is not None


def test_the_text_report_names_gpu_counter_and_time_and_says_why_on_the_cpu():
    from envcheck.report import validate as render
    from envcheck.validate.results import ValidationReport

    r = watched("xid_during_run")
    text = render.to_text(ValidationReport(checks=[r], device="cuda"))
    assert "GPU watch (NVML during each check: peaks, clock events, new errors)" in text
    assert "GPU 1: peak 31 C (memory 40 C), 71.5/700 W, SM 345-345 MHz, XID 79@0." in text
    cpu = watch.finish(watch.begin("cpu", 1), CheckResult("cnn", "pass", {}, "ok"), FLOORS)
    text = render.to_text(ValidationReport(checks=[cpu]))
    assert "GPU watch: not available, because the run is on the CPU (NVML watches NVIDIA GPUs only)" in text
