#!/usr/bin/env python3
"""Re-verify recipes/torch_releases.json against PyPI, the primary source, and print a diff.

What it checks, per torch release on PyPI (2.0.0 and newer, no pre-releases):
  * from PyPI's simple index (PEP 691 JSON, the page pip itself reads): the wheel files, hence the
    platforms, CPython versions (free-threaded ``cp3XYt`` too), manylinux tag (= minimum glibc),
    Requires-Python and the upload date;
  * with ``--wheels`` (downloads each Linux/Windows wheel once with ``pip download --no-deps``,
    because PyPI serves no separate METADATA for torch): the wheel's METADATA (Requires-Python,
    the pinned nvidia-*/cuda-* dependencies), ``torch/version.py`` (``+cuXYZ`` build, CUDA
    version) and the CUDA architecture flags compiled into ``libtorch_python.so`` (the string
    ``torch.cuda.get_arch_list()`` returns);
  * with ``--companions``: the ``torch==`` pin in each torchvision / torchaudio wheel's METADATA.

Usage (a maintainer tool; envcheck never touches the network at run time):
    python3 scripts/verify_torch_metadata.py                       # index-level facts, diff
    python3 scripts/verify_torch_metadata.py --wheels --companions # everything (tens of GB)
    python3 scripts/verify_torch_metadata.py --release 2.16.0 --wheels --companions --emit
        # prints the verified block of a new release to paste into recipes/torch_releases.json

Exit status: 0 when recipes agree with PyPI, 1 when a difference was printed, 2 on bad usage.
pip runs with PIP_CONFIG_FILE=/dev/null and no find-links, so local caps or mirrors do not leak in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "torch_releases.json"
INDEX = "https://pypi.org/simple"
FIRST = Version("2.0.0")
# The companions of torch 2.0.0 (pytorch/vision README table; torchaudio shares torch's version).
COMPANION_FIRST = {"torchvision": Version("0.15.0"), "torchaudio": Version("2.0.0")}
TODAY = dt.date.today().isoformat()

# Requirements whose pins tell which CUDA a Linux wheel was built against.
_CUDA_DEP = re.compile(r"^(nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|triton|pytorch-triton[a-z-]*)\b", re.I)
# get_arch_list() joins CUDA_ARCH_FLAGS, compiled into libtorch_python.so as one string.
_ARCH_FLAGS = re.compile(rb"(?:(?:sm|compute)_\d+[af]? ){2,}(?:sm|compute)_\d+[af]?")


def platform_of(tag: str) -> str | None:
    """envcheck's platform name for a wheel platform tag."""
    if tag.startswith("manylinux") and tag.endswith("_x86_64"):
        return "linux-x86_64"
    if tag.startswith("manylinux") and tag.endswith("_aarch64"):
        return "linux-aarch64"
    if tag == "win_amd64":
        return "windows-x86_64"
    if tag.startswith("macosx") and tag.endswith("_arm64"):
        return "macos-arm64"
    if tag.startswith("macosx") and tag.endswith("_x86_64"):
        return "macos-x86_64"
    return None  # win_arm64 etc.: not an envcheck platform


def glibc_of(tag: str) -> str | None:
    """Minimum glibc a manylinux tag promises (PEP 600 / PEP 599 / PEP 571 / PEP 513)."""
    legacy = {"manylinux1": "2.5", "manylinux2010": "2.12", "manylinux2014": "2.17"}
    for prefix, glibc in legacy.items():
        if tag.startswith(prefix + "_"):
            return glibc
    m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def fetch_index(name: str, index: str = INDEX) -> dict:
    req = urllib.request.Request(
        f"{index}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)


def _py(interp: str) -> str:
    """'cp312' -> '3.12'; a generic 'py3' tag -> '3.12' (any current Python will do)."""
    digits = interp[2:]
    if len(digits) < 2:
        return "3.12"
    return f"{digits[0]}.{digits[1:]}"


def index_facts(index_json: dict) -> dict[str, dict]:
    """Per release: requires_python, release date, and per platform the wheels PyPI has."""
    out: dict[str, dict] = {}
    for f in index_json["files"]:
        fn = f["filename"]
        if not fn.endswith(".whl") or f.get("yanked"):
            continue
        _, ver, _, tags = parse_wheel_filename(fn)
        if ver < FIRST or ver.is_prerelease or ver.local:
            continue
        rel = out.setdefault(str(ver), {"requires_python": set(), "released": None, "platforms": {}})
        rel["requires_python"].add(f.get("requires-python"))
        up = (f.get("upload-time") or "")[:10] or None
        if up and (rel["released"] is None or up < rel["released"]):
            rel["released"] = up
        for t in tags:
            plat = platform_of(t.platform)
            if plat is None:
                continue
            p = rel["platforms"].setdefault(
                plat, {"python": set(), "free_threaded": set(), "wheel_tags": set(), "files": {}}
            )
            p["wheel_tags"].add(t.platform)
            if t.abi.endswith("t"):
                p["free_threaded"].add(_py(t.interpreter) + "t")
            else:
                p["python"].add(_py(t.interpreter))
            p["files"].setdefault((t.interpreter, t.abi), (fn, t.platform))
    for rel in out.values():
        rps = sorted(x for x in rel["requires_python"] if x)
        rel["requires_python"] = rps[0] if len(rps) == 1 else rps or None
        for plat, p in rel["platforms"].items():
            p["python"] = sorted(p["python"], key=Version)
            p["free_threaded"] = sorted(p["free_threaded"], key=lambda s: Version(s[:-1]))
            p["wheel_tags"] = sorted(p["wheel_tags"])
            if plat.startswith("linux"):
                # The oldest tag is what pip checks against the machine's glibc.
                p["glibc"] = min((glibc_of(t) for t in p["wheel_tags"]), key=Version)
    return out


_CACHE: dict = {}
_CACHE_PATH: Path | None = None


def _cached(key: str, compute):
    """Per-file results survive an interrupted run (--cache FILE): downloads are the slow part."""
    if key in _CACHE:
        return _CACHE[key]
    value = compute()
    _CACHE[key] = value
    if _CACHE_PATH is not None:
        _CACHE_PATH.write_text(json.dumps(_CACHE, indent=1, sort_keys=True))
    return value


def _pip_download(spec: str, tag: str, interp: str, abi: str, dest: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--quiet",
        "--index-url", INDEX, "--only-binary=:all:", "--platform", tag,
        "--python-version", _py(interp), "--implementation", "cp", "--abi", abi,
        "-d", dest, spec,
    ]
    subprocess.run(cmd, check=True, env=env)
    return next(Path(dest).glob("*.whl"))


def _metadata(z: zipfile.ZipFile) -> email.message.Message:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    return email.parser.Parser().parsestr(z.read(name).decode("utf-8"))


def wheel_facts(version: str, plat: dict) -> dict:
    """Download one wheel of this release/platform and read what it says about its build."""
    # Newest regular CPython wheel: every wheel of a release/platform is the same build.
    interp, abi = max((k for k in plat["files"] if not k[1].endswith("t")),
                      key=lambda k: Version(_py(k[0])))
    fn, tag = plat["files"][(interp, abi)]
    return _cached(fn, lambda: _wheel_facts(version, fn, tag, interp, abi))


def _glibc_floor(z: zipfile.ZipFile) -> str | None:
    """Highest GLIBC_x.y symbol version the wheel's shared libraries reference (their real floor)."""
    best = None
    # torch's own libraries (libtorch_cuda.so is skipped: >1 GB, built in the same image).
    own = re.compile(r"torch/(_C\.[^/]*\.so|lib/lib(torch_cpu|torch_python|c10|shm|torch)\.so)$")
    for name in z.namelist():
        if own.search(name):
            for hit in set(re.findall(rb"GLIBC_2\.(\d+)", z.read(name))):
                v = int(hit)
                best = v if best is None or v > best else best
    return f"2.{best}" if best is not None else None


def _wheel_facts(version: str, fn: str, tag: str, interp: str, abi: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        whl = _pip_download(f"torch=={version}", tag, interp, abi, tmp)
        with zipfile.ZipFile(whl) as z:
            meta = _metadata(z)
            names = set(z.namelist())
            vpy = z.read("torch/version.py").decode() if "torch/version.py" in names else ""
            flags = None
            lib = next((n for n in names if re.search(r"torch/lib/libtorch_python\.(so|dylib)$", n)),
                       None)
            if lib:
                hits = _ARCH_FLAGS.findall(z.read(lib))
                flags = max(hits, key=len).decode() if hits else None
            glibc = _glibc_floor(z) if "linux" in tag else None
    local = re.search(r"__version__ = '[^'+]*(\+[^']*)?'", vpy)
    cuda = re.search(r"cuda(?:: Optional\[str\])? = '([^']+)'", vpy)
    hip = re.search(r"hip(?:: Optional\[str\])? = '([^']+)'", vpy)
    deps = {}
    for req in meta.get_all("Requires-Dist") or []:
        if "extra ==" in req:
            continue
        m = _CUDA_DEP.match(req)
        if m:
            pin = re.search(r"==\s*([0-9][^;,\s)]*)", req)
            deps[m.group(1).lower()] = pin.group(1) if pin else req.split(";")[0][len(m.group(1)):].strip()
    build = (local.group(1) or "")[1:] if local else ""
    return {
        "file": fn,
        "requires_python": meta.get("Requires-Python"),
        "local_version": build or None,
        "cuda": cuda.group(1) if cuda else None,
        "hip": hip.group(1) if hip else None,
        "arch_list": flags.split() if flags else [],
        "cuda_deps": deps,
        "glibc_symbols": glibc,
    }


def variant_of(facts: dict) -> str:
    """'cu130' / 'cpu' from a wheel's version.py (local tag when present, else CUDA version)."""
    if facts["local_version"]:
        return facts["local_version"]
    if facts["cuda"]:
        return "cu" + facts["cuda"].replace(".", "")
    return "cpu"


def companion_facts(name: str, index_json: dict) -> dict[str, dict]:
    """torch pin of each torchvision/torchaudio release (one Linux x86_64 wheel each)."""
    pick: dict[str, tuple] = {}
    requires: dict[str, str] = {}
    for f in index_json["files"]:
        fn = f["filename"]
        if not fn.endswith(".whl") or f.get("yanked"):
            continue
        _, ver, _, tags = parse_wheel_filename(fn)
        if ver.is_prerelease or ver.local:
            continue
        requires.setdefault(str(ver), f.get("requires-python") or "")
        for t in tags:
            if platform_of(t.platform) == "linux-x86_64" and not t.abi.endswith("t"):
                best = pick.get(str(ver))
                if best is None or Version(_py(t.interpreter)) > Version(_py(best[1])):
                    pick[str(ver)] = (fn, t.interpreter, t.abi, t.platform)
    out = {}
    for ver, (fn, interp, abi, tag) in sorted(pick.items(), key=lambda kv: Version(kv[0])):
        if Version(ver) < COMPANION_FIRST[name]:
            continue
        out[ver] = dict(_cached(fn, lambda n=name, v=ver, f=fn, i=interp, a=abi, t=tag:
                                _companion_pin(n, v, f, t, i, a)))
        # PEP 691 'requires-python' of the release's files: evaluated at the patch level by the
        # engine (torchvision >= 0.26 declares '>=3.10,!=3.14.1').
        out[ver]["requires_python"] = requires.get(ver, "")
    return out


def _companion_pin(name: str, ver: str, fn: str, tag: str, interp: str, abi: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        whl = _pip_download(f"{name}=={ver}", tag, interp, abi, tmp)
        with zipfile.ZipFile(whl) as z:
            meta = _metadata(z)
    pins = [r for r in meta.get_all("Requires-Dist") or [] if re.match(r"torch\b", r)]
    m = re.search(r"torch\s*(?:\(\s*)?==\s*([0-9.]+)", " ".join(pins))
    return {"file": fn, "torch_requirement": pins, "torch": m.group(1) if m else None}


def _jsonable(x):
    if isinstance(x, set):
        return sorted(x)
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items() if k != "files"}
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def collect(releases: list[str] | None, wheels: bool, companions: bool, say) -> dict:
    torch_index = fetch_index("torch")
    facts = index_facts(torch_index)
    if releases:
        missing = [r for r in releases if r not in facts]
        if missing:
            raise SystemExit(f"not on PyPI: {', '.join(missing)}")
        facts = {r: facts[r] for r in releases}
    if wheels:
        for ver in sorted(facts, key=Version):
            for plat in ("linux-x86_64", "linux-aarch64", "windows-x86_64"):
                if plat in facts[ver]["platforms"]:
                    say(f"torch {ver} {plat}: downloading one wheel")
                    facts[ver]["platforms"][plat]["wheel"] = wheel_facts(ver, facts[ver]["platforms"][plat])
    out = {"collected": TODAY, "index": INDEX, "torch": _jsonable(facts)}
    if companions:
        for name in ("torchvision", "torchaudio"):
            say(f"{name}: reading the torch pin of every release")
            out[name] = companion_facts(name, fetch_index(name))
    return out


# RELEASE.md ("Operating Systems"): Linux wheels are built to run on glibc 2.17 or newer; wheels
# tagged manylinux1 (torch <= 2.6 on x86_64) understate their real floor.
RELEASE_MD_GLIBC = "2.17"
MACOS_NOTE = "macOS wheels carry no CUDA (CPU + MPS); wheel not downloaded"


def _glibc(p: dict) -> tuple[str, str | None]:
    """(floor, note): max of the manylinux tag, the GLIBC_ symbols read, and RELEASE.md's 2.17."""
    tag_floor = p["glibc"]
    real = (p.get("wheel") or {}).get("glibc_symbols")
    parts = [tag_floor, RELEASE_MD_GLIBC] + ([real] if real else [])
    floor = max(parts, key=Version)
    if not p.get("wheel"):
        return floor, None
    notes = [f"wheel tag {p['wheel_tags'][0]} promises glibc {tag_floor}"]
    if real:
        notes.append(f"torch's own CPU libraries reference GLIBC_{real} symbols (libtorch_cuda.so not scanned)")
    notes.append("RELEASE.md: Linux wheels need glibc 2.17 or newer (manylinux2014 build images)")
    return floor, "; ".join(notes) + f" -> floor {floor}"


# A companion release whose METADATA declares no torch requirement is paired only where PyTorch's
# own release tooling pairs it: test-infra release/release_versions.sh pairs torch 2.12.1 with
# torchaudio 2.11.0 (shared/reference/install-knowledge.md, table 2a).
UNDECLARED = {("torchaudio", "2.11.0"): ">=2.11.0,<=2.12.1"}


def _requirement(name: str, comp_ver: str, info: dict):
    """(SpecifierSet of torch versions this companion release accepts, how we know) or None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet

    for text in info.get("torch_requirement") or []:
        try:
            req = Requirement(re.sub(r"\(\s*([^)]*)\)", r"\1", text))
        except InvalidRequirement:
            continue
        if req.name == "torch" and str(req.specifier):
            return req.specifier, f"METADATA requires torch{req.specifier}"
    extra = UNDECLARED.get((name, comp_ver))
    if extra:
        return SpecifierSet(extra), ("METADATA declares no torch requirement; paired with torch"
                                     f"{extra} as test-infra release_versions.sh pairs them")
    return None


def companions_for(torch_ver: str, facts: dict) -> dict:
    """Per companion: the newest release that pins this torch exactly, else the newest whose
    declared requirement admits it; and how the pairing is known."""
    out: dict = {}
    how: dict = {}
    requires: dict = {}
    t = Version(torch_ver)
    for name in ("torchvision", "torchaudio"):
        exact, loose = [], []
        for comp_ver, info in facts.get(name, {}).items():
            req = _requirement(name, comp_ver, info)
            if req is None or not req[0].contains(t, prereleases=True):
                continue
            (exact if str(req[0]) == f"=={torch_ver}" else loose).append((Version(comp_ver), req[1]))
        pick = max(exact) if exact else (max(loose) if loose else None)
        out[name] = str(pick[0]) if pick else None
        if pick:
            how[name] = pick[1] + ("" if exact else " (no release pins this torch exactly)")
            rp = facts[name][str(pick[0])].get("requires_python")
            if rp:
                requires[name] = rp
    out["how"] = how
    out["requires_python"] = requires
    return out


def expected(facts: dict) -> dict[str, dict]:
    """The verified part of each release, in recipes/torch_releases.json's shape."""
    exp: dict[str, dict] = {}
    for ver, rel in facts["torch"].items():
        e: dict = {"released": rel["released"], "requires_python": rel["requires_python"], "platforms": {}}
        for plat in ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64", "macos-x86_64"):
            p = rel["platforms"].get(plat)
            if p is None:
                continue
            ep = {"python": p["python"], "free_threaded": p["free_threaded"], "wheel_tags": p["wheel_tags"]}
            if plat.startswith("linux"):
                ep["glibc"], note = _glibc(p)
                if note:
                    ep["glibc_note"] = note
                if (p.get("wheel") or {}).get("glibc_symbols"):
                    ep["glibc_symbols"] = p["wheel"]["glibc_symbols"]
            w = p.get("wheel")
            if w:
                ep["pypi_build"] = {
                    "variant": variant_of(w), "cuda": w["cuda"], "arch_list": w["arch_list"],
                    "cuda_deps": w["cuda_deps"], "file": w["file"], "requires_python": w["requires_python"],
                }
            elif plat.startswith("macos"):
                ep["pypi_build"] = {"variant": "cpu", "cuda": None, "arch_list": [], "note": MACOS_NOTE}
            e["platforms"][plat] = ep
        if "torchvision" in facts or "torchaudio" in facts:
            e["companions"] = companions_for(ver, facts)
        exp[ver] = e
    return exp


def diff(exp: dict, recipe: dict, partial: bool = False) -> list[str]:
    """Human-readable differences between verified facts and the recipe."""
    lines: list[str] = []
    releases = recipe.get("releases", {})
    for ver in sorted(exp, key=Version):
        if ver not in releases:
            lines.append(f"+ {ver}: on PyPI but not in recipes (run with --release {ver} --emit)")
            continue
        _cmp(f"{ver}", exp[ver], releases[ver], lines)
    if not partial:
        for ver in releases:
            if ver not in exp:
                lines.append(f"- {ver}: in recipes but not on PyPI")
    return lines


def _cmp(path: str, want, have, lines: list[str]) -> None:
    if isinstance(want, dict):
        if not isinstance(have, dict):
            lines.append(f"~ {path}: recipes have {have!r}, PyPI says {want!r}")
            return
        for k, v in want.items():
            _cmp(f"{path}.{k}", v, have.get(k), lines)
    elif want != have:
        lines.append(f"~ {path}: recipes have {have!r}, PyPI says {want!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--release", action="append", help="only this torch release (repeatable)")
    ap.add_argument("--wheels", action="store_true", help="download Linux/Windows wheels (slow, large)")
    ap.add_argument("--companions", action="store_true", help="read torchvision/torchaudio torch pins")
    ap.add_argument("--facts", metavar="FILE", help="write the raw collected facts as JSON")
    ap.add_argument("--from-facts", metavar="FILE", help="use facts collected earlier (no network)")
    ap.add_argument("--emit", action="store_true", help="print the verified blocks instead of a diff")
    ap.add_argument("--cache", metavar="FILE", help="keep per-file results here (resume a long run)")
    args = ap.parse_args(argv)
    global _CACHE_PATH
    if args.cache:
        _CACHE_PATH = Path(args.cache)
        if _CACHE_PATH.exists():
            _CACHE.update(json.loads(_CACHE_PATH.read_text()))

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.from_facts:
        facts = json.loads(Path(args.from_facts).read_text())
        if args.release:
            facts["torch"] = {r: facts["torch"][r] for r in args.release}
    else:
        facts = collect(args.release, args.wheels, args.companions, say)
    if args.facts:
        Path(args.facts).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    exp = expected(facts)
    if args.emit:
        print(json.dumps(exp, indent=2))
        return 0
    recipe = json.loads(RECIPE.read_text()) if RECIPE.exists() else {}
    lines = diff(exp, recipe, partial=bool(args.release)) if recipe else ["recipes file missing"]
    for ln in lines:
        print(ln)
    if not lines:
        print(f"recipes/torch_releases.json agrees with PyPI ({len(exp)} release(s) checked)")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
