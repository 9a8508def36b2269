"""``envcheck install --online``: check a plan against the live package index (opt-in).

The recipes say which wheel *should* exist; this module asks the index the command points at
whether it does, for this platform tag, Python tag and (Linux) manylinux floor, and reads the
wheel's METADATA where the index serves it separately (PEP 658), to confirm Requires-Python
and the companions' torch requirement. Releases on the index newer than the recipes are
reported with what their METADATA says, never used: envcheck cannot know their GPU arch lists.

Split in two, like the probes and rules: pure functions over index documents (parse the PEP 691
JSON or PEP 503 HTML project page, match wheel tags, judge METADATA, summarise), and one thin
fetcher (:func:`fetch`, urllib: proxies from the environment as urllib does, a deadline for the
whole check, credentials in an index URL sent as HTTP Basic auth and never printed).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import json
import re
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from envcheck.recommend.machine import InputError
from envcheck.redact import strip_url_credentials

PYPI = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"  # PEP 691 content negotiation
DEFAULT_TIMEOUT = 15.0
_PEP691 = "application/vnd.pypi.simple.v1+json"


# ------------------------------------------------------------------------------ index pages


@dataclass(frozen=True)
class IndexFile:
    """One file of a project page (the fields PEP 691 and PEP 503 share)."""

    filename: str
    url: str
    requires_python: str | None = None
    yanked: str | None = None  # None: not yanked; "" yanked without a reason
    metadata: bool = False  # PEP 658/714: METADATA served at url + ".metadata"


def _yank(value) -> str | None:
    if value is None or value is False:
        return None
    return value if isinstance(value, str) else ""


def parse_json_page(doc: dict, page_url: str) -> list[IndexFile]:
    """Files of a PEP 691 JSON project page."""
    out = []
    for f in doc.get("files", []) if isinstance(doc, dict) else []:
        if not isinstance(f, dict) or not isinstance(f.get("filename"), str):
            continue
        meta = f.get("core-metadata", f.get("dist-info-metadata", False))
        out.append(IndexFile(
            filename=f["filename"], url=urllib.parse.urljoin(page_url, str(f.get("url", ""))),
            requires_python=f.get("requires-python") or None, yanked=_yank(f.get("yanked")),
            metadata=bool(meta),
        ))
    return out


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.items: list[tuple[dict, str]] = []
        self._attrs: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._attrs, self._text = dict(attrs), []

    def handle_data(self, data):
        if self._attrs is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._attrs is not None:
            self.items.append((self._attrs, "".join(self._text).strip()))
            self._attrs = None


def parse_html_page(text: str, page_url: str) -> list[IndexFile]:
    """Files of a PEP 503 HTML project page (data-requires-python, data-yanked, and PEP 658's
    data-core-metadata / data-dist-info-metadata attributes)."""
    parser = _Anchors()
    parser.feed(text)
    out = []
    for attrs, label in parser.items:
        href = attrs.get("href") or ""
        name = label or urllib.parse.unquote(href.split("#")[0].rsplit("/", 1)[-1])
        if not name:
            continue
        meta = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        out.append(IndexFile(
            filename=name, url=urllib.parse.urljoin(page_url, href.split("#")[0]),
            requires_python=attrs.get("data-requires-python") or None,
            # PEP 592: the attribute's presence means yanked; its value (maybe none) is the reason
            yanked=(attrs.get("data-yanked") or "") if "data-yanked" in attrs else None,
            metadata=meta is not None and meta != "false",
        ))
    return out


def parse_page(body: bytes, content_type: str, page_url: str) -> list[IndexFile]:
    if _PEP691 in (content_type or "") or body.lstrip().startswith(b"{"):
        doc = json.loads(body.decode("utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
            raise ValueError("not a PEP 691 project page")
        return parse_json_page(doc, page_url)
    return parse_html_page(body.decode("utf-8", "replace"), page_url)


# ----------------------------------------------------------------------------- wheel tags


_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_ARCH = {"linux-x86_64": "x86_64", "linux-aarch64": "aarch64"}


def platform_ok(tag: str, machine) -> bool:
    """Would pip on this machine accept a wheel with this platform tag (PEP 425/600)?"""
    plat = machine.platform or ""
    if tag == "any":
        return True
    if plat.startswith("linux"):
        arch = _ARCH[plat]
        if tag == f"linux_{arch}":
            return True
        m = _MANYLINUX.fullmatch(tag)
        floor = (int(m.group(1)), int(m.group(2))) if m and m.group(3) == arch else None
        for legacy, ver in _LEGACY.items():
            if tag == f"{legacy}_{arch}":
                floor = ver
        if floor is None:
            return False
        if machine.glibc:
            have = tuple(int(x) for x in machine.glibc.split(".")[:2])
            return floor <= have
        return True
    if plat == "windows-x86_64":
        return tag == "win_amd64"
    if plat.startswith("macos"):
        m = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", tag)
        arches = {"macos-arm64": ("arm64", "universal2"), "macos-x86_64": ("x86_64", "intel", "universal2")}[plat]
        if not m or m.group(3) not in arches:
            return False
        if machine.macos:
            return (int(m.group(1)), int(m.group(2))) <= tuple(int(x) for x in machine.macos.split(".")[:2])
        return True
    return False


def python_ok(interpreter: str, abi: str, machine) -> bool:
    """Would this interpreter accept the wheel's Python and ABI tags?"""
    if not machine.python:
        return True
    nodot = machine.python.replace(".", "")
    if interpreter in ("py3", f"py{nodot}", f"cp{nodot}") and abi == "none":
        return True  # torch's macOS wheels are cpXY-none
    if interpreter != f"cp{nodot}" and not (abi == "abi3" and interpreter.startswith("cp3")):
        return False
    if abi == "abi3":
        return not machine.free_threaded and int(interpreter[3:] or 0) <= int(nodot[1:])
    return abi == f"cp{nodot}" + ("t" if machine.free_threaded else "")


def wheel_fits(filename: str, machine) -> bool:
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    return any(python_ok(t.interpreter, t.abi, machine) and platform_ok(t.platform, machine) for t in tags)


def wanted_tags(machine) -> str:
    """The tags a fitting wheel needs, in words (for a 'missing wheel' message)."""
    py = f"cp{machine.python.replace('.', '')}{'t' if machine.free_threaded else ''}" if machine.python else "any Python"
    plat = machine.platform or "?"
    if plat.startswith("linux"):
        plat = f"manylinux (glibc <= {machine.glibc}) {_ARCH[plat]}" if machine.glibc else f"manylinux {_ARCH[plat]}"
    elif plat == "windows-x86_64":
        plat = "win_amd64"
    elif plat.startswith("macos"):
        plat = f"macosx <= {machine.macos} {plat.split('-')[1]}" if machine.macos else f"macosx {plat.split('-')[1]}"
    return f"{py} / {plat}"


def files_for(files: list[IndexFile], version: str) -> list[tuple[IndexFile, Version]]:
    """The wheels of one release (public version equal; a local label like +cu126 allowed)."""
    want = Version(version)
    out = []
    for f in files:
        if not f.filename.endswith(".whl"):
            continue
        try:
            _, ver, _, _ = parse_wheel_filename(f.filename)
        except InvalidWheelFilename:
            continue
        if Version(ver.public) == want:
            out.append((f, ver))
    return out


def releases_on(files: list[IndexFile]) -> list[Version]:
    seen = set()
    for f in files:
        if f.filename.endswith(".whl") and f.yanked is None:
            try:
                _, ver, _, _ = parse_wheel_filename(f.filename)
            except InvalidWheelFilename:
                continue
            if not ver.is_prerelease and not ver.is_devrelease:
                seen.add(Version(ver.public))
    return sorted(seen)


# ------------------------------------------------------------------------------ METADATA


def parse_metadata(text: str) -> dict:
    msg = email.parser.Parser().parsestr(text, headersonly=True)
    return {"name": msg.get("Name"), "version": msg.get("Version"),
            "requires_python": msg.get("Requires-Python"),
            "requires_dist": list(msg.get_all("Requires-Dist") or [])}


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(re.sub(r"\(\s*([^)]*)\)", r"\1", text))
    except InvalidRequirement:
        return None


def metadata_cuda(meta: dict) -> str | None:
    """CUDA major.minor a torch wheel's METADATA pins (cuda-toolkit / nvidia-cuda-runtime-cuXX)."""
    for text in meta.get("requires_dist", []):
        req = _requirement(text)
        if req is None:
            continue
        if req.name in ("cuda-toolkit", "nvidia-cuda-runtime") or req.name.startswith("nvidia-cuda-runtime-cu"):
            m = re.search(r"==\s*(\d+)\.(\d+)", str(req.specifier))
            if m:
                return f"{m.group(1)}.{m.group(2)}"
    return None


def judge_metadata(meta: dict, package: str, version: str, machine, torch: str | None,
                   cuda: str | None) -> list[str]:
    """What in a wheel's METADATA contradicts the plan (empty: it agrees)."""
    problems = []
    py = machine.python_full or machine.python
    rp = meta.get("requires_python")
    if rp and py:
        try:
            if not SpecifierSet(rp).contains(py, prereleases=True):
                problems.append(f"{package} {version} METADATA Requires-Python {rp} excludes Python {py}")
        except InvalidSpecifier:
            pass
    if package != "torch" and torch:
        for text in meta.get("requires_dist", []):
            req = _requirement(text)
            if req is not None and req.name == "torch" and req.marker is None and str(req.specifier) \
                    and not req.specifier.contains(Version(torch), prereleases=True):
                problems.append(f"{package} {version} METADATA requires torch{req.specifier}, not {torch}")
    if package == "torch" and cuda:
        pinned = metadata_cuda(meta)
        if pinned and pinned.split(".")[0] != cuda.split(".")[0]:
            problems.append(f"torch {version} METADATA pins CUDA {pinned}; the plan expects CUDA {cuda}")
    return problems


# ------------------------------------------- METADATA from the wheel itself (HTTP ranges)

_EOCD = b"PK\x05\x06"
_CDIR = b"PK\x01\x02"
_TAIL = 65536


def central_directory(tail: bytes, total: int) -> tuple[int, int] | None:
    """(offset, size) of a zip's central directory from the file's last bytes; None for ZIP64
    or a tail without the end record."""
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    size, offset = struct.unpack_from("<II", tail, at + 12)
    if offset == 0xFFFFFFFF or size == 0xFFFFFFFF or offset + size > total:
        return None
    return offset, size


def find_metadata_entry(cdir: bytes) -> tuple[int, int, int, str] | None:
    """(local header offset, compressed size, method, name) of ``*.dist-info/METADATA``."""
    pos = 0
    while pos + 46 <= len(cdir) and cdir[pos:pos + 4] == _CDIR:
        method = struct.unpack_from("<H", cdir, pos + 10)[0]
        csize = struct.unpack_from("<I", cdir, pos + 20)[0]
        nlen, xlen, clen = struct.unpack_from("<HHH", cdir, pos + 28)
        local = struct.unpack_from("<I", cdir, pos + 42)[0]
        name = cdir[pos + 46:pos + 46 + nlen].decode("utf-8", "replace")
        if re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
            return local, csize, method, name
        pos += 46 + nlen + xlen + clen
    return None


def unpack_entry(chunk: bytes, csize: int, method: int) -> bytes | None:
    """The file data of a local header + data chunk (stored or deflated)."""
    if chunk[:4] != b"PK\x03\x04" or len(chunk) < 30:
        return None
    nlen, xlen = struct.unpack_from("<HH", chunk, 26)
    data = chunk[30 + nlen + xlen:30 + nlen + xlen + csize]
    if method == 0:
        return data
    if method == 8:
        return zlib.decompressobj(-15).decompress(data)
    return None


def metadata_by_range(fetcher, url: str) -> str | None:
    """A wheel's METADATA read with three small HTTP range requests (the zip's end record,
    its central directory, the one entry), as pip's lazy wheel does; None when the server
    does not serve ranges or the zip is not readable this way (ZIP64)."""
    got = fetcher.get_range(url, f"bytes=-{_TAIL}")
    if got is None:
        return None
    tail, total = got
    cd = central_directory(tail, total)
    if cd is None:
        return None
    offset, size = cd
    start = total - len(tail)
    if offset >= start:
        cdir = tail[offset - start:offset - start + size]
    else:
        got = fetcher.get_range(url, f"bytes={offset}-{offset + size - 1}")
        if got is None:
            return None
        cdir = got[0]
    entry = find_metadata_entry(cdir)
    if entry is None:
        return None
    local, csize, method, name = entry
    # 30-byte local header + name + local extra (at most 64 KiB) + the data
    got = fetcher.get_range(url, f"bytes={local}-{min(total, local + 30 + len(name) + 65535 + csize) - 1}")
    if got is None:
        return None
    data = unpack_entry(got[0], csize, method)
    return data.decode("utf-8", "replace") if data is not None else None


def read_metadata(fetcher, f: IndexFile) -> tuple[dict | None, str]:
    """(METADATA fields or None, how it was read)."""
    if f.metadata:
        got = fetcher.get(f.url + ".metadata", "*/*")
        if got is not None:
            return parse_metadata(got[0].decode("utf-8", "replace")), "checked (PEP 658)"
    try:
        text = metadata_by_range(fetcher, f.url)
    except (struct.error, zlib.error, ValueError, IndexError):  # not a readable zip this way
        text = None
    if text is not None:
        return parse_metadata(text), "checked (read from the wheel with HTTP range requests)"
    return None, ("listed but not served" if f.metadata
                  else "not offered by the index (no PEP 658, no HTTP ranges)")


# ------------------------------------------------------------------------------- the check


@dataclass
class PackageResult:
    name: str
    version: str
    status: str  # ok | missing | yanked | mismatch | unknown
    index: str | None = None  # where it was found (credentials stripped)
    wheel: str | None = None
    metadata: str = "not read"  # "checked (PEP 658)" | "not offered by the index" | "not read"
    detail: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OnlineResult:
    status: str  # verified | mismatch | unreachable
    indexes: list
    checked_at: str
    packages: list = field(default_factory=list)
    newer: list = field(default_factory=list)
    lines: list = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "mismatch"

    def to_dict(self) -> dict:
        return {"status": self.status, "indexes": list(self.indexes), "checked_at": self.checked_at,
                "packages": [p.to_dict() for p in self.packages], "newer": list(self.newer),
                "lines": list(self.lines)}


class Unreachable(Exception):
    """The index could not be read in time (network down, DNS, timeout, HTTP error)."""


def choose_indexes(plan, index_url: str | None, env: dict) -> list[str]:
    """The indexes pip would read for the plan's command: the plan's --index-url (or the mirror
    given with --index-url, or PIP_INDEX_URL, or PyPI), then PIP_EXTRA_INDEX_URL's."""
    first = index_url or plan.index_url or env.get("PIP_INDEX_URL") or PYPI
    extra = (env.get("PIP_EXTRA_INDEX_URL") or "").split()
    return list(dict.fromkeys([first.rstrip("/")] + [e.rstrip("/") for e in extra]))


def safe(url: str) -> str:
    return strip_url_credentials(url)


def check(plan, index_url: str | None = None, env: dict | None = None,
          timeout: float = DEFAULT_TIMEOUT, fetcher=None, now=None) -> OnlineResult:
    """Check ``plan`` (an ok install plan) against the live index. Never raises for network
    trouble: an unreachable index gives status "unreachable" and one line saying so."""
    env = dict(env or {})
    fetcher = fetcher or Fetcher(timeout)
    indexes = choose_indexes(plan, index_url, env)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    result = OnlineResult(status="verified", indexes=[safe(i) for i in indexes], checked_at=stamp)
    wanted = [("torch", plan.torch)] + [(k, v) for k, v in plan.companions.items() if v]
    pages: dict[str, list[tuple[str, list[IndexFile]]]] = {}
    try:
        for name, _ in wanted:
            pages[name] = []
            for idx in indexes:
                page = f"{idx}/{name}/"
                got = fetcher.get(page, ACCEPT)
                if got is None:  # 404: not on this index
                    continue
                body, ctype, final = got
                try:
                    pages[name].append((idx, parse_page(body, ctype, final)))
                except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
                    raise Unreachable(f"{safe(page)} answered with something that is not a PEP 691 "
                                      "JSON or PEP 503 HTML project page") from None
        for name, version in wanted:
            result.packages.append(_check_package(name, version, pages[name], plan, fetcher))
        result.newer = _newer_releases(pages.get("torch", []), plan, fetcher)
        for name, version in wanted[1:]:
            result.newer += _newer_companion(name, version, pages.get(name, []), plan, fetcher)
    except Unreachable as exc:
        result.status = "unreachable"
        result.lines = [f"online check not done: {safe(str(exc))}; the plan above comes from envcheck's "
                        "recipes only"]
        return result
    bad = [p for p in result.packages if p.status != "ok"]
    result.status = "mismatch" if bad else "verified"
    where = ", ".join(result.indexes)
    if bad:
        result.lines = [f"NOT verified on {where} at {stamp}:"] + [f"{p.name} {p.version}: {p.detail}" for p in bad]
    else:
        read = all(p.metadata.startswith("checked") for p in result.packages)
        result.lines = [f"verified on {where} at {stamp}: "
                        + "; ".join(f"{p.wheel}" for p in result.packages)
                        + (" (METADATA read and agrees)" if read else
                           " (wheel names checked; METADATA " + ", ".join(
                               f"{p.name}: {p.metadata}" for p in result.packages) + ")")]
    result.lines += result.newer
    if index_url and plan.index_url and index_url.rstrip("/") != plan.index_url:
        result.lines.append(f"the commands above name {plan.index_url}; to install from the mirror, "
                            f"pass --index-url {safe(index_url)} to pip instead")
    return result


def _check_package(name, version, pages, plan, fetcher) -> PackageResult:
    machine = plan.machine
    if not pages:
        return PackageResult(name, version, "missing", detail="the index has no page for " + name)
    found_any = []
    for idx, files in pages:
        rel = files_for(files, version)
        found_any += rel
        fits = [(f, v) for f, v in rel if wheel_fits(f.filename, machine)]
        live = [(f, v) for f, v in fits if f.yanked is None]
        if fits and not live:
            reason = fits[0][0].yanked
            return PackageResult(name, version, "yanked", safe(idx), fits[0][0].filename,
                                 detail=f"yanked on {safe(idx)}" + (f" ({reason})" if reason else ""))
        if not live:
            continue
        f, ver = live[0]
        res = PackageResult(name, version, "ok", safe(idx), f.filename)
        rp = f.requires_python
        py = machine.python_full or machine.python
        if rp and py:
            try:
                if not SpecifierSet(rp).contains(py, prereleases=True):
                    res.status, res.detail = "mismatch", f"the index says Requires-Python {rp}, which excludes Python {py}"
                    return res
            except InvalidSpecifier:
                pass
        meta, res.metadata = read_metadata(fetcher, f)
        if meta is None:
            return res
        problems = judge_metadata(meta, name, str(ver), machine, plan.torch, plan.cuda)
        if problems:
            res.status, res.detail = "mismatch", "; ".join(problems)
        return res
    if found_any:
        have = sorted({f.filename.split("-", 2)[-1] for f, _ in found_any})[:6]
        return PackageResult(name, version, "missing",
                             detail=f"no wheel for {wanted_tags(machine)}; the index has "
                                    + ", ".join(have) + (" ..." if len(found_any) > 6 else ""))
    return PackageResult(name, version, "missing", detail=f"release {version} is not on the index")


def _newer_releases(pages, plan, fetcher) -> list[str]:
    """Releases of torch on the index newer than the recipes know: what they would change."""
    from envcheck.recommend import data

    known = data.newest_known().version
    lines = []
    for idx, files in pages:
        newer = [v for v in releases_on(files) if v > known]
        if not newer:
            continue
        top = newer[-1]
        fits = [f for f, _ in files_for(files, str(top)) if wheel_fits(f.filename, plan.machine) and f.yanked is None]
        what = f"torch {top} is on {safe(idx)} but envcheck's recipes stop at {known}"
        if not fits:
            lines.append(what + f"; it has no wheel for {wanted_tags(plan.machine)}, so it would not change this plan")
            continue
        extra = ""
        meta, _ = read_metadata(fetcher, fits[0])
        if meta is not None:
            cuda = metadata_cuda(meta)
            extra = f" (METADATA: Requires-Python {meta.get('requires_python') or 'any'}" + (
                f", CUDA {cuda}" if cuda else "") + ")"
        gpu = plan.variant and plan.variant != "cpu" and plan.machine.gpus
        lines.append(what + f": a wheel for this machine exists{extra}. "
                     + ("envcheck does not know its GPU architecture list, so it is not recommended; "
                        "upgrade envcheck, or check torch.cuda.get_arch_list() after installing it"
                        if gpu else f"it would replace {plan.torch} once envcheck knows it (upgrade envcheck)"))
        break
    return lines


def _newer_companion(name, version, pages, plan, fetcher) -> list[str]:
    """A companion release newer than the recipes' pin that accepts the planned torch."""
    for idx, files in pages:
        for ver in reversed([v for v in releases_on(files) if v > Version(version)]):
            fits = [f for f, _ in files_for(files, str(ver)) if wheel_fits(f.filename, plan.machine)
                    and f.yanked is None]
            if not fits:
                continue
            meta, _ = read_metadata(fetcher, fits[0])
            if meta is None:
                return [f"{name} {ver} is on {safe(idx)}, newer than the pinned {version}; its METADATA "
                        "could not be read, so whether it accepts torch " + f"{plan.torch} is unknown"]
            if judge_metadata(meta, name, str(ver), plan.machine, plan.torch, None):
                continue
            return [f"{name} {ver} is on {safe(idx)} and its METADATA accepts torch {plan.torch}: it would "
                    f"replace the pinned {version} (envcheck's recipes predate it; "
                    "scripts/refresh_recipes.py adds it)"]
    return []


# --------------------------------------------------------------------------- the fetcher


class Fetcher:
    """GET with one deadline for the whole check. Proxies come from the environment (urllib's
    default handlers); user info in a URL becomes an Authorization header for that host only."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self._auth: dict[str, str] = {}
        # A fresh opener reads the proxy variables (http_proxy, https_proxy, no_proxy) now, not
        # when urllib's global opener was first built.
        self._opener = urllib.request.build_opener()

    def get_range(self, url: str, spec: str):
        """(bytes, total size) of an HTTP range, or None when the server ignores ranges (a 200
        would be the whole file: it is not read) or the file is missing."""
        req = self._request(url, "*/*")
        req.add_header("Range", spec)
        try:
            with self._opener.open(req, timeout=self._left(url)) as resp:
                m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.headers.get("Content-Range", "").strip())
                if resp.status != 206 or not m:
                    return None
                return resp.read(), int(m.group(3))
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 416):
                return None
            raise Unreachable(f"{safe(url)} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise self._unreachable(url, exc) from None

    def _left(self, url: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"no answer within {self.timeout:g} s")
        return left

    def _request(self, url: str, accept: str) -> urllib.request.Request:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.username is not None:
            token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._auth[host] = "Basic " + base64.b64encode(token.encode()).decode()
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "envcheck-online"})
        if host in self._auth:
            req.add_header("Authorization", self._auth[host])
        return req

    def _unreachable(self, url: str, exc: Exception) -> Unreachable:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return Unreachable(f"{safe(url)} did not answer within {self.timeout:g} s")
        return Unreachable(f"cannot reach {safe(url)} ({safe(str(reason))})")

    def get(self, url: str, accept: str):
        """(body, content type, final url) or None on 404; raises Unreachable otherwise."""
        req = self._request(url, accept)
        try:
            with self._opener.open(req, timeout=self._left(url)) as resp:  # http(s) index URLs only
                return resp.read(), resp.headers.get("Content-Type", ""), resp.geturl()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise Unreachable(f"{safe(url)} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise self._unreachable(url, exc) from None


def validate_index_url(url: str, online: bool = True) -> str:
    """``--index-url``: an http(s) URL, given with --online (one line error otherwise; exit 2)."""
    if not online:
        raise InputError("--index-url is the index --online checks: add --online (the printed "
                         "commands keep their own index)")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--index-url {safe(url)!r}: give an http(s) URL of a simple index, "
                         "e.g. https://mirror.example/simple")
    return url.strip().rstrip("/")


__all__ = ["OnlineResult", "PackageResult", "Unreachable", "Fetcher", "check", "choose_indexes",
           "parse_json_page", "parse_html_page", "parse_page", "wheel_fits", "platform_ok",
           "python_ok", "judge_metadata", "parse_metadata", "metadata_cuda", "validate_index_url"]
