"""Every fact in the install recipes carries a source and how it was verified, and is well-formed.

The rule (recipes/README.md): each entry has "source" (URL, repo+path or the wheel it was read
from) and "verified" ("<date> ..." saying how, or "unverified: <why>").
"""

from __future__ import annotations

import re

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from envcheck import recipes

DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
PLATFORMS = {"linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64"}
PY = re.compile(r"3\.\d{1,2}")
ARCH = re.compile(r"(sm|compute)_\d{2,3}[af]?")
GFX = re.compile(r"gfx[0-9a-f]{3,4}")
DRIVER = re.compile(r"\d{3}(\.\d{1,3}){0,2}")
VARIANT = re.compile(r"cpu|xpu|cu\d{3}|rocm\d+\.\d+(\.\d+)?")


def _check_sourced(where: str, entry: dict) -> list[str]:
    problems = []
    src, ver = entry.get("source"), entry.get("verified")
    if not isinstance(src, str) or len(src.strip()) < 8:
        problems.append(f"{where}: no 'source'")
    if not isinstance(ver, str) or not ver.strip():
        problems.append(f"{where}: no 'verified'")
    elif not (ver.startswith("unverified: ") and len(ver) > len("unverified: ") + 8) and not DATE.search(ver):
        problems.append(f"{where}: 'verified' must give a date and how, or 'unverified: <why>' ({ver!r})")
    return problems


def sourced_entries() -> list[tuple[str, dict]]:
    """(where, entry) for every entry that must carry source + verified."""
    out: list[tuple[str, dict]] = []
    tr = recipes.load("torch_releases")
    for name, block in tr["conda"].items():
        out.append((f"torch_releases.conda.{name}", block))
    for ver, rel in tr["releases"].items():
        out.append((f"torch_releases.{ver}", rel))
        out.append((f"torch_releases.{ver}.companions", rel["companions"]))
        for var, v in rel["variants"].items():
            out.append((f"torch_releases.{ver}.variants.{var}", v))
            if isinstance(v.get("companions"), dict):
                out.append((f"torch_releases.{ver}.variants.{var}.companions", v["companions"]))
    cuda = recipes.load("cuda")
    out.append(("cuda.minor_version_compatibility", cuda["minor_version_compatibility"]))
    for major, entry in cuda["minor_version_compatibility"]["majors"].items():
        out.append((f"cuda.minor_version_compatibility.{major}", entry))
    for row in cuda["toolkit_drivers"]:
        out.append((f"cuda.toolkit_drivers.{row.get('cuda')}", row))
    for row in cuda["driver_branches"]:
        out.append((f"cuda.driver_branches.{row.get('architecture')}", row))
    for major, entry in cuda["toolkit_arch_floor"].items():
        if major != "about":
            out.append((f"cuda.toolkit_arch_floor.{major}", entry))
    out.append(("cuda.cubin_compatibility", cuda["cubin_compatibility"]))
    for row in cuda["cudnn"]["bundled_by_torch"]:
        out.append((f"cuda.cudnn.bundled_by_torch.{row.get('torch')}", row))
    for major, row in cuda["cudnn"]["cc_floor"].items():
        out.append((f"cuda.cudnn.cc_floor.{major}", row))
    branches = recipes.load("driver_branches")
    for row in branches["generations"]:
        out.append((f"driver_branches.generations.{row.get('architecture')}", row))
    for row in branches["products"]:
        out.append((f"driver_branches.products.{row.get('gpu')}", row))
    for g in recipes.load("gpus")["gpus"]:
        out.append((f"gpus.{g.get('name')}", g))
    return out


def test_every_entry_has_a_source_and_verification():
    problems = [p for where, e in sourced_entries() for p in _check_sourced(where, e)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_missing_source():
    # The schema check must be able to fail: an entry without a source or with a vague
    # verification is reported.
    assert _check_sourced("x", {"verified": "2026-11-23 read"}) == ["x: no 'source'"]
    assert _check_sourced("x", {"source": "https://example.org/a", "verified": "trust me"})
    assert _check_sourced("x", {"source": "https://example.org/a", "verified": "unverified: "})
    assert not _check_sourced("x", {"source": "https://example.org/a",
                                    "verified": "unverified: page not reachable from here"})


def test_enough_entries_are_checked():
    # Guard against the walker silently skipping everything.
    kinds = {w.split(".")[0] for w, _ in sourced_entries()}
    assert kinds == {"torch_releases", "cuda", "gpus", "driver_branches"}
    assert len(sourced_entries()) > 200


def _releases():
    return recipes.load("torch_releases")["releases"]


@pytest.mark.parametrize("ver", sorted(_releases(), key=Version))
def test_release_is_well_formed(ver):
    rel = _releases()[ver]
    v = Version(ver)
    assert v >= Version("2.0.0") and not v.is_prerelease and not v.local
    assert re.fullmatch(r"20\d\d-\d\d-\d\d", rel["released"])
    SpecifierSet(rel["requires_python"])  # parses
    assert set(rel["platforms"]) <= PLATFORMS and rel["platforms"]
    for plat, p in rel["platforms"].items():
        assert p["python"] and all(PY.fullmatch(x) for x in p["python"]), plat
        assert all(PY.fullmatch(x[:-1]) and x.endswith("t") for x in p["free_threaded"]), plat
        assert p["python"] == sorted(p["python"], key=Version)
        for x in p["python"]:  # the wheels agree with the declared Requires-Python
            assert Version(x) in SpecifierSet(rel["requires_python"]), (plat, x)
        if plat.startswith("linux"):
            assert re.fullmatch(r"2\.\d{1,2}", p["glibc"]), plat
        build = p.get("pypi_build")
        if plat in ("linux-x86_64", "linux-aarch64", "windows-x86_64"):
            assert build, f"{ver} {plat}: the PyPI build must be verified from a wheel"
            assert build.get("file", "").startswith(f"torch-{ver}-"), plat
        if build:
            assert VARIANT.fullmatch(build["variant"]), build["variant"]
            assert all(ARCH.fullmatch(a) for a in build["arch_list"]), plat
            if build["variant"].startswith("cu"):
                assert build["cuda"] and build["variant"] == "cu" + build["cuda"].replace(".", "")
                assert build["arch_list"], f"{ver} {plat}: a CUDA build has an arch list"
    for var, v_ in rel["variants"].items():
        assert VARIANT.fullmatch(var), var
        assert v_["index_url"] == f"https://download.pytorch.org/whl/{var}"
        for plat, vp in v_["platforms"].items():
            assert plat in rel["platforms"], (var, plat)
            arch = vp.get("arch_list")
            if arch is None:
                continue
            pattern = GFX if var.startswith("rocm") else ARCH
            assert all(pattern.fullmatch(a) for a in arch), (var, plat)
        if var.startswith("cu"):
            assert v_["cuda"] == f"{var[2:-1]}.{var[-1]}"
    for name in ("torchvision", "torchaudio"):
        comp = rel["companions"][name]
        assert comp is None or Version(comp)


def test_releases_are_complete_and_ordered():
    versions = sorted(Version(v) for v in _releases())
    assert versions[0] == Version("2.0.0")
    from envcheck import recommend

    assert Version(recommend.newest_known_release()) == versions[-1]
    minors = {(v.major, v.minor) for v in versions}
    newest = versions[-1]
    assert minors == {(2, m) for m in range(0, newest.minor + 1)}, "a minor release is missing"


def test_cuda_recipe_is_well_formed():
    cuda = recipes.load("cuda")
    for major, e in cuda["minor_version_compatibility"]["majors"].items():
        assert major.isdigit()
        assert DRIVER.fullmatch(e["linux"]) and DRIVER.fullmatch(e["windows"])
    for row in cuda["toolkit_drivers"]:
        assert re.fullmatch(r"1\d\.\d", row["cuda"])
        assert DRIVER.fullmatch(row["linux_ga"])
        assert row["windows_ga"] is None or DRIVER.fullmatch(row["windows_ga"])
    for row in cuda["driver_branches"]:
        assert re.fullmatch(r"\d+\.\d", row["cc_min"]) and re.fullmatch(r"\d+\.\d", row["cc_max"])
        assert row["last_branch"].isdigit()
    rules = cuda["cubin_compatibility"]
    for k, vals in rules["runs_only_on"].items():
        assert re.fullmatch(r"\d+\.\d", k) and all(re.fullmatch(r"\d+\.\d", v) for v in vals)


def test_gpu_table_is_well_formed_and_unambiguous():
    from envcheck.recommend.machine import _tokens

    seen: dict[str, str] = {}
    for g in recipes.load("gpus")["gpus"]:
        assert g["vendor"] in ("nvidia", "amd", "intel")
        if g["vendor"] == "nvidia":
            assert re.fullmatch(r"\d+\.\d", g["cc"]), g["name"]
        elif g["vendor"] == "intel":
            assert g["xpu"] is True and set(g["os"]) <= {"linux", "windows"}, g["name"]
        else:
            assert GFX.fullmatch(g["gfx"]), g["name"]
        for alias in [g["name"], *g.get("aliases", [])]:
            key = "".join(_tokens(alias))
            assert key, alias
            assert seen.get(key, g["name"]) == g["name"], f"{alias!r} names two GPUs"
            seen[key] = g["name"]


def test_driver_branches_are_well_formed_and_match_the_toolkit_table():
    """Each generation's minimum is the GA driver of its first CUDA toolkit (cuda.json Table 3)."""
    ga = {row["cuda"]: row for row in recipes.load("cuda")["toolkit_drivers"]}
    for row in recipes.load("driver_branches")["generations"]:
        assert all(re.fullmatch(r"\d+\.\d", cc) for cc in row["cc"])
        first = ga[row["first_cuda"]]
        assert (row["linux"], row["windows"]) == (first["linux_ga"], first["windows_ga"]), row["architecture"]
        assert row["linux"].split(".")[0] == row["branch"]
    for row in recipes.load("driver_branches")["products"]:
        assert DRIVER.fullmatch(row["linux"]) and row["linux"].split(".")[0] == row["branch"]
