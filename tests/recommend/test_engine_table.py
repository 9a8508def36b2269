"""Table of machines (GPU generation x driver branch x Python x platform x glibc) and the plan
the engine must give, each expectation justified by a cited fact (the `why` column).

Facts marked [PyPI] were verified from the wheels on PyPI (recipes/torch_releases.json,
scripts/verify_torch_metadata.py): Python tags, manylinux tag / glibc symbols, the PyPI build's
CUDA version and compiled arch list. [RELEASE.md]/[build_cuda.sh]/[RFC] are PyTorch's own
release docs and build scripts (download.pytorch.org itself is not reachable to verify).
[NVIDIA] is the CUDA minor-version compatibility table. [CUDA guide] is the binary
compatibility rule (cubin X.y runs on X.z, z >= y).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from envcheck.recommend import recommend, what_if_machine

LX, LA, WIN, MAC, MACX = "linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64"
PYTORCH = "https://download.pytorch.org/whl/"


def M(platform, python, gpus=(), driver=None, glibc=None, no_gpu=False, **extra):
    """A machine from what-if flags; ``extra`` sets fields no flag gives (macos, wsl...)."""
    m = what_if_machine(platform=platform, python=python, gpus=list(gpus), driver=driver,
                        glibc=glibc, no_gpu=no_gpu)
    return replace(m, **extra) if extra else m


# (id, machine, --torch, --with, expected torch, expected variant, expected index variant or None
#  (None = plain PyPI), expected blocker ids, why)
CASES = [
    # ---------------------------------------------------------------- Hopper / Ada / Ampere
    ("h100-r580-py312", M(LX, "3.12", ["H100"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 linux-x86_64 is cu132 with sm_90; [NVIDIA] 13.x needs >= 580; cu132 is the newest CUDA"),
    ("h100-r550-py312", M(LX, "3.12", ["H100"], "550.90.07", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[RFC #190385] 2.15 has only CUDA 13 builds (need >= 580 [NVIDIA]); 2.14.1 cu126 has sm_90 [RELEASE.md]"),
    ("h100-r525-boundary", M(LX, "3.11", ["H100"], "525.60.13", "2.31"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[NVIDIA] 12.x needs >= 525.60.13 exactly: the boundary passes"),
    ("h100-r520-cuda11-driver", M(LX, "3.10", ["H100"], "520.61.05", "2.31"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "[NVIDIA] 520 < 525.60.13 rules out every cu12x; cu118 needs >= 450.80.02; 2.7 is the last "
     "release with cu118 [test-infra bad60f65d; 2.7-era build_cuda.sh 11.8 '+3.7;9.0'] (audit #13)"),
    ("h100-r470", M(LX, "3.10", ["H100"], "470.256.02", "2.31"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Hopper's first toolkit is CUDA 11.8 (GA driver 520.61.05): R470 cannot "
     "run an H100 at all, whatever minor-version compatibility says (issue 12)"),
    ("h100-r450.36-too-old", M(LX, "3.10", ["H100"], "450.36.06", "2.31"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] 450.36.06 < 520.61.05 (Hopper); also < 450.80.02 (the 11.x minimum)"),
    ("a100-r450.36-too-old", M(LX, "3.10", ["A100"], "450.36.06", "2.31"), None, (),
     None, None, None, ["driver.too-old"],
     "[NVIDIA] A100 runs from 450.36.06 (CUDA 11.0 GA) but cu118 needs >= 450.80.02: upgrade"),
    ("a100-r570-py310", M(LX, "3.10", ["A100"], "570.124.06", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[RELEASE.md] 2.12+ dropped cu128; cu13x needs 580 [NVIDIA]; cu126 has sm_80"),
    ("l4-r580", M(LX, "3.12", ["L4"], "580.65.06", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[CUDA guide] L4 is 8.9: the sm_86 cubin of [PyPI] 2.15.0 cu132 runs on it"),
    ("rtx4090-r550-py311", M(LX, "3.11", ["RTX 4090"], "550.54.14", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[CUDA guide] 8.9 runs sm_86 cubins; 550 < 580 so no CUDA 13 [NVIDIA]; newest cu126 is 2.14.1"),
    ("gh200-aarch64-r550", M(LA, "3.12", ["GH200"], "550.90.07", "2.34"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[RELEASE.md] aarch64 cu126 = 8.0, 9.0; 2.15 aarch64 is CUDA 13 only [RFC #190385]"),
    ("gh200-aarch64-r580", M(LA, "3.12", ["GH200"], "580.95.05", "2.34"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 linux-aarch64 wheel is cu132 with sm_90"),
    # ---------------------------------------------------------------- Turing
    ("t4-r580", M(LX, "3.12", ["T4"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 cu132 starts at sm_75 = T4"),
    ("t4-r450.80", M(LX, "3.10", ["T4"], "450.80.02", "2.31"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "[NVIDIA] 450.80.02 runs only 11.x builds; newest cu118 is 2.7.1 with sm_75 (audit #13, U5)"),
    # ---------------------------------------------------------------- Pascal / Volta (uv gets these wrong)
    ("gtx1080-r580-not-cu130", M(LX, "3.12", ["GTX 1080"], "580.95.05", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "uv picks cu130 from the driver alone; [CUDA 13.0 notes, RELEASE.md] cu13x starts at sm_75: "
     "only cu126 (sm_60 cubin runs on 6.1) has Pascal kernels; [RFC #190385] 2.15 has no cu126"),
    ("v100-r580-not-cu130", M(LX, "3.12", ["V100"], "580.95.05", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "same as Pascal: Volta sm_70 is only in cu126 from 2.11 on [PR #175253]"),
    ("v100-r535", M(LX, "3.11", ["V100"], "535.183.01", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[RELEASE.md] cu126 = 5.0..9.0 incl. 7.0; 535 >= 525.60.13 [NVIDIA]"),
    ("p100-r470", M(LX, "3.10", ["P100"], "470.256.02", "2.31"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "Pascal on R470 (CUDA 11.4 driver) runs only cu11x [NVIDIA]; cu118 2.7 has sm_60 [build_cuda.sh]"),
    ("v100-plus-rtx5090", M(LX, "3.12", ["V100", "RTX 5090"], "580.95.05", "2.35"), None, (),
     "2.10.0", "cu128", None, [],
     "one build for both: only 2.8-2.10 cu128 has sm_70 AND sm_120 [build_cuda.sh @00c7a380, PyPI 2.10]"),
    # ---------------------------------------------------------------- Blackwell
    ("rtx5090-r575", M(LX, "3.12", ["RTX 5090"], "575.57.08", "2.39"), None, (),
     "2.11.0", "cu128", "cu128", [],
     "sm_120 needs cu128+ [RELEASE.md]; 575 < 580 rules out cu13x [NVIDIA]; 2.12 dropped cu128 [RFC #178665]"),
    ("rtx5090-r570", M(LX, "3.12", ["RTX 5090"], "570.86.10", "2.39"), None, (),
     "2.11.0", "cu128", "cu128", [],
     "as above with the first R570 driver"),
    ("rtx5090-r580", M(LX, "3.13", ["RTX 5090"], "580.82.07", "2.39"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 cu132 has sm_120"),
    ("rtx5090-driver-unknown", M(LX, "3.12", ["RTX 5090"], None, "2.39"), None, (),
     "2.15.0", "cu132", None, [],
     "what-if without --driver: no driver constraint, a note states the >= 580 requirement"),
    ("rtx5090-py38-blocked", M(LX, "3.8", ["RTX 5090"], "575.57.08", "2.35"), None, (),
     None, None, None, ["python.unsupported"],
     "[PyPI] 3.8 wheels end at 2.4.1, which has no sm_120; 2.11.0 cu128 fits but needs Python 3.10+"),
    ("b200-r570", M(LX, "3.12", ["B200"], "570.172.08", "2.35"), None, (),
     "2.11.0", "cu128", "cu128", [],
     "sm_100 is in cu128 [PR #175253]; CUDA 13 needs 580 [NVIDIA]"),
    ("b200-r580", M(LX, "3.12", ["B200"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 cu132 has sm_100"),
    ("b300-r580", M(LX, "3.12", ["B300"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[CUDA guide, torch DEVICE_REQUIREMENT] 10.3 runs sm_100 cubins"),
    ("gb10-aarch64-r580", M(LA, "3.12", ["DGX Spark"], "580.95.05", "2.39"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 aarch64 cu132 has sm_120, which runs on 12.1 [CUDA guide]"),
    # ---------------------------------------------------------------- Kepler
    ("k80-r470", M(LX, "3.10", ["K80"], "470.256.02", "2.31"), None, (),
     "2.3.1", "cu118", "cu118", [],
     "[build_cuda.sh] cu118 keeps 3.7 through 2.7, but 2.4+ bundle cuDNN 9 whose support starts at "
     "5.0 [cuDNN 9.0.0 support matrix]: 2.3.1 (cuDNN 8) is the last with working convolutions (audit #42)"),
    ("k80-torch-ge-2.7-blocked", M(LX, "3.10", ["K80"], "470.256.02", "2.31"), ">=2.7", (),
     None, None, None, ["gpu.unsupported"],
     "no 2.7+ build with a Kepler-capable cuDNN (cuDNN 9 starts at 5.0); fix names 2.3.1"),
    ("k80-py314-blocked", M(LX, "3.14", ["K80"], "470.256.02", "2.31"), None, (),
     None, None, None, ["python.unsupported"],
     "the cheapest change is Python: 2.6.0 cu118 has sm_37 but wheels for 3.9-3.13 only [PyPI]"),
    # ---------------------------------------------------------------- CPU / Windows / macOS
    ("cpu-linux-py312", M(LX, "3.12", no_gpu=True, glibc="2.35"), None, (),
     "2.15.0", "cpu", "cpu", [],
     "[PyPI] plain PyPI on linux-x86_64 is the cu132 build: the CPU index avoids its CUDA libraries"),
    ("cpu-linux-py38", M(LX, "3.8", no_gpu=True, glibc="2.35"), None, (),
     "2.4.1", "cpu", "cpu", [],
     "[PyPI] the last linux-x86_64 wheel for Python 3.8 is 2.4.1; a note says 2.15 needs 3.11+"),
    ("cpu-linux-aarch64", M(LA, "3.12", no_gpu=True, glibc="2.35"), None, (),
     "2.15.0", "cpu", "cpu", [],
     "[PyPI] PyPI's 2.15.0 aarch64 wheel is a CUDA build: CPU comes from the cpu index"),
    ("windows-cpu", M(WIN, "3.12", no_gpu=True), None, (),
     "2.15.0", "cpu", None, [],
     "[PyPI] win_amd64 wheels are +cpu builds: plain pip is right"),
    ("windows-rtx4090-r560", M(WIN, "3.12", ["RTX 4090"], "560.94"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[PyPI] Windows PyPI is CPU: the index URL is required; 560.94 >= 527.41 (12.x Windows) [NVIDIA]"),
    ("windows-rtx4090-r581", M(WIN, "3.12", ["RTX 4090"], "581.57"), None, (),
     "2.15.0", "cu132", "cu132", [],
     "Windows driver 581 >= 580 runs CUDA 13 [NVIDIA/uv]; cu132 via the index (PyPI is CPU)"),
    ("macos-arm64-py312", M(MAC, "3.12"), None, (),
     "2.15.0", "cpu", None, [],
     "[PyPI] macosx_14_0_arm64 wheels for 3.11-3.15: plain PyPI (MPS)"),
    ("macos-arm64-py39", M(MAC, "3.9"), None, (),
     "2.8.0", "cpu", None, [],
     "[PyPI] 2.9 requires Python >= 3.10: the last cp39 macOS arm64 wheel is 2.8.0"),
    ("macos-x86_64-py311", M(MACX, "3.11"), None, (),
     "2.2.2", "cpu", None, [],
     "[PyPI] macosx_10_9_x86_64 wheels end at 2.2.2 (none from 2.3)"),
    ("macos-x86_64-torch-ge-2.3", M(MACX, "3.11"), ">=2.3", (),
     None, None, None, ["platform.unsupported"],
     "[PyPI] no Intel-mac wheel from 2.3 on; the fix names 2.2.2"),
    ("macos-x86_64-py313", M(MACX, "3.13"), None, (),
     None, None, None, ["python.unsupported"],
     "[PyPI] 2.2.2 has cp38-cp312: installing Python 3.12 or older is cheaper than new hardware"),
    # ---------------------------------------------------------------- glibc
    ("centos7-h100-r535", M(LX, "3.10", ["H100"], "535.183.01", "2.17"), None, (),
     "2.6.0", "cu124", None, [],
     "[PyPI] 2.7+ are manylinux_2_28; 2.6.0's PyPI wheel (cu124) needs glibc 2.17 (GLIBC_ symbols + RELEASE.md); "
     "2.6 cu126 is assumed 2.28 [RFC #126551]"),
    ("centos7-cpu", M(LX, "3.11", no_gpu=True, glibc="2.17"), None, (),
     "2.6.0", "cpu", "cpu", [],
     "2.6's CPU build is manylinux2014 (glibc 2.17) [pytorch#141565], so the CPU index, not "
     "PyPI's multi-GB cu124 build (audit #10, S8)"),
    ("glibc-2.12-blocked", M(LX, "3.10", ["H100"], "535.183.01", "2.12"), None, (),
     None, None, None, ["glibc.too-old"],
     "every PyTorch 2.x Linux wheel needs glibc >= 2.17 [RELEASE.md, PyPI tags]"),
    # ---------------------------------------------------------------- drivers under WSL, no driver
    ("wsl-windows-driver", M(LX, "3.12", ["RTX 4090"], "560.94", "2.39", wsl=True), None, (),
     "2.14.1", "cu126", "cu126", [],
     "WSL uses the Windows host driver: Windows minimums apply (560.94 < 580) [NVIDIA CUDA on WSL]"),
    ("gpu-on-pci-no-driver", M(LX, "3.12", glibc="2.35", gpu_without_driver=True), None, (),
     None, None, None, ["driver.missing"],
     "NVML cannot load: the GPU's compute capability (which decides the build) is unknown"),
    # ---------------------------------------------------------------- --torch constraints
    ("torch-range-h100", M(LX, "3.12", ["H100"], "580.95.05", "2.35"), ">=2.4,<2.8", (),
     "2.7.1", "cu128", "cu128", [],
     "newest in range is 2.7.1; its cu128 build has sm_90 [RELEASE.md 2.7 experimental 12.8]"),
    ("torch-pin-rtx5090", M(LX, "3.12", ["RTX 5090"], "575.57.08", "2.35"), "==2.7.1", (),
     "2.7.1", "cu128", "cu128", [],
     "2.7 is the first release with sm_120 (cu128) [RELEASE.md]"),
    ("torch-too-old-spec", M(LX, "3.12", no_gpu=True, glibc="2.35"), "<2.0", (),
     None, None, None, ["constraint.no-release"],
     "recipes know 2.0.0 onward"),
    ("torch-2.15-on-pascal", M(LX, "3.12", ["GTX 1080"], "580.95.05", "2.35"), "==2.15.0", (),
     None, None, None, ["gpu.unsupported"],
     "[RFC #190385] 2.15 dropped cu126, the only build with Pascal kernels"),
    # ---------------------------------------------------------------- companions
    ("with-vision-audio-h100", M(LX, "3.12", ["H100"], "580.95.05", "2.35"), None,
     ("torchvision", "torchaudio"),
     "2.15.0", "cu132", None, [],
     "[PyPI] torchaudio 2.11.1 (2026-10-28) requires torch>=2.11 (audit S1), so 2.15.0 with it; "
     "the older pairing capped torch at 2.12.1"),
    ("with-vision-h100", M(LX, "3.12", ["H100"], "580.95.05", "2.35"), None, ("torchvision",),
     "2.15.0", "cu132", None, [],
     "[PyPI] torchvision 0.29.2 requires torch>=2.14.0, which admits 2.15.0 (a note says no exact pin)"),
    ("with-vision-torch-2.11", M(LX, "3.12", ["H100"], "580.95.05", "2.35"), "==2.11.0",
     ("torchvision", "torchaudio"),
     "2.11.0", "cu130", None, [],
     "[PyPI] torchvision 0.26.0 pins torch==2.11.0; 2.11.0's PyPI build is cu130 with sm_90"),
    # ---------------------------------------------------------------- Python versions
    ("free-threaded-314t", M(LX, "3.14t", ["H100"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 has cp314t wheels"),
    ("free-threaded-313t", M(LX, "3.13t", ["H100"], "580.95.05", "2.35"), None, (),
     "2.12.0", "cu132", "cu132", [],
     "[PyPI] cp313t wheels stop at 2.12.0; its cu132 build [RELEASE.md] is the newest CUDA"),
    ("py315", M(LX, "3.15", ["H100"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] 2.15.0 is the first release with cp315"),
    ("py316-blocked", M(LX, "3.16", ["H100"], "580.95.05", "2.35"), None, (),
     None, None, None, ["python.unsupported"],
     "[PyPI] no release has cp316 wheels"),
    # ---------------------------------------------------------------- AMD
    ("mi300x-linux", M(LX, "3.12", ["MI300X"], glibc="2.35"), None, (),
     "2.14.1", "rocm7.2", "rocm7.2", [],
     "[test-infra #8497] release/2.14 builds rocm7.2 (gfx942 [uv]) and rocm7.14 (audit #32, S4); "
     "no ROCm build of 2.15 is known"),
    ("mi300x-windows-blocked", M(WIN, "3.12", ["MI300X"]), None, (),
     None, None, None, ["gpu.unsupported"],
     "ROCm wheels are Linux x86_64 only [uv, test-infra]"),
    ("jetson-orin-blocked", M(LA, "3.10", ["Jetson AGX Orin"], "540.4.0", "2.35"), None, (),
     None, None, None, ["gpu.unsupported"],
     "[torch DEVICE_REQUIREMENT] integrated 8.7 does not run discrete sm_80 cubins; no wheel has sm_87"),
    # ================================================= issue 15 point 2: finer constraints
    # ---------------------------------------------------------------- macOS floor from wheel tags
    ("macos13-arm64", M(MAC, "3.12", macos="13.6"), None, (),
     "2.11.0", "cpu", None, [],
     "[PyPI] 2.12+ arm64 wheels are only macosx_14_0_arm64, 2.11.0's macosx_11_0 (audit #44, U11)"),
    ("macos14-arm64", M(MAC, "3.12", macos="14.0"), None, (),
     "2.15.0", "cpu", None, [],
     "[PyPI] macosx_14_0_arm64 installs on macOS 14.0"),
    ("macos12-torch-ge-2.12-blocked", M(MAC, "3.12", macos="12.7"), ">=2.12", (),
     None, None, None, ["macos.too-old"],
     "[PyPI] no 2.12+ arm64 wheel below macOS 14 (pip skips macosx_14_0 tags on 12.7)"),
    ("macos-version-unknown", M(MAC, "3.12"), None, (),
     "2.15.0", "cpu", None, [],
     "no macOS version known: no conclusion drawn on it"),
    # ---------------------------------------------------------------- Requires-Python at patch level
    ("py3.14.1-torchvision", M(LX, "3.14.1", ["H100"], "580.95.05", "2.35"), None, ("torchvision",),
     "2.10.0", "cu130", "cu130", [],
     "[PyPI] torchvision >= 0.26 declares Requires-Python '>=3.10,!=3.14.1' (audit S3, U12); 0.25.0 "
     "(torch 2.10.0) says '>=3.10'; 2.10's newest CUDA build is cu130 [RELEASE.md]"),
    ("py3.14.1-torch-only", M(LX, "3.14.1", ["H100"], "580.95.05", "2.35"), None, (),
     "2.15.0", "cu132", None, [],
     "[PyPI] torch 2.15.0 itself does not exclude 3.14.1"),
    ("py3.14.2-torchvision", M(LX, "3.14.2", ["H100"], "580.95.05", "2.35"), None, ("torchvision",),
     "2.15.0", "cu132", None, [],
     "[PyPI] '!=3.14.1' admits 3.14.2"),
    ("py3.14.1-torchaudio", M(LX, "3.14.1", ["H100"], "580.95.05", "2.35"), None, ("torchaudio",),
     "2.15.0", "cu132", None, [],
     "[PyPI] torchaudio 2.11.1 declares '>=3.10' only"),
    # ---------------------------------------------------------------- cuDNN floor and old GPUs
    ("k40-blocked", M(LX, "3.10", ["K40"], "470.256.02", "2.31"), None, (),
     None, None, None, ["gpu.unsupported"],
     "[build_cuda.sh] the oldest cubin in any 2.x build is sm_37, which does not run on 3.5"),
    ("gtx980-cudnn9-ok", M(LX, "3.12", ["GTX 980"], "535.183.01", "2.35"), None, (),
     "2.14.1", "cu126", "cu126", [],
     "[cuDNN 9.0.0 support matrix] cuDNN 9 starts at 5.0: Maxwell 5.2 keeps cuDNN; cu126 has sm_50"),
    ("windows-k80-r472", M(WIN, "3.10", ["K80"], "472.98"), None, (),
     "2.3.1", "cu118", "cu118", [],
     "[builder windows/cuda118.bat] 3.7 in the Windows lists (audit #6); cuDNN 9 from 2.4 (#42)"),
    ("windows-gtx1080-r472", M(WIN, "3.11", ["GTX 1080"], "472.98"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "[measured 2.7.1+cu118 Windows] sm_61 in the list; 472 runs only 11.x [NVIDIA]"),
    ("t4-r515-uv-agrees", M(LX, "3.11", ["T4"], "515.105.01", "2.31"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "[audit U5] uv gives 2.7.1+cu118 too: 2.7 cu118 has sm_75"),
    # ---------------------------------------------------------------- aarch64 CUDA builds 2.4-2.8
    ("gh200-torch-lt-2.9", M(LA, "3.12", ["GH200"], "550.90.07", "2.34"), "<2.9", (),
     "2.8.0", "cu129", "cu129", [],
     "[test-infra 21480431a] 2.8 aarch64 is cu129; aarch64_ci_build.sh 12.9 '8.0;9.0;10.0;12.0' (audit #20)"),
    ("gh200-torch-lt-2.8", M(LA, "3.12", ["GH200"], "550.90.07", "2.34"), "<2.8", (),
     "2.7.1", "cu128", "cu128", [],
     "[test-infra bad60f65d] 2.7 aarch64 cu128 '9.0;10.0;12.0' (audit #15)"),
    ("gh200-torch-lt-2.7", M(LA, "3.12", ["GH200"], "550.90.07", "2.34"), "<2.7", (),
     "2.6.0", "cu126", "cu126", [],
     "[test-infra b1bdc3323] 2.6 aarch64 cu126 '9.0' (audit #11)"),
    ("gh200-torch-lt-2.6", M(LA, "3.12", ["GH200"], "550.90.07", "2.34"), "<2.6", (),
     "2.5.1", "cu124", "cu124", [],
     "[test-infra 5510fd052; builder release/2.4] aarch64 cu124 '9.0' (audit #8)"),
    ("gb200-torch-lt-2.9", M(LA, "3.12", ["GB200"], "570.172.08", "2.34"), "<2.9", (),
     "2.8.0", "cu129", "cu129", [],
     "2.8 aarch64 cu129 has sm_100 (audit #20); Blackwell needs >= 570.26 [NVIDIA arch matrix]"),
    # ---------------------------------------------------------------- Intel xpu, AMD ROCm per release
    ("arc-a770-linux-xpu", M(LX, "3.12", ["Arc A770"], glibc="2.39"), None, (),
     "2.15.0", "xpu", "xpu", [],
     "[PyTorch get_start_xpu] Arc A-Series is validated for the xpu wheels (audit U13)"),
    ("arc-b580-windows-xpu", M(WIN, "3.12", ["Arc B580"]), None, (),
     "2.15.0", "xpu", "xpu", [],
     "[PyTorch get_start_xpu] Arc B-Series on Windows 11"),
    ("gpu-max-torch-lt-2.5-cpu", M(LX, "3.11", ["Max 1550"], glibc="2.35"), "<2.5", (),
     "2.4.1", "cpu", "cpu", [],
     "[PyTorch get_start_xpu] Intel GPU support starts with 2.5: before, the CPU build"),
    ("mi300x-torch-lt-2.14", M(LX, "3.12", ["MI300X"], glibc="2.35"), "<2.14", (),
     "2.13.0", "rocm7.2", "rocm7.2", [],
     "[test-infra] 2.13's newest ROCm is 7.2"),
    # ---------------------------------------------------------------- glibc floors of 2.6 (audit #10)
    ("amazon-linux-2-cpu", M(LX, "3.10", no_gpu=True, glibc="2.26"), None, (),
     "2.6.0", "cpu", "cpu", [],
     "[pytorch#141565] 2.6 CPU is manylinux2014: the CPU index, not PyPI's cu124 (audit S8)"),
    ("h100-centos7-r535", M(LX, "3.10", ["H100"], "535.183.01", "2.17"), None, (),
     "2.6.0", "cu124", None, [],
     "[PyPI] 2.6.0's PyPI build is cu124 manylinux1 (glibc 2.17) with sm_90 (audit U15)"),
    # ---------------------------------------------------------------- companions per index
    ("h100-r550-torchvision-cu126-pin", M(LX, "3.12", ["H100"], "550.90.07", "2.35"), None,
     ("torchvision",),
     "2.14.1", "cu126", "cu126", [],
     "PyPI's torchvision 0.29.2 is +cu132 (audit S2): the cu126 index is pinned to 0.29.1 (unverified)"),
    # ================================================= issue 12 point 4: driver vs GPU generation
    ("rtx4090-r470-driver-too-old", M(LX, "3.11", ["RTX 4090"], "470.256.02", "2.35"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Ada 8.9 first CUDA 11.8 -> driver >= 520.61.05 [CUDA RN Table 3]"),
    ("rtx5090-r550-driver-too-old", M(LX, "3.12", ["RTX 5090"], "550.90.07", "2.39"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Blackwell 12.0 first CUDA 12.8 -> driver >= 570.26 [CUDA RN Table 3]"),
    ("l40s-r515-driver-too-old", M(LX, "3.11", ["L40S"], "515.105.01", "2.35"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Ada: >= 520.61.05; R515 predates CUDA 11.8"),
    ("rtx5090-windows-566-driver-too-old", M(WIN, "3.12", ["RTX 5090"], "566.36"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Blackwell: CUDA 12.8 GA Windows driver 570.65 [CUDA RN Table 3]"),
    ("b200-r535-driver-too-old", M(LX, "3.12", ["B200"], "535.183.01", "2.35"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA GPU Operator, cloud-native-docs#184] HGX B200 needs >= 570.133.20"),
    ("b200-r570.124-driver-too-old", M(LX, "3.12", ["B200"], "570.124.06", "2.35"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA GPU Operator] 570.124.06 < 570.133.20, although Blackwell's generation floor is 570.26"),
    ("h100-windows-516-driver-too-old", M(WIN, "3.10", ["H100"], "516.94"), None, (),
     None, None, None, ["driver.too-old-for-gpu"],
     "[NVIDIA arch matrix] Hopper: CUDA 11.8 GA Windows driver 520.06"),
    ("a100-r450.80-runs", M(LX, "3.10", ["A100"], "450.80.02", "2.31"), None, (),
     "2.7.1", "cu118", "cu118", [],
     "[NVIDIA arch matrix] Ampere from CUDA 11.0 (450.36.06): 450.80.02 runs it and cu118"),
]


@pytest.mark.parametrize("cid,machine,spec,extras,torch,variant,index,blockers,why", CASES,
                         ids=[c[0] for c in CASES])
def test_machine_table(cid, machine, spec, extras, torch, variant, index, blockers, why):
    plan = recommend(machine, spec, extras)
    got = (plan.torch, plan.variant, plan.index_url, [b.id for b in plan.blockers])
    want = (torch, variant, PYTORCH + index if index else None, blockers)
    assert got == want, f"{cid}: {why}\nnotes: {plan.notes}\nblockers: {plan.blockers}"
    if blockers:
        assert plan.commands == {"pip": None, "uv": None, "conda": None}
        assert all(b.fix for b in plan.blockers)
    else:
        assert plan.ok and plan.commands["pip"] and plan.commands["uv"]
        assert f"torch=={torch}" in plan.commands["pip"]
        assert (f"--index-url {PYTORCH}{index}" in plan.commands["pip"]) == bool(index)


def test_table_is_big_and_varied():
    assert len(CASES) >= 90
    platforms = {c[1].platform for c in CASES}
    assert platforms == {LX, LA, WIN, MAC, MACX}
    pythons = {c[1].python for c in CASES}
    assert {"3.8", "3.9", "3.10", "3.12", "3.14"} <= pythons
    drivers = {c[1].driver.split(".")[0] for c in CASES if c[1].driver}
    assert {"450", "470", "520", "525", "535", "550", "570", "575", "580"} <= drivers
    assert {c[1].glibc for c in CASES if c[1].glibc} >= {"2.12", "2.17", "2.35"}


def test_pascal_on_r580_is_not_what_uv_picks():
    """uv --torch-backend=auto maps driver >= 580 to cu130 (crates/uv-torch); a GTX 1080 has no
    kernels there (CUDA 13 starts at sm_75)."""
    plan = recommend(M(LX, "3.12", ["GTX 1080"], "580.95.05", "2.35"))
    assert plan.variant == "cu126" and not plan.variant.startswith("cu13")


def test_rtx5090_r575_notes_say_what_newer_needs():
    plan = recommend(M(LX, "3.12", ["RTX 5090"], "575.57.08", "2.39"))
    assert (plan.torch, plan.variant) == ("2.11.0", "cu128")
    text = " ".join(plan.notes)
    assert "2.15.0" in text and ">= 580" in text and "You get 2.11.0 with cu128 now" in text


def test_python38_blocker_names_the_smallest_fix():
    plan = recommend(M(LX, "3.8", ["RTX 5090"], "575.57.08", "2.35"))
    (b,) = plan.blockers
    assert "2.11.0" in b.message and "3.8" in b.message
    assert b.fix.startswith("install Python 3.") and "3.10-3.14" in b.fix.replace("\u2013", "-")


def test_k80_blocker_names_the_last_supporting_release():
    plan = recommend(M(LX, "3.10", ["K80"], "470.256.02", "2.31"), ">=2.7")
    (b,) = plan.blockers
    assert "sm_37" in b.message and "2.3.1" in b.fix and "cu118" in b.fix


def test_windows_cuda_always_needs_the_index_url():
    for gpu, driver in (("RTX 4090", "560.94"), ("RTX 4090", "581.57"), ("A100", "537.13")):
        plan = recommend(M(WIN, "3.12", [gpu], driver))
        assert plan.variant.startswith("cu") and plan.index_url, (gpu, driver)
        assert any("CPU-only" in n for n in plan.notes)
