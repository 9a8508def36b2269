"""collect(): the snapshot survives a probe that hangs or raises."""

import threading
import time

from envcheck import probes
from envcheck import snapshot as snap
from envcheck.probes import nvidia


def test_nvml_that_hangs_is_reported_not_waited_for(monkeypatch):
    release = threading.Event()

    def wedged(*_a, **_k):  # an NVML call stuck on a GPU that fell off the bus
        release.wait(30)
        return {}

    monkeypatch.setattr(nvidia, "probe", wedged)
    start = time.perf_counter()
    try:
        s = probes.collect(nvml_timeout=0.5, torch_timeout=20)
    finally:
        release.set()
    assert time.perf_counter() - start < 15
    snap.validate(s)
    assert s["nvidia"]["nvml"]["status"] == "unknown_error"
    assert "did not answer within 0.5 s" in s["nvidia"]["nvml"]["error"]["message"]
    assert s["nvidia"]["gpus"] == []


def test_nvml_deadline_keeps_the_gpus_already_read(monkeypatch):
    """Issue 10 class 7: a deadline hit while GPU 2 of 4 is being probed keeps GPUs 0-1."""
    release = threading.Event()
    real = nvidia.probe

    def stuck_at_gpu2(*_a, state=None, **_k):
        section = {"nvml": {"status": "ok", "error": None}, "driver_version": "550.90.07",
                   "cuda_driver_version": "12.4", "nvml_version": "12.550.90.07", "gpu_count": 4,
                   "gpus": [{"index": i, "error": None, "name": "NVIDIA H100 80GB HBM3"} for i in range(2)]}
        state["section"] = section
        release.wait(30)
        return section

    monkeypatch.setattr(nvidia, "probe", stuck_at_gpu2)
    try:
        s = probes.collect(nvml_timeout=0.5, torch_timeout=20)
    finally:
        release.set()
    assert real is not stuck_at_gpu2
    gpus = s["nvidia"]["gpus"]
    assert s["nvidia"]["nvml"]["status"] == "ok" and s["nvidia"]["driver_version"] == "550.90.07"
    assert [g["error"] for g in gpus[:2]] == [None, None]
    assert [g["error"]["class"] for g in gpus[2:]] == ["gpu_hung", "gpu_hung"]
    assert gpus[2]["error"]["message"] == "GPU 2: not reached within the NVML deadline of 0.5 s"


def test_a_probe_that_raises_becomes_unavailable(monkeypatch):
    from envcheck.probes import host

    def broken(*_a, **_k):
        raise OSError("boom")

    monkeypatch.setattr(host, "probe", broken)
    s = probes.collect(torch_timeout=20)
    assert snap.is_na(s["host"]) and "OSError: boom" in s["host"]["unavailable"]
    assert s["torch"]["status"] in {"ok", "not_installed"}


def test_without_importing_torch_reads_installed_distributions():
    """envcheck install needs the interpreter and what is installed, not a 1 s torch import."""
    from envcheck import recommend

    s = probes.collect(import_torch=False, torch_timeout=20)
    assert s["python"]["status"] == "ok"
    assert s["torch"]["status"] == "not_probed"
    assert "version" not in s["torch"]
    names = [d["name"] for d in s["torch"]["distributions"]]
    assert "torch" in names  # the README's test command installs torch
    machine = recommend.machine_from_snapshot(s)
    assert machine.installed_torch == s["torch"]["distributions"][0]["version"]
