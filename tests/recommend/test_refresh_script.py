"""scripts/refresh_recipes.py (no network: --from-facts): it reports every difference between
PyPI's facts and recipes/, and --write puts them in, so a release is added by review."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("refresh_recipes", ROOT / "scripts" / "refresh_recipes.py")
rr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rr)


def _setup(tmp_path, torchaudio_req="torch>=2.11"):
    recipe = json.loads((ROOT / "recipes" / "torch_releases.json").read_text())
    recipe["releases"] = {"2.15.0": recipe["releases"]["2.15.0"]}
    rpath = tmp_path / "torch_releases.json"
    rpath.write_text(json.dumps(recipe, indent=1) + "\n")
    rel = recipe["releases"]["2.15.0"]
    plats = {p: {k: v[k] for k in ("python", "free_threaded", "wheel_tags")} for p, v in rel["platforms"].items()}
    for p in plats:
        if p.startswith("linux"):
            plats[p]["glibc"] = rel["platforms"][p]["glibc"]
    facts = {
        "collected": "2026-11-28", "index": "https://pypi.org/simple",
        "torch": {
            "2.15.0": {"requires_python": rel["requires_python"], "released": rel["released"], "platforms": plats},
            "2.16.0": {"requires_python": ">=3.11", "released": "2026-12-20", "platforms": {
                "macos-arm64": {"python": ["3.11", "3.12"], "free_threaded": [], "wheel_tags": ["macosx_14_0_arm64"]}}},
        },
        "torchvision": {"0.29.2": {"torch_requirement": ["torch (>=2.14.0)"], "requires_python": ">=3.10,!=3.14.1"}},
        "torchaudio": {"2.11.1": {"torch_requirement": [torchaudio_req], "requires_python": ">=3.10"}},
    }
    fpath = tmp_path / "facts.json"
    fpath.write_text(json.dumps(facts))
    return rpath, fpath


def test_reports_a_new_release_and_writes_it_for_review(tmp_path, capsys):
    rpath, fpath = _setup(tmp_path)
    assert rr.main(["--from-facts", str(fpath), "--recipe", str(rpath)]) == 1
    out = capsys.readouterr().out
    assert "+ 2.16.0: on PyPI but not in recipes" in out
    assert "~ 2.15.0" not in out  # everything PyPI says about 2.15.0 is already there
    assert rr.main(["--from-facts", str(fpath), "--recipe", str(rpath), "--write"]) == 1
    new = json.loads(rpath.read_text())["releases"]["2.16.0"]
    assert new["platforms"]["macos-arm64"]["python"] == ["3.11", "3.12"]
    assert new["variants"] == {} and "download.pytorch.org variants" in new["todo"]
    assert new["source"].startswith("https://pypi.org/simple/torch/") and "refresh_recipes.py" in new["verified"]
    assert new["companions"]["torchaudio"] == "2.11.1"
    capsys.readouterr()
    assert rr.main(["--from-facts", str(fpath), "--recipe", str(rpath)]) == 0  # now it agrees
    assert "agrees with PyPI" in capsys.readouterr().out


def test_reports_and_writes_a_changed_companion(tmp_path, capsys):
    rpath, fpath = _setup(tmp_path, torchaudio_req="torch>=2.16")  # torchaudio no longer admits 2.15
    rr.main(["--from-facts", str(fpath), "--recipe", str(rpath), "--write"])
    out = capsys.readouterr().out
    assert "~ 2.15.0.companions.torchaudio: recipes have '2.11.1', PyPI says None" in out
    rel = json.loads(rpath.read_text())["releases"]["2.15.0"]
    assert rel["companions"]["torchaudio"] is None and "refresh_recipes.py" in rel["companions"]["verified"]
    assert "torchaudio" not in rel["companions"]["how"]  # the old pairing's explanation is gone
    assert rel["verified"] == json.loads((ROOT / "recipes" / "torch_releases.json").read_text())[
        "releases"]["2.15.0"]["verified"]  # only the companions changed
