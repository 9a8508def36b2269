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
