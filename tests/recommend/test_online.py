"""`envcheck install --online` end to end against a fixture index served on 127.0.0.1.

The server speaks PEP 691 JSON (or PEP 503 HTML when asked to) and serves PEP 658 `.metadata`
files; scenarios: a verified plan, a missing wheel, a yanked release, METADATA that disagrees,
a release newer than the recipes, a slow server (timeout), a closed port (offline), and a mirror
URL with credentials that must never be printed.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from envcheck.cli import cli
from envcheck.recommend import online, recommend, what_if_machine

JSON = "application/vnd.pypi.simple.v1+json"
TORCH_META = ("Metadata-Version: 2.1\nName: torch\nVersion: {v}\nRequires-Python: >=3.10\n"
              "Requires-Dist: cuda-toolkit[cublas,cudart]==13.2.2; platform_system == \"Linux\"\n"
              "Requires-Dist: triton~=3.9.0; platform_system == \"Linux\"\n")
VISION_META = ("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.29.2\nRequires-Python: >=3.10,!=3.14.1\n"
               "Requires-Dist: numpy\nRequires-Dist: torch (>={torch})\n")
MACHINE = ["--platform", "linux-x86_64", "--python", "3.12", "--gpu", "H100", "--driver", "580.95.05",
           "--glibc", "2.35"]


def _file(name, requires=">=3.10", yanked=False, meta=True):
    return {"filename": name, "url": f"../../files/{name}", "hashes": {"sha256": "00"},
            "requires-python": requires, "yanked": yanked, "core-metadata": {"sha256": "00"} if meta else False}


def _index(torch_files=None, vision_files=None, metas=None):
    torch_files = torch_files if torch_files is not None else [
        _file("torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"),
        _file("torch-2.15.0-cp312-cp312-win_amd64.whl"),
        _file("torch-2.14.1-cp312-cp312-manylinux_2_28_x86_64.whl"),
    ]
    vision_files = vision_files if vision_files is not None else [
        _file("torchvision-0.29.2-py3-none-manylinux_2_28_x86_64.whl", ">=3.10,!=3.14.1")]
    pages = {
        "/simple/torch/": {"meta": {"api-version": "1.1"}, "name": "torch", "files": torch_files},
        "/simple/torchvision/": {"meta": {"api-version": "1.1"}, "name": "torchvision", "files": vision_files},
    }
    files = {
        "/files/torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl.metadata": TORCH_META.format(v="2.15.0"),
        "/files/torch-2.16.0-cp312-cp312-manylinux_2_28_x86_64.whl.metadata": TORCH_META.format(v="2.16.0"),
        "/files/torchvision-0.29.2-py3-none-manylinux_2_28_x86_64.whl.metadata": VISION_META.format(torch="2.14.0"),
    }
    files.update(metas or {})
    return pages, files


def _html(page: dict) -> str:
    rows = []
    for f in page["files"]:
        attrs = f'href="{f["url"]}#sha256=00" data-requires-python="{f["requires-python"].replace(">", "&gt;")}"'
        if f.get("core-metadata"):
            attrs += ' data-core-metadata="sha256=00"'
        if f.get("yanked"):
            attrs += f' data-yanked="{f["yanked"] if isinstance(f["yanked"], str) else ""}"'
        rows.append(f"<a {attrs}>{f['filename']}</a><br/>")
    return "<!DOCTYPE html><html><body>" + "".join(rows) + "</body></html>"


class FixtureIndex:
    def __init__(self, pages, files, html=False, delay=0.0, auth=None, ranges=True):
        self.pages, self.files, self.html, self.delay, self.auth = pages, files, html, delay, auth
        self.ranges = ranges
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                outer.requests.append((self.path, self.headers.get("Authorization")))
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.auth and self.headers.get("Authorization") != outer.auth:
                    self.send_response(401)
                    self.end_headers()
                    return
                path = urllib.parse.urlsplit(self.path).path  # absolute URI when used as a proxy
                if path in outer.pages:
                    if outer.html or JSON not in (self.headers.get("Accept") or ""):
                        body, ctype = _html(outer.pages[path]).encode(), "text/html"
                    else:
                        body, ctype = json.dumps(outer.pages[path]).encode(), JSON
                elif path in outer.files:
                    body, ctype = outer.files[path], "application/octet-stream"
                    body = body.encode() if isinstance(body, str) else body
                    m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
                    if m and outer.ranges:
                        total = len(body)
                        a, b = m.groups()
                        start, end = (max(0, total - int(b)), total - 1) if not a else (int(a), min(int(b or total - 1), total - 1))
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                        self.send_header("Content-Length", str(end - start + 1))
                        self.end_headers()
                        self.wfile.write(body[start:end + 1])
                        return
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # a client that stops reading (no ranges) is fine
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def runner(monkeypatch):
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "http_proxy", "HTTP_PROXY", "https_proxy",
                "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    def boom(*a, **k):
        raise AssertionError("a fully described machine must not be probed")

    monkeypatch.setattr("envcheck.probes.collect", boom)
    return CliRunner()


def run(runner, *args, **kw):
    return runner.invoke(cli, ["install", *MACHINE, "--with", "torchvision", "--online", *args], **kw)


def test_verified_plan(runner):
    with FixtureIndex(*_index()) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 0, res.output
    assert f"verified on {idx.url} at " in res.output
    assert "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl" in res.output
    assert "METADATA read and agrees" in res.output and "Verdict: INSTALLABLE" in res.output
    paths = [p for p, _ in idx.requests]
    assert "/simple/torch/" in paths and "/files/torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl.metadata" in paths


def test_verified_plan_json(runner):
    with FixtureIndex(*_index()) as idx:
        res = run(runner, "--index-url", idx.url, "--format", "json")
    doc = json.loads(res.stdout)
    assert doc["online"]["status"] == "verified" and doc["exit_code"] == 0
    assert [(p["name"], p["status"], p["metadata"]) for p in doc["online"]["packages"]] == [
        ("torch", "ok", "checked (PEP 658)"), ("torchvision", "ok", "checked (PEP 658)")]


def test_html_index_pep503(runner):
    with FixtureIndex(*_index(), html=True) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 0 and "verified on" in res.output and "METADATA read and agrees" in res.output


def test_missing_wheel(runner):
    pages, files = _index(torch_files=[_file("torch-2.15.0-cp313-cp313-manylinux_2_28_x86_64.whl"),
                                       _file("torch-2.15.0-cp312-cp312-win_amd64.whl")])
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 1, res.output
    assert "NOT verified on" in res.output
    assert "torch 2.15.0: no wheel for cp312 / manylinux (glibc <= 2.35) x86_64" in res.output
    assert "Verdict: NOT VERIFIED" in res.output


def test_glibc_floor_of_the_index_wheel(runner):
    pages, files = _index(torch_files=[_file("torch-2.15.0-cp312-cp312-manylinux_2_39_x86_64.whl")])
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 1 and "manylinux_2_39_x86_64" in res.output


def test_yanked_release(runner):
    pages, files = _index(torch_files=[
        _file("torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl", yanked="broken CUDA dependency pins")])
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 1
    assert "torch 2.15.0: yanked on" in res.output and "broken CUDA dependency pins" in res.output


def test_metadata_that_disagrees(runner):
    pages, files = _index(metas={
        "/files/torchvision-0.29.2-py3-none-manylinux_2_28_x86_64.whl.metadata": VISION_META.format(torch="2.16")})
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 1
    assert "torchvision 0.29.2 METADATA requires torch>=2.16, not 2.15.0" in res.output


def test_newer_release_on_the_index_is_reported_not_used(runner):
    pages, files = _index()
    pages["/simple/torch/"]["files"].append(_file("torch-2.16.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url, "--format", "json")
    doc = json.loads(res.stdout)
    assert doc["torch"] == "2.15.0" and doc["online"]["status"] == "verified"
    (line,) = doc["online"]["newer"]
    assert "torch 2.16.0 is on" in line and "recipes stop at 2.15.0" in line
    assert "CUDA 13.2" in line and "not recommended" in line


def test_slow_server_times_out_with_one_line(runner):
    with FixtureIndex(*_index(), delay=3.0) as idx:
        t0 = time.monotonic()
        res = run(runner, "--index-url", idx.url, "--online-timeout", "0.5")
        took = time.monotonic() - t0
    assert took < 2.5
    assert res.exit_code == 0, res.output  # the offline plan stands
    lines = [x for x in res.output.splitlines() if "online check not done" in x]
    assert len(lines) == 1 and "did not answer within 0.5 s" in lines[0]


def test_offline_is_one_clear_line(runner):
    with FixtureIndex(*_index()) as idx:
        url = idx.url
    res = run(runner, "--index-url", url)  # the server is gone: connection refused
    assert res.exit_code == 0
    assert "online check not done: cannot reach" in res.output and "recipes only" in res.output


def test_mirror_credentials_are_used_but_never_printed(runner):
    auth = "Basic " + base64.b64encode(b"alice:s3cretpw").decode()
    with FixtureIndex(*_index(), auth=auth) as idx:
        url = idx.url.replace("http://", "http://alice:s3cretpw@")
        text = run(runner, "--index-url", url)
        doc = run(runner, "--index-url", url, "--format", "json")
        env = run(runner, env={"PIP_INDEX_URL": url})  # the plan is plain PyPI: PIP_INDEX_URL counts
    for res in (text, doc, env):
        assert res.exit_code == 0, res.output
        assert "s3cretpw" not in res.output and "alice" not in res.output
        assert "s3cretpw" not in res.stderr
    assert "verified on http://***@127.0.0.1:" in text.output
    assert {a for _, a in idx.requests} == {auth}  # every request carried the credentials


def test_bad_index_url_is_a_usage_error(runner):
    res = run(runner, "--index-url", "ftp://x:pw@mirror/simple")
    assert res.exit_code == 2 and "pw" not in res.output
    res = runner.invoke(cli, ["install", *MACHINE, "--index-url", "https://mirror/simple"])
    assert res.exit_code == 2 and "add --online" in res.output


def test_without_online_nothing_is_fetched(runner, monkeypatch):
    monkeypatch.setattr(online, "check", lambda *a, **k: pytest.fail("--online not given"))
    res = runner.invoke(cli, ["install", *MACHINE])
    assert res.exit_code == 0 and "Online check" not in res.output


# ------------------------------------------------------------------------- pure parts


def test_choose_indexes_follows_pip():
    plan = recommend(what_if_machine(platform="linux-x86_64", python="3.12", gpus=["H100"],
                                     driver="550.90.07", glibc="2.35"))
    assert plan.index_url == "https://download.pytorch.org/whl/cu126"
    env = {"PIP_INDEX_URL": "https://mirror/simple", "PIP_EXTRA_INDEX_URL": "https://a/simple https://b/simple/"}
    # the command's --index-url wins over PIP_INDEX_URL; PIP_EXTRA_INDEX_URL still applies
    assert online.choose_indexes(plan, None, env) == [plan.index_url, "https://a/simple", "https://b/simple"]
    assert online.choose_indexes(plan, "https://m/cu126/", {}) == ["https://m/cu126"]
    cpu = recommend(what_if_machine(platform="windows-x86_64", python="3.12", no_gpu=True))
    assert online.choose_indexes(cpu, None, env)[0] == "https://mirror/simple"
    assert online.choose_indexes(cpu, None, {}) == [online.PYPI]


@pytest.mark.parametrize("filename,fits", [
    ("torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl", True),
    ("torch-2.15.0+cu126-cp312-cp312-manylinux_2_28_x86_64.whl", True),
    ("torch-2.6.0-cp312-cp312-manylinux1_x86_64.whl", True),
    ("torch-2.15.0-cp312-cp312-manylinux_2_36_x86_64.whl", False),  # glibc 2.35 here
    ("torch-2.15.0-cp313-cp313-manylinux_2_28_x86_64.whl", False),
    ("torch-2.15.0-cp312-cp312t-manylinux_2_28_x86_64.whl", False),
    ("torch-2.15.0-cp312-cp312-manylinux_2_28_aarch64.whl", False),
    ("torchvision-0.29.2-py3-none-manylinux_2_28_x86_64.whl", True),
    ("pkg-1.0-cp39-abi3-manylinux2014_x86_64.whl", True),
    ("torch-2.15.0-cp312-cp312-win_amd64.whl", False),
])
def test_wheel_fits_linux(filename, fits):
    m = what_if_machine(platform="linux-x86_64", python="3.12", glibc="2.35", no_gpu=True)
    assert online.wheel_fits(filename, m) is fits


def test_wheel_fits_macos_floor():
    m = what_if_machine(platform="macos-arm64", python="3.12", macos="13.6")
    assert online.wheel_fits("torch-2.11.0-cp312-none-macosx_11_0_arm64.whl", m)
    assert not online.wheel_fits("torch-2.15.0-cp312-none-macosx_14_0_arm64.whl", m)


def test_judge_metadata_patch_level_python():
    m = what_if_machine(platform="linux-x86_64", python="3.14.1", no_gpu=True)
    meta = online.parse_metadata(VISION_META.format(torch="2.14.0"))
    assert online.judge_metadata(meta, "torchvision", "0.29.2", m, "2.15.0", None) == [
        "torchvision 0.29.2 METADATA Requires-Python >=3.10,!=3.14.1 excludes Python 3.14.1"]
    assert online.metadata_cuda(online.parse_metadata(TORCH_META.format(v="2.15.0"))) == "13.2"


# ------------------------------------------------- METADATA without PEP 658: HTTP range requests


def _wheel(meta: str, padding_files: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("torch/__init__.py", "x = 1\n" * 1000)
        for i in range(padding_files):  # a central directory bigger than the 64 KiB tail read
            z.writestr(f"torch/lib/a_rather_long_directory_name/for_padding/file_{i:05d}.py", "")
        z.writestr("torch-2.15.0.dist-info/METADATA", meta)
        z.writestr("torch-2.15.0.dist-info/RECORD", "")
    return buf.getvalue()


@pytest.mark.parametrize("padding", [0, 1500])
def test_metadata_read_from_the_wheel_with_ranges(runner, padding):
    name = "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    pages, files = _index(torch_files=[_file(name, meta=False)])
    files[f"/files/{name}"] = _wheel(TORCH_META.format(v="2.15.0"), padding)
    with FixtureIndex(pages, files) as idx:
        doc = json.loads(run(runner, "--index-url", idx.url, "--format", "json").stdout)
    torch = doc["online"]["packages"][0]
    assert torch["metadata"] == "checked (read from the wheel with HTTP range requests)"
    assert torch["status"] == "ok" and doc["online"]["status"] == "verified"
    ranges = [p for p, _ in idx.requests if p == f"/files/{name}"]
    assert len(ranges) == (2 if padding == 0 else 3)  # tail (+ central directory) + the entry


def test_range_read_metadata_can_disagree(runner):
    name = "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    pages, files = _index(torch_files=[_file(name, meta=False)])
    files[f"/files/{name}"] = _wheel(TORCH_META.format(v="2.15.0").replace("13.2.2", "12.6.3"))
    with FixtureIndex(pages, files) as idx:
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 1
    assert "torch 2.15.0 METADATA pins CUDA 12.6; the plan expects CUDA 13.2" in res.output


def test_no_pep658_and_no_ranges_is_said(runner):
    name = "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    pages, files = _index(torch_files=[_file(name, meta=False)])
    files[f"/files/{name}"] = _wheel(TORCH_META.format(v="2.15.0"))
    with FixtureIndex(pages, files, ranges=False) as idx:
        doc = json.loads(run(runner, "--index-url", idx.url, "--format", "json").stdout)
    assert doc["online"]["status"] == "verified"
    assert doc["online"]["packages"][0]["metadata"] == "not offered by the index (no PEP 658, no HTTP ranges)"
    assert "wheel names checked" in doc["online"]["lines"][0]


def test_newer_companion_that_accepts_the_torch_is_reported(runner):
    pages, files = _index()
    pages["/simple/torchvision/"]["files"] += [
        _file("torchvision-0.30.0-py3-none-manylinux_2_28_x86_64.whl"),
        _file("torchvision-0.29.3-py3-none-manylinux_2_28_x86_64.whl")]
    files["/files/torchvision-0.30.0-py3-none-manylinux_2_28_x86_64.whl.metadata"] = VISION_META.format(torch="2.16")
    files["/files/torchvision-0.29.3-py3-none-manylinux_2_28_x86_64.whl.metadata"] = VISION_META.format(torch="2.14")
    with FixtureIndex(pages, files) as idx:
        doc = json.loads(run(runner, "--index-url", idx.url, "--format", "json").stdout)
    assert doc["online"]["status"] == "verified"
    (line,) = doc["online"]["newer"]
    assert line.startswith("torchvision 0.29.3 is on") and "would replace the pinned 0.29.2" in line


def test_garbage_from_the_index_is_one_line_not_a_traceback(runner):
    pages, files = _index()
    with FixtureIndex(pages, files) as idx:
        idx.pages["/simple/torch/"] = None  # json.dumps(None) -> "null": not a project page
        res = run(runner, "--index-url", idx.url)
    assert res.exit_code == 0 and res.exception is None
    assert "online check not done" in res.output


def test_a_wheel_that_is_not_a_zip_is_survived(runner):
    name = "torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    pages, files = _index(torch_files=[_file(name, meta=False)])
    files[f"/files/{name}"] = b"PK\x05\x06" + b"\xff" * 40  # an end record pointing nowhere
    with FixtureIndex(pages, files) as idx:
        doc = json.loads(run(runner, "--index-url", idx.url, "--format", "json").stdout)
    assert doc["online"]["status"] == "verified"
    assert doc["online"]["packages"][0]["metadata"].startswith("not offered")


def test_page_parsers_survive_odd_input():
    assert online.parse_html_page("<a>no href</a><a href='x.whl' data-yanked>x.whl</a><p>", "http://i/") [
        1].yanked == ""
    assert online.parse_json_page({"files": [{"filename": 3}, "x", {"filename": "a.whl"}]}, "http://i/")[
        0].filename == "a.whl"
    assert online.parse_json_page([], "http://i/") == []


def test_proxy_from_the_environment_is_used(runner, monkeypatch):
    with FixtureIndex(*_index()) as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.rsplit("/simple", 1)[0])
        monkeypatch.setenv("no_proxy", "")
        res = run(runner, "--index-url", "http://mirror.invalid/simple")
    assert res.exit_code == 0, res.output
    assert "verified on http://mirror.invalid/simple" in res.output
    assert any(p.startswith("http://mirror.invalid/simple/torch/") for p, _ in proxy.requests)
