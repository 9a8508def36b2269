"""`envcheck install` through Click's CliRunner: every flag, JSON keys, exit codes 0/1/2, --run
with a fake pip runner (nothing is ever installed)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envcheck.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots" / "example_8xh100.json"
WHAT_IF = ["--platform", "linux-x86_64", "--python", "3.12"]
JSON_KEYS = {"schema", "schema_version", "torch", "variant", "cuda", "index_url", "companions",
             "commands", "blockers", "notes", "reasons", "constraint", "with", "machine",
             "newest_known_release", "exit_code", "already_installed", "online", "target"}


@pytest.fixture
def runner():
    return CliRunner()


def _default() -> str:
    """The interpreter install probes without --python: the user's environment (envcheck.target)."""
    from envcheck import target

    return target.default_python().executable


@pytest.fixture
def probed(monkeypatch):
    """Probing returns the contract example (8x H100, driver 550.90.07, Python 3.11 venv)."""
    calls = []
    imports = []

    def fake_collect(python=None, torch_timeout=30.0, progress=None, import_torch=True, **_kw):
        calls.append(python)
        imports.append(import_torch)
        return json.loads(EXAMPLE.read_text())

    monkeypatch.setattr("envcheck.probes.collect", fake_collect)
    return calls


@pytest.fixture
def no_probe(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a fully described machine must not be probed")

    monkeypatch.setattr("envcheck.probes.collect", boom)


def run(runner, *args, **kw):
    return runner.invoke(cli, ["install", *args], **kw)


def test_help_lists_every_flag(runner):
    res = run(runner, "--help")
    assert res.exit_code == 0
    for flag in ("--gpu", "--no-gpu", "--driver", "--python", "--platform", "--glibc", "--torch",
                 "--with", "--format", "--snapshot", "--run", "--yes", "--list-gpus", "--color"):
        assert flag in res.output, flag
    assert "Exit codes: 0 a plan exists, 1 blocked" in res.output


def test_what_if_plan_text(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "RTX 5090", "--driver", "575.57.08", "--glibc", "2.39")
    assert res.exit_code == 0, res.output
    assert "Plan: torch 2.11.0 (cu128)" in res.output
    assert "--index-url https://download.pytorch.org/whl/cu128" in res.output
    assert "Verdict: INSTALLABLE (exit 0)" in res.output
    assert "\x1b[" not in res.output  # not a TTY: no colour


def test_json_has_exactly_the_documented_keys(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "H100", "--driver", "580.95.05", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == JSON_KEYS
    assert doc["schema"] == "envcheck.install" and doc["exit_code"] == 0
    assert doc["torch"] == "2.15.0" and doc["variant"] == "cu132" and doc["index_url"] is None
    assert set(doc["commands"]) == {"pip", "uv", "conda"}
    assert doc["blockers"] == [] and isinstance(doc["notes"], list)
    assert doc["machine"]["gpus"] == [{"name": "H100", "vendor": "nvidia",
                                       "compute_capability": "9.0", "gfx": None}]
    assert doc["machine"]["sources"]["gpus"] == "flag"


def test_blocked_exit_1_with_blockers(runner, no_probe):
    res = run(runner, "--platform", "linux-x86_64", "--python", "3.8", "--gpu", "RTX 5090",
              "--driver", "575.57.08", "--format", "json")
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["torch"] is None and doc["variant"] is None and doc["exit_code"] == 1
    assert doc["commands"] == {"pip": None, "uv": None, "conda": None}
    (b,) = doc["blockers"]
    assert set(b) == {"id", "message", "fix"} and b["id"] == "python.unsupported"


def test_blocked_text(runner, no_probe):
    res = run(runner, "--platform", "macos-x86_64", "--python", "3.11", "--no-gpu", "--torch", ">=2.3")
    assert res.exit_code == 1
    assert "Blocked" in res.output and "platform.unsupported" in res.output
    assert "2.2.2" in res.output and "Verdict: BLOCKED - 1 blocker (exit 1)" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "RTX 9999"], "unknown GPU"),
    (["--gpu", "H100", "--no-gpu"], "exclude each other"),
    (["--driver", "latest"], "--driver"),
    (["--glibc", "two"], "--glibc"),
    (["--platform", "solaris"], "linux-x86_64"),
    (["--torch", "newest please"], "--torch"),
    (["--with", "torchtext"], "torchvision, torchaudio"),
    (["--python", "/no/such/python"], "no such interpreter"),
])
def test_bad_input_exit_2_one_line(runner, no_probe, args, needle):
    res = run(runner, *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    error_lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(error_lines) == 1


def test_snapshot_and_python_path_exclude_each_other(runner, no_probe, tmp_path):
    res = run(runner, "--snapshot", str(EXAMPLE), "--python", str(EXAMPLE))
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_bad_snapshot_file_exit_2(runner, no_probe, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = run(runner, "--snapshot", str(bad))
    assert res.exit_code == 2 and "not valid JSON" in res.output


def test_probes_this_machine_by_default(runner, probed):
    res = run(runner, "--format", "json")
    assert res.exit_code == 0, res.output
    assert probed == [_default()]
    doc = json.loads(res.output)
    assert doc["machine"]["sources"]["gpus"] == "probed"
    assert (doc["torch"], doc["variant"]) == ("2.14.1", "cu126")  # driver 550 < 580: no CUDA 13
    assert doc["commands"]["pip"].startswith("/home/alice/.venv/bin/python -m pip install torch==2.14.1")


def test_flags_override_probed_facts(runner, probed):
    res = run(runner, "--driver", "580.95.05", "--format", "json")
    doc = json.loads(res.output)
    assert (doc["torch"], doc["variant"]) == ("2.15.0", "cu132")
    assert doc["machine"]["sources"]["driver"] == "flag"
    res = run(runner, "--gpu", "GTX 1080", "--driver", "580.95.05", "--format", "json")
    assert json.loads(res.output)["variant"] == "cu126"


def test_python_path_probes_that_interpreter(runner, probed, tmp_path):
    py = tmp_path / "python"
    py.symlink_to(sys.executable)  # --python is checked to be a Python interpreter (envcheck.target)
    res = run(runner, "--python", str(py), "--format", "json")
    assert res.exit_code == 0 and probed == [str(py)]


def test_python_version_is_a_what_if(runner, probed):
    res = run(runner, "--python", "3.8", "--no-gpu", "--format", "json")
    doc = json.loads(res.output)
    assert doc["torch"] == "2.4.1" and doc["machine"]["python"] == "3.8"
    assert doc["commands"]["pip"].startswith("python3.8 -m pip")  # not the probed interpreter


def test_snapshot_file_is_not_probed(runner, no_probe):
    res = run(runner, "--snapshot", str(EXAMPLE), "--format", "json")
    doc = json.loads(res.output)
    assert res.exit_code == 0 and doc["machine"]["sources"]["gpus"] == "snapshot"
    assert doc["torch"] == "2.14.1"


def test_with_companions(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "H100", "--driver", "580.95.05",
              "--with", "torchvision,torchaudio", "--format", "json")
    doc = json.loads(res.output)
    assert doc["with"] == ["torchvision", "torchaudio"]
    # torchaudio 2.11.1 (PyPI, 2026-10-28) requires torch>=2.11: no longer a cap at 2.12.1
    assert doc["torch"] == "2.15.0"
    assert doc["companions"] == {"torchvision": "0.29.2", "torchaudio": "2.11.1"}
    assert "torch==2.15.0 torchvision==0.29.2 torchaudio==2.11.1" in doc["commands"]["pip"]


def test_no_gpu_and_platforms(runner, no_probe):
    for platform, index in (("linux-x86_64", "https://download.pytorch.org/whl/cpu"),
                            ("windows-x86_64", None), ("macos-arm64", None)):
        res = run(runner, "--platform", platform, "--python", "3.12", "--no-gpu", "--format", "json")
        doc = json.loads(res.output)
        assert (doc["variant"], doc["index_url"]) == ("cpu", index), platform


def test_torch_constraint(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "H100", "--driver", "580", "--torch", ">=2.4,<2.8",
              "--format", "json")
    doc = json.loads(res.output)
    assert doc["torch"] == "2.7.1" and doc["constraint"] == "<2.8,>=2.4"
    res = run(runner, *WHAT_IF, "--no-gpu", "--torch", "2.5.1", "--format", "json")
    assert json.loads(res.output)["torch"] == "2.5.1"


def test_glibc_flag(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "H100", "--driver", "535.183.01", "--glibc", "2.12")
    assert res.exit_code == 1 and "glibc.too-old" in res.output


def test_list_gpus(runner, no_probe):
    res = run(runner, "--list-gpus")
    assert res.exit_code == 0 and "GeForce RTX 5090" in res.output and "Tesla K80" in res.output


def test_color_flag(runner, no_probe):
    res = run(runner, *WHAT_IF, "--no-gpu", "--color")
    assert "\x1b[" in res.output
    res = run(runner, *WHAT_IF, "--no-gpu", env={"NO_COLOR": "1"})
    assert "\x1b[" not in res.output


# -------------------------------------------------------------------------------------- --run


@pytest.fixture
def fake_pip(monkeypatch):
    calls = []

    def fake_run_pip(python, args, echo=None):
        calls.append((python, list(args)))
        if echo:
            echo("Successfully installed torch (fake)")
        return fake_run_pip.rc

    fake_run_pip.rc = 0
    monkeypatch.setattr("envcheck.actions.run_pip", fake_run_pip)
    return fake_run_pip, calls


def test_run_yes_installs_with_the_target_interpreter_then_reruns_doctor(runner, probed, fake_pip):
    _, calls = fake_pip
    res = run(runner, "--run", "--yes")
    assert calls == [("/home/alice/.venv/bin/python",
                      ["torch==2.14.1", "--index-url", "https://download.pytorch.org/whl/cu126"])]
    assert probed == [_default(), "/home/alice/.venv/bin/python"]  # probe, then the doctor re-run
    assert "Plan: torch 2.14.1 (cu126)" in res.output
    assert "envcheck doctor" in res.output  # the doctor's report follows
    assert res.exit_code in (0, 1)  # the doctor's verdict on the (fake) result


def test_run_asks_and_no_means_nothing_runs(runner, probed, fake_pip):
    _, calls = fake_pip
    res = run(runner, "--run", input="n\n")
    assert res.exit_code == 1 and calls == []
    assert "Run this pip command now?" in res.output


def test_run_asks_and_yes_runs(runner, probed, fake_pip):
    _, calls = fake_pip
    run(runner, "--run", input="y\n")
    assert len(calls) == 1


def test_run_pip_failure_exit_1(runner, probed, fake_pip):
    fake, calls = fake_pip
    fake.rc = 2
    res = run(runner, "--run", "--yes")
    assert res.exit_code == 1 and len(calls) == 1 and probed == [_default()]  # no doctor re-run


def test_run_blocked_plan_runs_nothing(runner, probed, fake_pip):
    _, calls = fake_pip
    res = run(runner, "--run", "--yes", "--gpu", "K80", "--torch", ">=2.8")
    assert res.exit_code == 1 and calls == []


def test_run_needs_a_real_interpreter(runner, no_probe, fake_pip):
    _, calls = fake_pip
    res = run(runner, *WHAT_IF, "--no-gpu", "--run", "--yes")
    assert res.exit_code == 2 and calls == [] and "--run installs into a probed interpreter" in res.output


def test_run_json_is_one_document(runner, probed, fake_pip):
    res = run(runner, "--run", "--yes", "--format", "json")
    doc = json.loads(res.stdout)
    assert set(doc) == {"install", "run", "doctor"}
    assert doc["run"]["argv"][:4] == ["/home/alice/.venv/bin/python", "-m", "pip", "install"]
    assert doc["run"]["returncode"] == 0 and "findings" in doc["doctor"]


# ------------------------------------------------------------------ issue 12: install polish


def test_list_gpus_shows_capability_and_accepted_forms(runner, no_probe):
    out = run(runner, "--list-gpus").output
    assert re.search(r"Tesla K80\s+sm_37 \(3\.7\)\s+Kepler", out)
    assert re.search(r"Instinct MI300X\s+gfx942", out)
    assert "sm_XY or X.Y" in out and "gfxNNNN" in out and "--platform macos-arm64" in out


@pytest.mark.parametrize("name", ["Apple M2", "M3 Max", "apple m1 pro"])
def test_apple_silicon_points_at_the_macos_platform(runner, no_probe, name):
    res = run(runner, *WHAT_IF, "--gpu", name)
    assert res.exit_code == 2
    assert "--platform macos-arm64" in res.output and "gpus.json" not in res.output


def test_unknown_gpu_error_names_no_internal_file(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "Voodoo 5")
    assert res.exit_code == 2 and "recipes/" not in res.output and "--list-gpus" in res.output


def test_what_if_platform_drops_this_machines_facts(runner, probed):
    res = run(runner, "--platform", "macos-arm64", "--format", "json")
    doc = json.loads(res.output)
    m = doc["machine"]
    assert m["gpus"] == [] and m["driver"] is None and m["glibc"] is None
    assert m["installed_torch"] is None and m["sources"]["python"] == "assumed"
    assert any("Python 3.11 is this machine's" in a for a in m["assumed"])
    assert any(n.startswith("what-if: this machine's glibc, GPUs, driver do not apply") for n in doc["notes"])
    text = run(runner, "--platform", "windows-x86_64").output
    assert "(assumed: this machine's)" in text and "what-if:" in text


def test_other_python_does_not_replace_the_venvs_torch(runner, probed):
    doc = json.loads(run(runner, "--python", "3.12", "--format", "json").output)
    assert doc["machine"]["installed_torch"] is None
    assert not any("replaces" in n for n in doc["notes"])
    doc = json.loads(run(runner, "--format", "json").output)  # the probed 3.11 venv itself
    assert any("2.7.1+cu126 is installed; the command replaces it" in n for n in doc["notes"])


def test_already_right_is_said(runner, no_probe, tmp_path):
    snap = json.loads(EXAMPLE.read_text())
    assert snap["torch"]["status"] == "ok"
    snap["torch"]["version"] = "2.14.1+cu126"  # what the plan for 8x H100 on driver 550 is
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snap))
    doc = json.loads(run(runner, "--snapshot", str(path), "--format", "json").output)
    assert (doc["torch"], doc["variant"]) == ("2.14.1", "cu126") and doc["already_installed"] is True
    assert any("already right" in n for n in doc["notes"])
    assert "already installed, nothing to do" in run(runner, "--snapshot", str(path)).output


def test_mixed_vendor_gpus_get_a_note(runner, no_probe):
    res = run(runner, *WHAT_IF, "--gpu", "RTX 4090", "--gpu", "MI300X", "--driver", "580.95.05",
              "--format", "json")
    doc = json.loads(res.output)
    assert doc["variant"].startswith("cu")
    assert any("Instinct MI300X (gfx942): not used by this" in n for n in doc["notes"])


@pytest.mark.parametrize("gpu,driver,need", [
    ("H100", "470.256.02", "520.61.05"), ("RTX 4090", "470.256.02", "520.61.05"),
    ("RTX 5090", "550.90.07", "570.26"), ("B200", "535.183.01", "570.133.20"),
])
def test_driver_too_old_for_the_gpu_names_the_driver(runner, no_probe, gpu, driver, need):
    res = run(runner, *WHAT_IF, "--gpu", gpu, "--driver", driver, "--format", "json")
    assert res.exit_code == 1
    (b,) = json.loads(res.output)["blockers"]
    assert b["id"] == "driver.too-old-for-gpu" and f">= {need}" in b["fix"]


def test_python_patch_version_is_accepted(runner, no_probe):
    doc = json.loads(run(runner, *WHAT_IF[:2], "--python", "3.14.1", "--no-gpu", "--format",
                         "json").output)
    assert doc["machine"]["python"] == "3.14" and doc["machine"]["python_full"] == "3.14.1"


def test_install_prose_wraps_at_the_terminal_width_commands_do_not():
    """Issue 12: reasons and notes wrap whole words at the terminal's width; the pip command
    stays on one line so it can be copied."""
    from envcheck import recommend
    from envcheck.report import install as render

    plan = recommend.recommend(recommend.what_if_machine(platform="linux-x86_64", python="3.11", gpus=["H100"],
                                                         driver="570.124.06", glibc="2.35"))
    text = render.to_text(plan, columns=60)
    pip = next(ln for ln in text.splitlines() if ln.strip().startswith("pip "))
    assert plan.commands["pip"] in pip
    prose = text.split("\nWhy\n", 1)[1]
    assert all(len(ln) <= 60 for ln in prose.splitlines() if " " in ln.strip()[:60])
    assert " ".join(prose.split()) == " ".join(render.to_text(plan).split("\nWhy\n", 1)[1].split())
