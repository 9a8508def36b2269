"""The pure helpers rules share: CUDA arch compatibility, CUDA_VISIBLE_DEVICES parsing, versions."""

from __future__ import annotations

import pytest

from envcheck.rules import _util as u
from envcheck.snapshot import na

CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize("arch,cc,expected", [
    (CU126, "9.0", "cubin"),                 # H100 on cu126
    (CU126, "8.9", "cubin"),                 # Ada runs sm_86 code (same major, minor <= 9)
    (CU126, "12.0", None),                   # RTX 5090 on an old wheel: no kernel image
    (CU126, [12, 0], None),                  # torch's capability form
    (CU130, "7.0", None),                    # V100 on a CUDA 13 wheel: dropped
    (CU130, "6.1", None),                    # GTX 1080 Ti on a CUDA 13 wheel
    (CU130, "12.0", "cubin"),
    (CU130, "12.1", "cubin"),                # DGX Spark GB10 runs sm_120 code
    (CU130, "10.3", "cubin"),                # B300 runs sm_100 code
    (["sm_80", "sm_90", "compute_90"], "12.0", "ptx"),  # only PTX can be JIT-compiled
    (["sm_86"], "8.0", None),                # cubin minor newer than the device
    (["sm_90a"], "9.0", "cubin"),            # arch-specific code runs on exactly 9.0 ...
    (["sm_90a"], "9.1", None),               # ... and nowhere else
    (["sm_80"], "8.7", None),                # Orin (integrated) does not run dGPU sm_80 code
    (["sm_87"], "8.7", "cubin"),
    (["compute_90"], "8.6", None),           # PTX only runs on newer or equal capabilities
    ([], "9.0", "unknown"),
    (na("x"), "9.0", "unknown"),
    (CU126, na("x"), "unknown"),
    (CU126, "garbage", "unknown"),
    (["sm_80", na("x")], "12.0", "unknown"),  # an unreadable entry might be the matching one
    (["sm_80", "what"], "8.6", "cubin"),      # a readable match is enough
])
def test_arch_support(arch, cc, expected):
    assert u.arch_support(arch, cc) == expected


@pytest.mark.parametrize("value,count,visible,invalid", [
    ("0,1", 8, [0, 1], None),
    ("", 8, [], None),
    ("-1", 8, [], None),
    ("none", 8, [], None),
    ("NoDevFiles", 2, [], None),
    ("0,,1", 8, [0], ""),
    ("0,2,-1,1", 8, [0, 2], "-1"),          # the CUDA guide's own example
    ("0,9", 8, [0], "9"),
    ("gpu0", 8, [], "gpu0"),
    ("GPU-00000003", 8, ["GPU-00000003"], None),   # a unique UUID prefix is accepted
    ("GPU-deadbeef", 8, [], "GPU-deadbeef"),
    ("MIG-4f1c2d3e-0000-1111-2222-333333333333", 8, ["MIG-4f1c2d3e-0000-1111-2222-333333333333"], None),
    (" 0 , 1 ", 8, [0, 1], None),
    ("5", None, [5], None),                 # unknown GPU count: an index is not judged
])
def test_parse_visible_devices(value, count, visible, invalid):
    gpus = [{"uuid": f"GPU-0000000{i}-1111-2222-3333-444444444444"} for i in range(count or 0)]
    got = u.parse_visible_devices(value, gpus, count)
    assert got["visible"] == visible
    assert got["invalid"] == invalid


def test_parse_visible_devices_lists_what_is_ignored():
    got = u.parse_visible_devices("0,,1,2", [], 4)
    assert got["ignored"] == ["1", "2"] and got["reason"] == "empty entry"


@pytest.mark.parametrize("text,expected", [
    ("550.90.07", (550, 90, 7)), ("2.7.1+cu126", (2, 7, 1)), ("576.57", (576, 57)),
    ("v1.2", (1, 2)), ("", None), (None, None), (na("x"), None), ("abc", None),
])
def test_version_tuple(text, expected):
    assert u.version_tuple(text) == expected


@pytest.mark.parametrize("n,text", [(85520809984, "79.6 GiB"), (64 * 1024**2, "64.0 MiB"), (512, "512 B"),
                                    (None, "?"), (True, "?"), (na("x"), "?")])
def test_fmt_bytes(n, text):
    assert u.fmt_bytes(n) == text


def test_gpu_present_is_tri_state(machine):
    assert u.gpu_present(machine("healthy_8xh100")) is True
    assert u.gpu_present(machine("cpu_only_laptop")) is False
    assert u.gpu_present(machine("cpu_only_vm")) is False
    assert u.gpu_present(machine("no_driver_nouveau")) is True          # seen on the PCI bus
    assert u.gpu_present(machine("all_unavailable")) is None


def test_pci_audio_functions_are_not_gpus(machine):
    s = machine.example({"host.pci_nvidia_devices": [
        {"address": "0000:01:00.1", "class": "0x040300", "device_id": "0x22e8"}]})
    assert u.pci_nvidia_gpus(s) == []


def test_install_fix_falls_back_when_the_engine_fails(monkeypatch, machine):
    from envcheck import recommend

    def boom(_):
        raise RuntimeError("no recipes")

    monkeypatch.setattr(recommend, "install_fix", boom)
    assert u.install_fix(machine("torch_missing")) == u.INSTALL_FALLBACK
    monkeypatch.setattr(recommend, "install_fix", lambda _: None)
    assert u.install_fix(machine("torch_missing")) == u.INSTALL_FALLBACK
    monkeypatch.setattr(recommend, "install_fix", lambda _: "pip install torch==2.13.0")
    assert u.install_fix(machine("torch_missing")) == "pip install torch==2.13.0"


def test_ask_recommend_returns_none_on_failure(monkeypatch):
    from envcheck import recommend

    monkeypatch.setattr(recommend, "driver_minimum", lambda *a, **k: 1 / 0)
    assert u.ask_recommend("driver_minimum", "12.8") is None
    assert u.ask_recommend("no_such_function") is None
