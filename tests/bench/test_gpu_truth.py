"""bench/gpu_truth.py: the nvidia-smi XML comparison (pure), the step runner, the summary, and the
whole script in --dry-run mode (GPU-only steps skipped with the reason)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gpu_truth  # noqa: E402
import smi_compare  # noqa: E402

FIX = ROOT / "tests" / "fixtures"
XML = FIX / "nvidia_smi" / "h200_1gpu.xml"
NVLINK = FIX / "nvidia_smi" / "h200_1gpu_nvlink.txt"


def matching_snapshot() -> dict:
    """The key-contract snapshot reduced to the one H200 of the fixture XML, with the facts that
    document says (as NVML would report them)."""
    snap = json.loads((FIX / "snapshots" / "example_8xh100.json").read_text())
    gpu = copy.deepcopy(snap["nvidia"]["gpus"][0])
    gpu.update(
        name="NVIDIA H200", uuid="GPU-00000000-aaaa-bbbb-cccc-000000000200", pci_bus_id="00000000:19:00.0",
        memory={"total_bytes": 143771 * 2**20, "used_bytes": 1 * 2**20},
        ecc={"mode_current": True, "mode_pending": True, "volatile_uncorrected": 0,
             "aggregate_uncorrected": 0, "volatile_corrected": 0},
        row_remap={"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False},
        temperature_c=30, power={"draw_w": 75.1, "limit_w": 700.0},
        clocks={"sm_mhz": 345, "sm_max_mhz": 1980, "mem_mhz": 3201, "mem_max_mhz": 3201},
        pcie={"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16},
        nvlink={"up": 0, "down": 2, "total": 2}, mig_mode={"current": False, "pending": False},
        persistence_mode=True, compute_mode="default",
    )
    snap["nvidia"].update(driver_version="580.159.04", cuda_driver_version="13.0", gpu_count=1, gpus=[gpu])
    return snap


def smi() -> dict:
    return smi_compare.parse_smi_xml(XML.read_text())


# ------------------------------------------------------------------------------ parsing

def test_parse_fixture_reads_every_field():
    doc = smi()
    assert (doc["driver_version"], doc["cuda_version"], doc["attached_gpus"]) == ("580.159.04", "13.0", 1)
    g = doc["gpus"][0]
    assert g["name"] == "NVIDIA H200" and g["pci_bus_id"] == "00000000:19:00.0"
    assert g["memory_total_mib"] == 143771 and g["memory_used_mib"] == 1
    assert g["ecc_current"] is True and g["ecc_volatile_uncorrected"] == 0
    assert g["power_draw_w"] == 75.12 and g["power_limit_w"] == 700.0  # instant_power_draw, current_power_limit
    assert (g["pcie_gen_max"], g["pcie_width_current"]) == (5, 16)
    assert (g["sm_max_mhz"], g["persistence_mode"], g["compute_mode"], g["mig_current"]) == (1980, True, "Default", False)
    assert g["remap_pending"] is False and g["vbios_version"] == "96.00.AF.00.01"


def test_parse_old_layouts():
    """Pre-535 power_readings/power_limit and single_bit/double_bit ECC totals; N/A is None."""
    xml = """<nvidia_smi_log><driver_version>470.1</driver_version><gpu id="0000:3B:00.0">
      <product_name>Tesla V100</product_name><ecc_errors><volatile><double_bit><total>2</total></double_bit>
      <single_bit><total>7</total></single_bit></volatile></ecc_errors>
      <power_readings><power_draw>40.5 W</power_draw><power_limit>300.00 W</power_limit></power_readings>
      <temperature><gpu_temp>N/A</gpu_temp></temperature></gpu></nvidia_smi_log>"""
    g = smi_compare.parse_smi_xml(xml)["gpus"][0]
    assert (g["ecc_volatile_uncorrected"], g["ecc_volatile_corrected"]) == (2, 7)
    assert (g["power_draw_w"], g["power_limit_w"], g["temperature_c"]) == (40.5, 300.0, None)
    assert g["pci_bus_id"] == "0000:3B:00.0"  # falls back to the gpu id attribute


@pytest.mark.parametrize("text", ["", "<nvidia_smi_log><gpu>", "<html/>",
                                  '<!DOCTYPE x [<!ENTITY e "boom">]><nvidia_smi_log/>'])
def test_parse_refuses_bad_xml(text):
    with pytest.raises(ValueError):
        smi_compare.parse_smi_xml(text)


def test_parse_nvlink_status():
    text = "GPU 0: H100 (UUID: GPU-x)\n\t Link 0: 26.562 GB/s\n\t Link 1: <inactive>\nGPU 1: H100 (UUID: GPU-y)\n"
    assert smi_compare.parse_nvlink_status(text) == {0: {"up": 1, "down": 1, "total": 2}}
    assert smi_compare.parse_nvlink_status(NVLINK.read_text()) == {0: {"up": 0, "down": 2, "total": 2}}


# ------------------------------------------------------------------------------ comparison

def test_matching_snapshot_agrees_everywhere():
    rows = smi_compare.compare(matching_snapshot(), smi(), smi_compare.parse_nvlink_status(NVLINK.read_text()))
    by = {(r["gpu"], r["field"]): r for r in rows}
    assert [r for r in rows if r["status"] != "agree"] == []
    assert len(rows) == 3 + 29 + 2
    # volatile fields agree within their tolerance (temperature 30 vs 29, power 75.1 vs 75.12)
    assert by[(0, "temperature_c")]["note"] == "volatile"
    assert by[(0, "memory.total_mib")]["snapshot"] == 143771


def test_planted_mismatches_differ_and_name_the_field():
    snap = matching_snapshot()
    g = snap["nvidia"]["gpus"][0]
    g["ecc"]["aggregate_uncorrected"] = 3             # NVML read a counter nvidia-smi does not see
    g["power"]["limit_w"] = 500.0                      # enforced limit read wrongly
    g["temperature_c"] = 60                            # beyond the 3 C tolerance
    g["pci_bus_id"] = "00000000:19:00.0".upper()       # case alone is not a difference
    g["pcie"]["width_max"] = {"unavailable": "NVML_ERROR_NOT_SUPPORTED"}
    snap["nvidia"]["driver_version"] = "580.65.06"
    rows = smi_compare.compare(snap, smi())
    differ = {r["field"] for r in rows if r["status"] == "differ"}
    assert differ == {"ecc.aggregate_uncorrected", "power.limit_w", "temperature_c", "driver_version"}
    missing = [r for r in rows if r["status"] == "missing"]
    assert [(r["field"], r["snapshot"]) for r in missing] == [
        ("pcie.width_max", "unavailable: NVML_ERROR_NOT_SUPPORTED")]
    md = smi_compare.to_markdown(rows)
    assert md.splitlines()[2] == f"{len(rows) - 5} agree, 4 differ, 1 missing"
    assert md.splitlines()[6].startswith("| - | driver_version | 580.65.06 | 580.159.04 | differ |")
    doc = json.loads(smi_compare.to_json(rows))
    assert doc["schema"] == "envcheck.gpu_truth.agreement" and doc["counts"]["differ"] == 4


def test_gpu_missing_on_either_side_is_reported():
    snap = matching_snapshot()
    snap["nvidia"]["gpus"].append(dict(snap["nvidia"]["gpus"][0], index=1, pci_bus_id="00000000:2A:00.0"))
    snap["nvidia"]["gpu_count"] = 2
    rows = smi_compare.compare(snap, smi())
    lost = [r for r in rows if r["field"] == "gpu"]
    assert lost == [{"gpu": 1, "field": "gpu", "snapshot": "NVIDIA H200", "nvidia_smi": None,
                     "status": "missing", "note": "nvidia-smi does not list this GPU"}]
    assert {r["field"]: r["status"] for r in rows}["gpu_count"] == "differ"


def test_snapshot_without_nvml_is_all_missing():
    snap = json.loads((FIX / "snapshots" / "nvidia_no_driver.json").read_text())
    snap = {"nvidia": snap} if "nvidia" not in snap else snap
    rows = smi_compare.compare(snap, smi())
    assert {r["status"] for r in rows} == {"missing"}


# ------------------------------------------------------------------------------ runner pieces

def test_run_cmd_kills_a_hung_command_at_its_limit():
    t0 = time.perf_counter()
    r = gpu_truth.run_cmd([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"], 1.0)
    assert r.timed_out and r.rc is None and r.stdout.strip() == "x"
    assert time.perf_counter() - t0 < 10


def test_run_cmd_missing_program():
    r = gpu_truth.run_cmd(["/nonexistent/nvidia-smi"], 5)
    assert r.error and r.error.startswith("cannot start /nonexistent/nvidia-smi")


def test_summary_lists_figures_next_to_spec_and_floor():
    doc = {
        "dry_run": False, "budget_s": 540, "wall_s": 301.5,
        "machine": {"gpus": ["NVIDIA H200"], "driver": "580.159.04", "cuda_driver": "13.0", "torch": "2.11.0+cu130"},
        "steps": [{"name": "doctor", "status": "ok", "seconds": 3.2, "note": "exit 0: ready"},
                  {"name": "pytest_gpu", "status": "skipped", "seconds": 0.0, "note": "wall budget of 540 s spent"}],
        "agreement": {"agree": 30, "differ": 1, "missing": 2},
        "differ": [{"gpu": 0, "field": "power.limit_w", "snapshot": 500.0, "nvidia_smi": 700.0}],
        "figures": {"validate_quick": [{"check": "memory", "metric": "quick_only", "device": "cuda:0", "value": 1.0,
                                        "unit": "GB/s", "spec": None, "floor": None, "status": "unjudged"}],
                    "validate_standard": [
            {"check": "gemm", "metric": "tflops_bf16", "device": "cuda:0", "value": 701.2, "unit": "TFLOPS",
             "spec": 989.4, "floor": 593.6, "status": "ok"}]},
        "overhead": {"cli": {"gemm": {"bf16": {"n": 8192, "validate_tflops": 700.0, "direct_tflops": 710.0,
                                               "loss": 0.0141}}},
                     "collectives": {"ops": {"all_gather": {"sizes": {"1048576": {"loss": 0.021, "verdict": "PASS"},
                                                                      "67108864": {"loss": 0.003, "verdict": "PASS"}}},
                                             "broadcast": {"skipped": "x"}}},
                     "watcher": {"loss": 0.004, "verdict": "PASS"}},
        "quick_budget": [{"wall_s": 21.4}],
        "doctor_timing": {"median_s": {"bare": 4.1, "doctor": 3.0}, "ratio": 0.73, "repeats": 3},
    }
    text = gpu_truth.render_summary(doc)
    assert text.splitlines()[0] == ("gpu_truth: NVIDIA H200 | driver 580.159.04 | CUDA 13.0 | torch 2.11.0+cu130"
                                    " | 301.5 s of 540 s")
    assert "pytest_gpu        skipped       0.0  wall budget of 540 s spent" in text
    assert "  differ  gpu 0 power.limit_w: snapshot 500.0 vs nvidia-smi 700.0" in text
    assert "gemm      tflops_bf16           cuda:0      701.2 TFLOPS     989.4    593.6  ok" in text
    assert "  bf16   n=8192  validate 700.0  direct 710.0  loss 1.4%" in text
    assert "collectives harness vs direct: worst loss 2.1% (all_gather 1048576 B); 2 PASS, 0 FAIL, 0 NOISY" in text
    assert "watcher on a GEMM: loss 0.4% (target 2%), PASS" in text
    assert "doctor 3.0 s vs import torch + cuda.init 4.1 s (medians of 3): 0.73x" in text
    assert "quick_only" not in text  # one figures table: the standard profile's
    assert len(text.splitlines()) <= 40  # one screen


def test_figures_of_ignores_junk():
    assert gpu_truth.figures_of(None) == [] and gpu_truth.figures_of({"figures": ["x"]}) == []


# ------------------------------------------------------------------------------ the dry run, end to end

def _dry(tmp_path, *extra):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(BENCH / "gpu_truth.py"), "--dry-run", "--out", str(out), *extra],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    return p, out


def test_dry_run_end_to_end_with_fixture_xml(tmp_path):
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(matching_snapshot()))
    p, out = _dry(tmp_path, "--nvidia-smi-xml", str(XML), "--nvlink-status", str(NVLINK), "--snapshot", str(snap),
                  "--skip", "validate_standard", "--budget", "60")
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "summary.json").read_text())
    status = {s["name"]: (s["status"], s["note"]) for s in summary["steps"]}
    assert status["install"] == ("skipped", "dry run: envcheck used as installed here")
    assert status["nvidia_smi"] == ("ok", "dry run: fixture h200_1gpu.xml")
    assert status["doctor"][0] == "ok"
    assert status["compare"] == ("ok", "34 agree, 0 differ, 0 missing")
    assert status["validate_standard"] == ("skipped", "not selected (--steps/--skip)")
    for gpu_step in ("doctor_timing", "pytest_gpu", "validate_quick", "validate_overhead", "quick_budget"):
        assert status[gpu_step] == ("skipped", "dry run: needs a GPU")
    assert (out / "agreement.md").read_text().startswith("# envcheck snapshot vs nvidia-smi -q -x\n\n34 agree")
    assert p.stdout == (out / "summary.txt").read_text()
    assert summary["machine"]["gpus"] == ["NVIDIA H200"]


def test_dry_run_probes_this_machine_and_bundles(tmp_path):
    p, out = _dry(tmp_path, "--steps", "doctor,compare", "--bundle")
    assert p.returncode == 0, p.stderr
    status = {s["name"]: s["status"] for s in json.loads((out / "summary.json").read_text())["steps"]}
    assert status["doctor"] == "ok" and status["compare"] == "skipped"  # no XML without nvidia-smi
    loose = sorted(f.name for f in out.iterdir())
    assert loose == ["gpu_truth_files.tar.gz", "snapshot.json", "summary.json", "summary.txt"]
    import tarfile

    with tarfile.open(out / "gpu_truth_files.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"gpu_truth/doctor.json", "gpu_truth/doctor.log", "gpu_truth/gpu_truth.log"} <= names


def test_budget_spent_skips_the_rest(tmp_path):
    p, out = _dry(tmp_path, "--steps", "doctor", "--budget", "12")
    status = {s["name"]: s for s in json.loads((out / "summary.json").read_text())["steps"]}
    # 12 s budget - 10 s reserve < 5 s left: nothing starts, and it says why
    assert status["doctor"]["status"] == "skipped" and status["doctor"]["note"] == "wall budget of 12 s spent"


def test_bad_options_exit_2(tmp_path):
    p, _ = _dry(tmp_path, "--steps", "doctor,bogus")
    assert p.returncode == 2 and "unknown step(s) bogus" in p.stderr
    p = subprocess.run([sys.executable, str(BENCH / "gpu_truth.py"), "--nvidia-smi-xml", str(XML)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 2 and "--nvidia-smi-xml is for --dry-run" in p.stderr


def test_shim_maps_envcheck_recipes_onto_the_tree(tmp_path):
    """The install fallback (no build backend offline): children find envcheck._recipes."""
    (tmp_path / "sitecustomize.py").write_text(gpu_truth.SHIM.format(root=str(ROOT)))
    code = ("import sys, importlib.util; spec = importlib.util.find_spec('envcheck._recipes'); "
            "print(sys.meta_path[0].__name__, spec.name, spec.origin)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert p.stdout.split() == ["_Recipes", "envcheck._recipes", str(ROOT / "recipes" / "__init__.py")], p.stderr
