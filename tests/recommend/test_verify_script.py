"""scripts/verify_torch_metadata.py's pure parts (no network): index parsing, glibc floor,
companion pairing, and the diff it prints against recipes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "verify_torch_metadata.py"
spec = importlib.util.spec_from_file_location("verify_torch_metadata", SCRIPT)
vtm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vtm)


def _index(*names):
    return {"files": [{"filename": n, "requires-python": ">=3.10", "upload-time": "2026-10-28T10:00:00Z"}
                      for n in names]}


def test_platform_and_glibc_of_tags():
    assert vtm.platform_of("manylinux_2_28_x86_64") == "linux-x86_64"
    assert vtm.platform_of("manylinux2014_aarch64") == "linux-aarch64"
    assert vtm.platform_of("macosx_10_9_x86_64") == "macos-x86_64"
    assert vtm.platform_of("win_arm64") is None
    assert vtm.glibc_of("manylinux1_x86_64") == "2.5"
    assert vtm.glibc_of("manylinux_2_28_aarch64") == "2.28"


def test_index_facts_reads_python_and_free_threaded_tags():
    facts = vtm.index_facts(_index(
        "torch-9.1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "torch-9.1.0-cp314-cp314t-manylinux_2_28_x86_64.whl",
        "torch-9.1.0-cp312-cp312-win_amd64.whl",
        "torch-9.1.0rc1-cp312-cp312-win_amd64.whl",  # pre-releases are ignored
        "torch-1.13.1-cp310-cp310-win_amd64.whl",  # before 2.0
    ))
    assert list(facts) == ["9.1.0"]
    lx = facts["9.1.0"]["platforms"]["linux-x86_64"]
    assert lx["python"] == ["3.12"] and lx["free_threaded"] == ["3.14t"] and lx["glibc"] == "2.28"
    assert facts["9.1.0"]["released"] == "2026-10-28"


def test_companion_pairing_prefers_exact_pins():
    facts = {"torchvision": {
        "0.40.0": {"torch_requirement": ["torch (==9.0.0)"], "torch": "9.0.0"},
        "0.40.1": {"torch_requirement": ["torch (>=9.0.0)"], "torch": None},
    }, "torchaudio": {"9.0.0": {"torch_requirement": [], "torch": None}}}
    assert vtm.companions_for("9.0.0", facts)["torchvision"] == "0.40.0"
    later = vtm.companions_for("9.1.0", facts)
    assert later["torchvision"] == "0.40.1" and "no release pins" in later["how"]["torchvision"]
    assert later["torchaudio"] is None  # no declared requirement and no known pairing


def test_recipes_agree_with_their_own_verified_blocks(tmp_path):
    # Re-emitting the facts behind the recipes gives what the recipes hold: the diff is empty,
    # and a changed value is reported.
    recipe = json.loads((SCRIPT.parents[1] / "recipes" / "torch_releases.json").read_text())
    rel = recipe["releases"]["2.15.0"]
    exp = {"2.15.0": {"requires_python": rel["requires_python"],
                      "platforms": {"linux-x86_64": {"python": rel["platforms"]["linux-x86_64"]["python"]}}}}
    assert vtm.diff(exp, recipe, partial=True) == []
    exp["2.15.0"]["requires_python"] = ">=3.12"
    assert vtm.diff(exp, recipe, partial=True) == [
        "~ 2.15.0.requires_python: recipes have '>=3.11', PyPI says '>=3.12'"]
    assert vtm.diff({"9.9.9": {}}, recipe, partial=True)[0].startswith("+ 9.9.9")
