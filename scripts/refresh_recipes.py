#!/usr/bin/env python3
"""Regenerate the PyPI-derived parts of recipes/torch_releases.json and report every difference.

One command for the maintainer (recipes/README.md, README "Keeping the knowledge current"):

    python3 scripts/refresh_recipes.py                 # report only (exit 1 when anything differs)
    python3 scripts/refresh_recipes.py --write         # also write the changes, then review `git diff`

What it does, with scripts/verify_torch_metadata.py's collectors (PyPI only, pip with
PIP_CONFIG_FILE=/dev/null):
  * reads PyPI's PEP 691 index of torch, torchvision and torchaudio, and every companion's
    torch requirement (METADATA) and Requires-Python;
  * downloads one wheel per platform only for torch releases the recipes do not know yet
    (METADATA, torch/version.py, compiled arch list, glibc symbols; about 1.5 GB a release);
  * prints each difference: ``+ 2.16.0`` a new release, ``~ path: recipes have X, PyPI says Y``
    a changed fact (new Python tags, a new companion, a changed Requires-Python...);
  * with --write: puts the PyPI-derived facts into the file (a new release gets its verified
    block, ``variants: {}`` and a ``todo`` naming what only a person can add: the
    download.pytorch.org variants and their arch lists from RELEASE.md / build scripts), and
    stamps ``verified`` of what changed with today's date and this command.

Facts that do not come from PyPI (variants, cuda.json, gpus.json, driver_branches.json) are
never touched. Exit status: 0 nothing differs, 1 differences (written with --write), 2 usage.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
from pathlib import Path

from packaging.version import Version

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("verify_torch_metadata", HERE / "verify_torch_metadata.py")
vtm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vtm)

COMMAND = "python3 scripts/refresh_recipes.py --write"
NEW_RELEASE_TODO = ("add the download.pytorch.org variants (cuXYZ/rocmX.Y/cpu/xpu) with their arch lists "
                    "from RELEASE.md's CUDA support matrix or .ci/manywheel/build_cuda.sh at the tag, "
                    "each marked unverified with its source (recipes/README.md step 3); add a row to "
                    "tests/recommend/test_engine_table.py for what the release changes")


def _pypi_source(ver: str, block: dict) -> str:
    files = [p["pypi_build"]["file"] for p in block.get("platforms", {}).values()
             if isinstance(p.get("pypi_build"), dict) and p["pypi_build"].get("file")]
    return ("https://pypi.org/simple/torch/ (PEP 691 file list: platforms, CPython tags, manylinux tags, "
            "Requires-Python, upload date)" + (" and the wheels " + ", ".join(files) + " (METADATA Requires-Dist, "
            "torch/version.py, CUDA arch flags compiled into libtorch_python.so, GLIBC_ symbol versions)"
            if files else ""))


def merge(exp: dict, recipe: dict, today: str) -> list[str]:
    """Write the PyPI-derived facts of ``exp`` into ``recipe`` (in place); the releases touched."""
    releases = recipe.setdefault("releases", {})
    touched = []
    for ver in sorted(exp, key=Version):
        want = exp[ver]
        if ver not in releases:
            block = copy.deepcopy(want)
            block["source"] = _pypi_source(ver, block)
            block["verified"] = f"{today} with `{COMMAND}` (pip download --no-deps from PyPI)"
            block["variants"] = {}
            block["todo"] = NEW_RELEASE_TODO
            if "companions" in block:
                block["companions"]["source"] = releases[max(releases, key=Version)]["companions"]["source"] \
                    if releases else "companion wheels' METADATA on PyPI"
                block["companions"]["verified"] = f"{today} with `{COMMAND}`"
            releases[ver] = block
            touched.append(ver)
            continue
        have = releases[ver]
        lines: list[str] = []
        vtm._cmp(ver, want, have, lines)
        if not lines:
            continue
        companions_changed = any(x.split(":")[0].split(".", 3)[-1].startswith("companions")
                                 or ".companions." in x for x in lines)
        want = dict(want)
        if "companions" in want:  # replaced as a whole: a pairing that vanished must not linger
            have.setdefault("companions", {}).update(copy.deepcopy(want.pop("companions")))
        _deep_update(have, want)
        stamp = f"refreshed {today} with `{COMMAND}`"
        if companions_changed:
            have["companions"]["verified"] = f"{today} with `{COMMAND}`"
        if any(".companions." not in x for x in lines) and stamp not in have.get("verified", ""):
            have["verified"] = f"{have.get('verified', '')}; {stamp}".lstrip("; ")
        touched.append(ver)
    recipe["releases"] = dict(sorted(releases.items(), key=lambda kv: Version(kv[0])))
    return touched


def _deep_update(have: dict, want: dict) -> None:
    for k, v in want.items():
        if isinstance(v, dict) and isinstance(have.get(k), dict):
            _deep_update(have[k], v)
        else:
            have[k] = copy.deepcopy(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="write the PyPI-derived changes into recipes/")
    ap.add_argument("--from-facts", metavar="FILE", help="use facts collected earlier (no network)")
    ap.add_argument("--facts", metavar="FILE", help="keep the collected facts here")
    ap.add_argument("--cache", metavar="FILE", help="per-file download cache (resume a long run)")
    ap.add_argument("--recipe", metavar="FILE", default=str(vtm.RECIPE), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cache:
        vtm._CACHE_PATH = Path(args.cache)
        if vtm._CACHE_PATH.exists():
            vtm._CACHE.update(json.loads(vtm._CACHE_PATH.read_text()))

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    recipe_path = Path(args.recipe)
    recipe = json.loads(recipe_path.read_text())
    if args.from_facts:
        facts = json.loads(Path(args.from_facts).read_text())
    else:
        facts = vtm.collect(None, False, True, say)
        new = sorted((v for v in facts["torch"] if v not in recipe["releases"]), key=Version)
        if new:  # wheels only for releases the recipes lack ("files" is dropped from facts)
            raw = vtm.index_facts(vtm.fetch_index("torch"))
            for ver in new:
                for plat in ("linux-x86_64", "linux-aarch64", "windows-x86_64"):
                    if plat in raw[ver]["platforms"]:
                        say(f"torch {ver} {plat}: new release, downloading one wheel")
                        facts["torch"][ver]["platforms"][plat]["wheel"] = vtm.wheel_facts(
                            ver, raw[ver]["platforms"][plat])
    if args.facts:
        Path(args.facts).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    exp = vtm.expected(facts)
    # Releases the recipes already know were read from the index only: compare the index facts
    # (the glibc floor also depends on the wheel's symbols, so it is left as verified).
    for ver, block in exp.items():
        if ver in recipe["releases"]:
            for plat, p in block.get("platforms", {}).items():
                if not (facts["torch"][ver]["platforms"].get(plat) or {}).get("wheel"):
                    for key in ("pypi_build", "glibc", "glibc_note", "glibc_symbols"):
                        p.pop(key, None)
    lines = vtm.diff(exp, recipe)
    for ln in lines:
        print(ln)
    if not lines:
        print(f"recipes/torch_releases.json agrees with PyPI ({len(exp)} release(s) checked)")
        return 0
    if args.write:
        touched = merge(exp, recipe, vtm.TODAY)
        recipe_path.write_text(json.dumps(recipe, indent=1, ensure_ascii=True) + "\n")
        print(f"wrote {recipe_path.name}: {', '.join(touched)}; review with `git diff recipes/`, "
              "then run `python3 -m pytest -q tests/recommend`")
    return 1


if __name__ == "__main__":
    sys.exit(main())
