"""The engine's building blocks: compatibility rules, parsing, the API the rules helper calls,
command syntax (never pip and conda mixed)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from packaging.version import Version

from envcheck import recipes, recommend
from envcheck.recommend import data, machine_from_snapshot, what_if_machine
from envcheck.recommend.data import Arch
from envcheck.recommend.machine import (
    InputError,
    parse_torch_spec,
    parse_with,
    python_version_flag,
    resolve_gpu,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots" / "example_8xh100.json"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


# ----------------------------------------------------------------------- compatibility rules


@pytest.mark.parametrize("arch,device,runs", [
    ("sm_86", (8, 9), True),    # same major, higher minor (CUDA guide: X.y runs on X.z, z >= y)
    ("sm_86", (8, 6), True),
    ("sm_86", (8, 0), False),   # lower minor: no
    ("sm_80", (9, 0), False),   # other major: no
    ("sm_80", (8, 7), False),   # integrated Orin never runs discrete cubins (torch DEVICE_REQUIREMENT)
    ("sm_87", (8, 7), True),
    ("sm_90a", (9, 0), True),   # arch-specific: exactly its capability
    ("sm_90a", (10, 0), False),
    ("sm_100", (10, 3), True),  # B300
    ("sm_100", (10, 1), False), # Thor (old numbering) is integrated
    ("sm_120", (12, 1), True),  # GB10
    ("sm_70", (7, 5), True),
    ("compute_90", (9, 0), False),  # PTX is not a cubin
])
def test_cubin_rule(arch, device, runs):
    assert data.cubin_runs_on(Arch.parse(arch), device) is runs


def test_ptx_rule():
    assert data.ptx_runs_on(Arch.parse("compute_90"), (12, 0))
    assert not data.ptx_runs_on(Arch.parse("compute_120"), (9, 0))
    assert not data.ptx_runs_on(Arch.parse("sm_90"), (9, 0))


def test_ptx_only_coverage_is_not_support():
    # 2.5 cu124 has compute_90 PTX, which could JIT for sm_120; the engine still refuses it.
    plan = recommend.recommend(what_if_machine(platform="linux-x86_64", python="3.12",
                                               gpus=["RTX 5090"], driver="575.57.08"), "==2.5.1")
    assert [b.id for b in plan.blockers] == ["gpu.unsupported"]


@pytest.mark.parametrize("have,need,ok", [
    ("580.65.06", "580", True), ("575.57.08", "580", False), ("525.60.13", "525.60.13", True),
    ("525.60.12", "525.60.13", False), ("470.256.02", "450.80.02", True), ("1000", "580", True),
])
def test_driver_compare(have, need, ok):
    assert data.driver_at_least(have, need) is ok


def test_driver_minimum_api():
    assert recommend.driver_minimum("13.0") == "580"
    assert recommend.driver_minimum("13.2", os="windows") == "580"
    assert recommend.driver_minimum("12.8") == "525.60.13"
    assert recommend.driver_minimum("12.6", os="windows") == "527.41"
    assert recommend.driver_minimum("11.8") == "450.80.02"
    assert recommend.driver_minimum("11.8", os="windows") == "452.39"
    assert recommend.driver_minimum("14.0") is None
    assert recommend.driver_minimum(None) is None


def test_last_driver_branch():
    assert data.last_driver_branch((6, 1))["last_branch"] == "580"
    assert data.last_driver_branch((3, 7))["last_branch"] == "470"
    assert data.last_driver_branch((9, 0)) is None


# ----------------------------------------------------------------------------- public API


def test_python_range():
    assert recommend.python_range("2.7.1+cu126") == ("3.9", "3.13")
    assert recommend.python_range("2.15.0") == ("3.11", "3.15")
    assert recommend.python_range("2.0.0") == ("3.8", "3.11")
    assert recommend.python_range("1.13.1") is None
    assert recommend.python_range("not a version") is None


def test_newest_known_release_matches_recipes():
    newest = max(recipes.load("torch_releases")["releases"], key=Version)
    assert recommend.newest_known_release() == newest


def test_is_newer_than_known():
    newest = Version(recommend.newest_known_release())
    nxt = f"{newest.major}.{newest.minor + 1}.0"
    assert recommend.is_newer_than_known(nxt + "+cu132")
    assert recommend.is_newer_than_known(nxt + ".dev20261201")
    assert not recommend.is_newer_than_known(str(newest))
    assert not recommend.is_newer_than_known(f"{newest}+cpu")
    assert not recommend.is_newer_than_known("2.0.0")
    assert not recommend.is_newer_than_known("garbage")


def test_install_fix_for_the_example_snapshot_is_the_install_command():
    # 8x H100, driver 550.90.07 (< 580: no CUDA 13), Python 3.11 in a venv.
    fix = recommend.install_fix(example())
    assert fix == ("/home/alice/.venv/bin/python -m pip install torch==2.14.1 "
                   "--index-url https://download.pytorch.org/whl/cu126")


def test_install_fix_when_blocked_is_the_blocker_fix():
    snap = example()
    snap["python"]["version"] = "3.16.0"
    fix = recommend.install_fix(snap)
    assert fix.startswith("install Python 3.")


def test_install_fix_never_raises():
    assert recommend.install_fix({}) is not None  # platform unknown -> a fix saying so
    assert recommend.install_fix({"python": "garbage", "nvidia": 3}) is not None
    assert recommend.install_fix(None) is None


# ------------------------------------------------------------------------------- snapshots


def test_machine_from_example_snapshot():
    m = machine_from_snapshot(example())
    assert (m.platform, m.python, m.glibc, m.driver) == ("linux-x86_64", "3.11", "2.35", "550.90.07")
    assert len(m.gpus) == 8 and {g.cc for g in m.gpus} == {(9, 0)}
    assert m.executable == "/home/alice/.venv/bin/python"
    assert m.installed_torch == "2.7.1+cu126"
    assert not m.gpu_without_driver and not m.wsl


def test_machine_from_snapshot_without_driver_sees_the_pci_gpu():
    snap = example()
    snap["nvidia"] = {"nvml": {"status": "driver_not_loaded", "error": {"class": "x", "message": "y"}},
                      "gpus": [], "driver_version": {"unavailable": "nvml"}}
    m = machine_from_snapshot(snap)
    assert m.gpu_without_driver and m.driver is None and not m.gpus
    assert [b.id for b in recommend.recommend(m).blockers] == ["driver.missing"]


def test_machine_from_snapshot_survives_na_values():
    snap = example()
    snap["host"]["glibc"] = {"unavailable": "not linux"}
    snap["nvidia"]["gpus"][0]["compute_capability"] = {"unavailable": "gpu lost"}
    m = machine_from_snapshot(snap)
    assert m.glibc is None and m.gpus[0].cc is None
    plan = recommend.recommend(m)
    assert plan.ok and any("compute capability unknown" in n for n in plan.notes)


def test_probed_facts_are_overridden_by_flags():
    m = recommend.apply_overrides(machine_from_snapshot(example()), gpus=["RTX 5090"], driver="575.57.08")
    assert [g.name for g in m.gpus] == ["GeForce RTX 5090"] and m.driver == "575.57.08"
    assert m.sources["gpus"] == "flag" and m.sources["platform"] == "probed"
    assert m.executable  # same machine: commands still use its interpreter
    other = recommend.apply_overrides(m, platform="windows-x86_64")
    assert other.executable is None and other.glibc is None  # another OS: not this interpreter


# --------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text,cc", [
    ("NVIDIA GeForce RTX 4090", (8, 9)), ("rtx4090", (8, 9)), ("RTX-4090", (8, 9)),
    ("NVIDIA H100 80GB HBM3", (9, 0)), ("H100-SXM5-80GB", (9, 0)), ("A100-SXM4-80GB", (8, 0)),
    ("a10g", (8, 6)), ("A10", (8, 6)), ("Tesla T4", (7, 5)), ("tesla v100-sxm2-32gb", (7, 0)),
    ("GTX 1080 Ti", (6, 1)), ("K80", (3, 7)), ("L40S", (8, 9)), ("L4", (8, 9)), ("B200", (10, 0)),
    ("GB200", (10, 0)), ("H200", (9, 0)), ("RTX 2080", (7, 5)), ("RTX 3090", (8, 6)),
    ("RTX 5090", (12, 0)), ("P100", (6, 0)), ("sm_86", (8, 6)), ("sm_120", (12, 0)), ("8.9", (8, 9)),
])
def test_resolve_gpu(text, cc):
    assert resolve_gpu(text).cc == cc


def test_resolve_amd_gpu():
    assert resolve_gpu("MI300X").gfx == "gfx942"
    assert resolve_gpu("gfx90a").gfx == "gfx90a"


@pytest.mark.parametrize("text", ["RTX 9999", "", "Voodoo 5", "sm_x"])
def test_unknown_gpu_says_what_is_accepted(text):
    with pytest.raises(InputError) as err:
        resolve_gpu(text)
    assert "sm_" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs,needle", [
    ({"gpus": ["H100"], "no_gpu": True}, "exclude"),
    ({"platform": "solaris-sparc"}, "linux-x86_64"),
    ({"python": "3"}, "3.12"),
    ({"python": "2.7"}, "3.12"),
    ({"glibc": "2"}, "2.28"),
    ({"driver": "latest"}, "570"),
])
def test_bad_what_if_values(kwargs, needle):
    with pytest.raises(InputError) as err:
        what_if_machine(**kwargs)
    assert needle in str(err.value)


def test_parse_torch_spec():
    assert str(parse_torch_spec("2.7.1")) == "==2.7.1"
    assert str(parse_torch_spec("2.7")) == "==2.7.*"
    assert parse_torch_spec(">=2.4,<2.8").contains("2.7.1")
    assert parse_torch_spec(None) is None and parse_torch_spec(" ") is None
    with pytest.raises(InputError):
        parse_torch_spec("newest please")


def test_parse_with_and_python_flag():
    assert parse_with(["torchvision,torchaudio"]) == ("torchvision", "torchaudio")
    assert parse_with(["torchaudio", "TorchVision"]) == ("torchaudio", "torchvision")
    with pytest.raises(InputError):
        parse_with(["torchtext"])
    assert python_version_flag("3.12") == "3.12" and python_version_flag("3.13t") == "3.13t"
    assert python_version_flag("/usr/bin/python3") is None


# ------------------------------------------------------------------------------- commands

_MACHINES = [
    dict(platform="linux-x86_64", python="3.12", gpus=["H100"], driver="580.95.05"),
    dict(platform="linux-x86_64", python="3.10", gpus=["H100"], driver="535.183.01"),
    dict(platform="linux-x86_64", python="3.10", gpus=["V100"], driver="470.256.02"),
    dict(platform="linux-x86_64", python="3.11", no_gpu=True),
    dict(platform="linux-aarch64", python="3.12", gpus=["GH200"], driver="550.90.07"),
    dict(platform="windows-x86_64", python="3.12", gpus=["RTX 4090"], driver="560.94"),
    dict(platform="windows-x86_64", python="3.11", no_gpu=True),
    dict(platform="macos-arm64", python="3.12"),
    dict(platform="macos-x86_64", python="3.11"),
    dict(platform="linux-x86_64", python="3.12", gpus=["MI300X"]),
]
_SPECS = [None, "==2.4.1", "==2.5.1", "==2.0.1", "==2.6.0"]


def _plans():
    for kw in _MACHINES:
        for spec in _SPECS:
            plan = recommend.recommend(what_if_machine(**kw), spec, ("torchvision",))
            if plan.ok:
                yield kw, spec, plan


def test_commands_never_mix_pip_and_conda_syntax():
    seen_conda = set()
    n = 0
    for _kw, _spec, plan in _plans():
        n += 1
        pip, uv, conda = plan.commands["pip"], plan.commands["uv"], plan.commands["conda"]
        for cmd in (pip, uv):
            assert not re.search(r"(^| )-c ", cmd), cmd  # conda channel flag
            assert not re.search(r"cudatoolkit|pytorch-cuda|cpuonly|conda", cmd), cmd
            assert not re.search(r"(?<![=<>!~])=(?!=)", cmd.replace("--index-url ", "")), cmd
            assert re.search(r"torch==\d", cmd)
        if conda:
            seen_conda.add(conda.split(" -c ")[0][:20])
            assert conda.startswith("conda install ")
            assert not re.search(r"--index-url|--extra-index-url|-m pip|\bpip\b| -f ", conda), conda
            assert " -c " in conda
    assert n >= 25 and len(seen_conda) >= 2  # both the official-channel and conda-forge forms


def test_commands_pin_companions_and_use_the_index():
    plan = recommend.recommend(what_if_machine(platform="linux-x86_64", python="3.12",
                                               gpus=["RTX 5090"], driver="575.57.08"),
                               None, ("torchvision", "torchaudio"))
    assert plan.commands["pip"] == (
        "python3.12 -m pip install torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.1 "
        "--index-url https://download.pytorch.org/whl/cu128")
    assert plan.commands["uv"] == (
        "uv pip install --python 3.12 torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.1 "
        "--index-url https://download.pytorch.org/whl/cu128")
    assert plan.pip_args == ["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.1",
                             "--index-url", "https://download.pytorch.org/whl/cu128"]


def test_official_conda_channel_command_for_old_releases():
    plan = recommend.recommend(what_if_machine(platform="linux-x86_64", python="3.10",
                                               gpus=["A100"], driver="535.183.01"), "==2.4.1")
    assert plan.commands["conda"] == "conda install pytorch==2.4.1 pytorch-cuda=12.4 -c pytorch -c nvidia"


def test_probed_interpreter_path_is_quoted():
    from dataclasses import replace

    m = replace(what_if_machine(platform="windows-x86_64", python="3.12", no_gpu=True),
                executable=r"C:\Program Files\Python312\python.exe")
    plan = recommend.recommend(m)
    assert plan.commands["pip"].startswith('"C:\\Program Files\\Python312\\python.exe" -m pip install')
    m2 = replace(what_if_machine(platform="linux-x86_64", python="3.12", no_gpu=True),
                 executable="/opt/my env/bin/python")
    assert recommend.recommend(m2).commands["pip"].startswith("'/opt/my env/bin/python' -m pip")


def test_plan_to_dict_keys():
    plan = recommend.recommend(what_if_machine(platform="macos-arm64", python="3.12"))
    assert set(plan.to_dict()) == {"torch", "variant", "cuda", "index_url", "companions", "commands",
                                   "blockers", "notes", "reasons", "constraint", "with", "machine",
                                   "newest_known_release", "already_installed", "online"}


def test_doctor_warns_when_installed_torch_is_newer_than_recipes():
    from envcheck import rules

    newest = Version(recommend.newest_known_release())
    snap = example()
    snap["torch"]["version"] = f"{newest.major}.{newest.minor + 1}.0+cu132"
    ids = {f.id for f in rules.evaluate(snap)}
    assert "torch.newer-than-known" in ids
    snap["torch"]["version"] = f"{newest}+cu132"
    assert "torch.newer-than-known" not in {f.id for f in rules.evaluate(snap)}


def test_installed_torch_note():
    from dataclasses import replace

    m = replace(what_if_machine(platform="macos-arm64", python="3.12"), installed_torch="2.13.0")
    assert any("replaces it with 2.15.0" in n for n in recommend.recommend(m).notes)
    m = replace(m, installed_torch="2.15.0")
    assert any("already installed" in n for n in recommend.recommend(m).notes)


# ------------------------------------------------- install-audit.md items without a behaviour


def test_audit_5_the_2_4_cu124_linux_build_has_no_ptx():
    # pytorch/builder release/2.4 build_cuda.sh: '12.4) ${base};9.0' (no +PTX)
    (b,) = [x for x in data.release("2.4.1").builds["linux-x86_64"] if x.variant == "cu124"]
    assert [str(a) for a in b.arch] == ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def test_audit_s5_cu134_of_2_14_is_recorded_but_never_picked():
    (b,) = [x for x in data.release("2.14.1").builds["linux-x86_64"] if x.variant == "cu134"]
    assert b.arch is None and not b.verified
    plan = recommend.recommend(what_if_machine(platform="linux-x86_64", python="3.12", gpus=["H100"],
                                               driver="580.95.05", glibc="2.35"), "<2.15")
    assert plan.variant == "cu132"


def test_audit_6_windows_cu118_lists_carry_kepler_and_sm61():
    for ver in ("2.0.0", "2.3.1", "2.5.1", "2.7.1"):
        (b,) = [x for x in data.release(ver).builds["windows-x86_64"] if x.variant == "cu118"]
        names = [str(a) for a in b.arch]
        assert "sm_37" in names and "sm_61" in names and "compute_37" in names, ver


def test_audit_52_last_driver_branches_are_verified_from_nvidias_matrix():
    for row in data.cuda_recipe()["driver_branches"]:
        assert row["verified"].startswith("2026-11-28") and "Architecture Matrix" in row["source"]


def test_cudnn_of_builds():
    pypi = data.release("2.7.1").builds["linux-x86_64"][0]
    assert pypi.index_url is None and pypi.cudnn == "9"  # from its nvidia-cudnn-cu12 pin
    old = [x for x in data.release("2.3.1").builds["linux-x86_64"] if x.variant == "cu118"][0]
    assert old.cudnn == "8" and data.cudnn_floor("9") == (5, 0) and data.cudnn_floor("8") == (3, 5)


def test_gpu_driver_minimum_prefers_the_product_row():
    assert data.gpu_driver_minimum("NVIDIA B200", (10, 0))["driver"] == "570.133.20"
    assert data.gpu_driver_minimum("NVIDIA GB200", (10, 0))["driver"] == "570.26"
    assert data.gpu_driver_minimum("RTX 5090", (12, 0), "windows")["driver"] == "570.65"
    assert data.gpu_driver_minimum("Jetson AGX Thor", (11, 0)) is None  # not in NVIDIA's matrix
    assert data.gpu_driver_minimum("V100", (7, 0)) is None  # any CUDA-11 driver runs Volta


def test_macos_floor_from_wheel_tags():
    assert data.macos_floor(["macosx_11_0_arm64", "macosx_14_0_arm64"]) == "11.0"
    assert data.macos_floor(["win_amd64"]) is None
    assert data.release("2.12.0").platforms["macos-arm64"].macos == "14.0"


def test_snapshot_gives_patch_python_and_macos_version():
    from envcheck.recommend.machine import machine_from_snapshot

    snap = {"python": {"version": "3.14.1", "platform_tag": "macos-arm64"},
            "host": {"platform": "macos-arm64", "distro_id": "macos", "distro_version": "13.6.1"}}
    m = machine_from_snapshot(snap)
    assert (m.python, m.python_full, m.macos) == ("3.14", "3.14.1", "13.6")
    assert recommend.recommend(m).torch == "2.11.0"  # 2.12+ arm64 wheels need macOS 14


def test_externally_managed_python_gets_a_venv_command_not_a_refused_pip():
    """Issue 12: doctor's fix for a PEP 668 system Python (Debian 12, Ubuntu 23.04+) was a pip
    command that pip refuses ("externally-managed-environment"); the plan makes a venv instead."""
    from envcheck import recommend

    m = recommend.what_if_machine(platform="linux-x86_64", python="3.11", no_gpu=True, glibc="2.36")
    plain = recommend.recommend(m)
    managed = recommend.recommend(dataclasses.replace(m, executable="/usr/bin/python3", externally_managed=True))
    assert plain.ok and managed.ok and managed.pip_args == plain.pip_args
    pip = managed.commands["pip"]
    assert pip.startswith("/usr/bin/python3 -m venv ~/.venvs/torch && ~/.venvs/torch/bin/python -m pip install ")
    assert pip.endswith(" ".join(plain.pip_args)) or "torch" in pip
    assert any("PEP 668" in n for n in managed.notes) and not any("PEP 668" in n for n in plain.notes)
