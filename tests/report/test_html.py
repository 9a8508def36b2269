"""HTML reports: every kind renders from fixtures, parses strictly, loads nothing, escapes everything.

Fixtures: the doctor snapshots (tests/fixtures/snapshots/, findings evaluated as `envcheck report`
does), a CPU validate run recorded on the development VM, and the 8 x H100 validate and 16-node
cluster reports written by tests/fixtures/regen_html_reports.py through the real certification and
aggregation code.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from htmlcheck import check

from envcheck.cli import cli
from envcheck.report import html
from envcheck.report.html import files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPORTS = FIXTURES / "reports"
SNAPSHOTS = sorted((FIXTURES / "snapshots").glob("*.json"))
DOCTOR = [p for p in SNAPSHOTS if not p.name.startswith("nvidia_")]  # nvidia_*: one section only
HOSTILE = '<script>alert(1)</script>\x1b[31m"quoted\' \u202eevil'


def load(name: str) -> dict:
    return json.loads((REPORTS / name).read_text(encoding="utf-8"))


def doctor_doc(path: Path) -> dict:
    return html.complete(files.load(path))


def count(page: str, cls: str) -> int:
    return check(page).classes.get(cls, 0)


# ---------------------------------------------------------------------------- every kind renders


@pytest.mark.parametrize("path", DOCTOR, ids=lambda p: p.stem)
def test_every_doctor_snapshot_renders_a_strict_page(path):
    doc = doctor_doc(path)
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(parsed.text)
    verdict = doc["summary"]["verdict"].upper()
    assert verdict in text
    for f in doc["findings"]:
        assert f["id"] in text  # every finding is shown, with its id
    assert parsed.classes.get("finding", 0) == len(doc["findings"])


def test_doctor_page_shows_findings_evidence_fix_machine_and_gpus():
    doc = doctor_doc(FIXTURES / "snapshots" / "ecc_errors.json")
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(parsed.text)
    err = next(f for f in doc["findings"] if f["severity"] == "error")
    assert err["title"] in " ".join(text.split()) or html.base.t(err["title"]) in page
    assert "ERROR" in text and "Fix:" in text
    assert "Machine" in text and "Driver" in text and "GPUs" in text
    gpus = doc["nvidia"]["gpus"]
    assert page.count("<tr>") >= len(gpus)
    assert "NVIDIA H100 80GB HBM3" in text


def test_validate_gpu_report_draws_bars_against_spec_and_floor_and_the_busbw_curve():
    doc = load("validate_8xh100.json")
    page = html.render_html(doc)
    parsed = check(page)
    figs = [f for f in doc["figures"] if isinstance(f["value"], (int, float))]
    assert parsed.classes["bar"] == len(figs)  # one bar per figure per device
    assert parsed.classes["spec"] == sum(1 for f in figs if f["spec"] is not None) + 1  # + legend
    assert parsed.classes["bar-below"] == 1 + 1  # cuda:5's copy bandwidth, + legend swatch
    assert "BELOW FLOOR" in " ".join(parsed.text)
    rows = next(c for c in doc["checks"] if c["name"] == "allreduce")["details"]["rows"]
    assert parsed.classes["pt"] == len(rows) + 1  # curve points + legend
    assert parsed.classes["curve"] == 1 + 1
    assert "floor 270 GB/s" in " ".join(parsed.text)  # NVLink4 450 x 0.6
    assert "DEGRADED" in " ".join(parsed.text)


def test_validate_cpu_report_says_no_spec():
    doc = load("validate_cpu.json")
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(parsed.text)
    figs = [f for f in doc["figures"] if isinstance(f["value"], (int, float))]
    assert parsed.classes["bar"] == len(figs) and parsed.classes.get("bar-unjudged", 0) == len(figs) + 1
    assert text.count("\u00b7 no spec") == len(figs)
    assert "no floor known for this hardware" in text
    assert "PASSED" in text


def test_cluster_report_heat_map_straggler_and_pairwise_matrix():
    doc = load("cluster_16nodes.json")
    assert doc["num_nodes"] == 16
    page = html.render_html(doc)
    parsed = check(page)
    cells = parsed.classes["cell"]
    assert cells == 16 * 8  # 16 nodes x (4 gemm dtypes, 3 memory copies, busbw)
    straggler = [n for n in doc["nodes"] if n["straggler"]]
    assert [n["hostname"] for n in straggler] == ["gpu-a07"]
    assert parsed.classes["cell-flag"] == len(straggler[0]["straggler_figures"]) + 1  # + legend swatch
    failed_pairs = doc["pairwise"]["failed_pairs"]
    assert failed_pairs == 2
    assert parsed.classes["pair-fail"] == 2 * failed_pairs + 1  # both halves of the matrix + legend
    runs = sum(len(r) for r in doc["pairwise"]["rounds"])
    assert parsed.classes["pair-pass"] == 2 * (runs - failed_pairs) + 1
    text = " ".join(parsed.text)
    assert "gpu-a12" in text and "blamed by the pairwise all-reduce" in text
    assert "cluster median" in text and "\u25bc" in text  # straggler marked by a symbol, not colour alone
    assert "DEGRADED" in text and "FAILED" in text


def _points(page: str, cls: str) -> list[int]:
    """The number of points of each polyline of class ``curve <cls>``, in page order."""
    return [len(m.split()) for m in re.findall(rf'<polyline class="curve {cls}" points="([^"]*)"', page)]


def test_validate_watch_report_draws_traces_bands_and_findings_per_gpu():
    """validate_watch_2xh100.json: the real watcher over the scripted fake NVML (regen_html_reports.py)."""
    doc = load("validate_watch_2xh100.json")
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(" ".join(parsed.text).split())
    gemm, memory = doc["checks"]
    traces = [g["trace"] for ch in (gemm, memory) for g in ch["details"]["watch"]["gpus"]]
    n = [len(tr["t"]) for tr in traces]
    assert min(n) >= 10 and max(n) <= 240
    # one polyline per metric per GPU per check, with a point per trace point
    assert _points(page, "tr-temp") == n and _points(page, "tr-memtemp") == n
    assert _points(page, "tr-power") == n and _points(page, "tr-clock") == n
    assert parsed.classes["limit"] == len(n) + 1  # the power limit per GPU, + legend
    # GPU 0 of gemm throttles: one hatched band, named in words above the panels and in the note
    assert parsed.classes["band-warn"] == 1 + 1  # + legend swatch
    assert re.search(r'<text class="band-lbl warn-txt"[^>]*>HW thermal slowdown</text>', page)
    assert "HW slowdown + HW thermal slowdown 1.1" in text and "SW power cap" in text
    # GPU 1 of gemm: the DBE with GPU, counter and time, and its marker on the traces
    dbe = gemm["details"]["watch"]["gpus"][1]["events"][0]
    assert "GPU 1 \u00b7 NVIDIA H100 80GB HBM3 double-bit ECC errors (volatile DBE) " \
           f"{dbe['t']:.2f} s 0 \u2192 1 (+1)" in text
    assert parsed.classes["mark"] == 2 + 1  # gemm's DBE, memory's replay, + legend
    assert re.search(r'<text class="bad-txt band-lbl"[^>]*>DBE \+1</text>', page)
    w = gemm["details"]["watch"]
    assert f"gemm ({w['samples']} samples over 3.6 s, every 0.05 s)" in text and "FAILED" in text


def test_a_hostile_gpu_name_in_a_watch_is_escaped():
    doc = load("validate_watch_2xh100.json")
    doc["checks"][0]["details"]["watch"]["gpus"][0]["name"] = HOSTILE
    doc["checks"][0]["details"]["watch"]["gpus"][1]["events"][0]["counter"] = HOSTILE
    page = html.render_html(doc)
    check(page)
    assert "<script" not in page.lower() and "\x1b" not in page and "\u202e" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m&quot;quoted&#x27; \\u202eevil" in page


def test_watch_not_available_is_one_line_saying_why():
    doc = load("validate_cpu.json")
    why = "not available, because the run is on the CPU (NVML watches NVIDIA GPUs only)"
    for ch in doc["checks"]:
        ch.setdefault("details", {})["watch"] = {"available": False, "reason": why}
    parsed = check(html.render_html(doc))
    text = " ".join(parsed.text)
    assert f"GPU watch (NVML during each check) {why}" in " ".join(text.split())
    assert "tr-temp" not in parsed.classes
    assert "GPU watch" not in " ".join(check(html.render_html(load("validate_cpu.json"))).text)


def test_watch_traces_with_gaps_and_junk_still_render():
    doc = load("validate_watch_2xh100.json")
    tr = doc["checks"][0]["details"]["watch"]["gpus"][0]["trace"]
    tr["temp_c"][3] = None
    tr["mem_temp_c"] = [None] * len(tr["t"])
    tr["power_w"][0] = "hot"
    tr["events"][1] = "junk"
    tr["sm_clock_mhz"][2] = math.nan
    tr["t"][-1] = math.inf
    doc["checks"][1]["details"]["watch"]["gpus"][0]["trace"] = "junk"
    page = html.render_html(doc)
    check(page)
    assert len(_points(page, "tr-temp")) == 2 + 1 + 1  # the gap splits the first GPU's line
    assert not re.search(r' (?:x|y|x1|x2|y1|y2|width|height|points)="[^"]*(?:nan|inf)', page)


def test_the_cluster_page_draws_the_watch_of_rank_checks_with_a_finding():
    doc = load("cluster_16nodes.json")
    watched = load("validate_watch_2xh100.json")["checks"]
    quiet = {"available": True, "samples": 3, "seconds": 0.5, "interval_s": 0.25, "gpus": [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "events": [], "xids": [], "clock_event_samples": {}}]}
    for n in doc["nodes"]:
        for r in n["ranks"]:
            for ch in r["checks"]:
                ch.setdefault("details", {})["watch"] = quiet
    doc["nodes"][4]["ranks"][1]["checks"][2] = watched[0]  # gemm: throttling and a DBE
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(" ".join(parsed.text).split())
    assert "GPU watch (NVML during each check, every rank)" in text
    assert f"node 4 (gpu-a05) rank {doc['nodes'][4]['ranks'][1]['rank']} \u00b7 gemm" in text
    assert len(_points(page, "tr-temp")) == 2 and parsed.classes["band-warn"] == 2
    # schema 2: a rank summary lists only the checks that did not pass; the 16 detailed ranks all
    checks = sum(len(r["checks"]) for n in doc["nodes"] for r in n["ranks"])
    assert checks == 16 * 4
    assert f"{checks - 1} watched rank check(s) without a new error" in text
    assert "GPU watch" not in " ".join(check(html.render_html(load("cluster_16nodes.json"))).text)


def test_heat_map_colour_follows_distance_from_median():
    page = html.render_html(load("cluster_16nodes.json"))
    fills = re.findall(r'<rect class="cell"[^>]* fill="(#[0-9a-f]{6})"><title>gpu-a07 gemm bf16_tflops', page)
    assert fills == ["#b35806"]  # 26 % below the median: the saturated "worse" end


def test_cluster_without_pairwise_or_figures_still_renders():
    doc = load("cluster_16nodes.json")
    doc.pop("pairwise")
    for n in doc["nodes"]:
        n["figures"] = []  # schema 2: the node's figures feed the heat map
    doc["missing_ranks"] = [{"rank": 40, "hostname": None, "error": "no result from this rank"}]
    parsed = check(html.render_html(doc))
    assert "cell" not in parsed.classes and "pair-fail" not in parsed.classes
    assert "no result from this rank" in " ".join(parsed.text)


def test_compare_report_matrix_and_differences():
    doc = load("compare_fleet.json")
    page = html.render_html(doc)
    parsed = check(page)
    text = " ".join(parsed.text)
    odd = {n["name"] for n in doc["nodes"] if n["differs"]}
    assert odd == {"node-0003", "node-0007", "node-0009", "node-0010"}
    differing = [f for f in doc["fields"] if f["status"] == "differs"]
    in_matrix = sum(len(f["odd_nodes"]) for f in differing[:14])
    in_table = sum(len(v["nodes"]) > 0 for f in differing for v in f["values"] if v.get("nodes"))
    assert parsed.classes["diff"] == in_matrix + in_table
    assert "DIFFERS" in text and "560.35.03" in text and "NCCL_IB_DISABLE" in text
    assert "The same everywhere" in text


def test_compare_without_differences_says_same():
    doc = load("compare_fleet.json")
    for f in doc["fields"]:
        f["status"], f["odd_nodes"] = "same", []
        f["values"] = f["values"][:1]
    for n in doc["nodes"]:
        n["differs"], n["weighty"] = [], []
    doc["summary"]["exit_code"] = 0
    parsed = check(html.render_html(doc))
    assert "diff" not in parsed.classes and "SAME" in " ".join(parsed.text)


def test_a_node_without_a_metric_gets_a_no_value_cell():
    doc = load("cluster_16nodes.json")
    n = doc["nodes"][2]
    n["figures"] = [f for f in n["figures"] if f["check"] != "memory"]
    parsed = check(html.render_html(doc))
    assert parsed.classes["cell"] == 16 * 8 - 3
    assert " ".join(parsed.text).count("no value") == 2 * 3 + 1  # cell text and its tooltip, + the legend


def test_a_large_cluster_lists_failed_pairs_instead_of_the_matrix():
    from envcheck.report.html import cluster as view

    doc = load("cluster_16nodes.json")
    doc["nodes"] = [{**copy.deepcopy(n), "node_rank": k * 16 + n["node_rank"]} if k else n
                    for k in range(5) for n in doc["nodes"]]
    assert len(doc["nodes"]) > view.MAX_MATRIX_NODES
    parsed = check(html.render_html(doc))
    assert "pairmatrix" not in parsed.classes
    text = " ".join(parsed.text)
    assert "the matrix is drawn up to 64 nodes (this run has 80)" in text and "Failed pairs" in text


# ---------------------------------------------------------------------------- safety


def _hostile_docs() -> list[dict]:
    doctor = doctor_doc(FIXTURES / "snapshots" / "ecc_errors.json")
    doctor["host"]["hostname"] = HOSTILE
    doctor["nvidia"]["gpus"][0]["name"] = HOSTILE
    doctor["findings"][0]["evidence"] = {HOSTILE: HOSTILE}
    doctor["findings"][0]["fix"] = HOSTILE
    validate = load("validate_8xh100.json")
    validate["machine"]["hostname"] = HOSTILE
    validate["checks"][0]["message"] = HOSTILE
    validate["figures"][0]["device"] = HOSTILE
    validate["figures"][0]["unit"] = HOSTILE
    cluster = load("cluster_16nodes.json")
    for n in cluster["nodes"][:3]:
        n["hostname"] = HOSTILE
    cluster["pairwise"]["rounds"][0][0]["why"] = HOSTILE
    cluster["reasons"].append(HOSTILE)
    compare = load("compare_fleet.json")
    compare["nodes"][3]["name"] = HOSTILE
    driver = next(f for f in compare["fields"] if f["key"] == "driver.version")
    driver["odd_nodes"] = [HOSTILE]
    driver["values"][1] = {"value": HOSTILE, "count": 1, "nodes": [HOSTILE]}
    return [doctor, validate, cluster, compare]


@pytest.mark.parametrize("doc", _hostile_docs(), ids=["doctor", "validate", "cluster", "compare"])
def test_a_hostile_hostname_is_escaped_everywhere(doc):
    page = html.render_html(doc)
    check(page)  # still balanced: nothing broke out of a text node or an attribute
    assert "<script" not in page.lower()
    assert "\x1b" not in page and "\u202e" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m&quot;quoted&#x27; \\u202eevil" in page
    # inside SVG <title> and aria-label attributes too (the cluster's heat map rows)
    if doc["schema"] == "envcheck.cluster":
        assert "<title>&lt;script&gt;" in page


def test_secrets_never_reach_the_page():
    doc = load("validate_8xh100.json")
    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmNoPqR"
    doc["checks"][0]["message"] = f"HF_TOKEN={token} and https://user:pw@example.com/simple"
    page = html.render_html(doc)
    assert token not in page and "user:pw" not in page
    assert "&lt;redacted&gt;" in page


def test_no_string_from_the_report_lands_in_a_class_or_style():
    doc = load("validate_8xh100.json")
    doc["checks"][0]["status"] = 'pass" onload="x'
    doc["figures"][0]["status"] = "below; background:url(http://evil)"
    doc["verdict"] = "}</style><script>"
    page = html.render_html(doc)
    parsed = check(page)
    assert "onload" not in "".join(parsed.classes)
    assert "evil" not in "".join(parsed.styles)


def test_nan_and_wrong_types_never_break_the_page():
    doc = load("validate_8xh100.json")
    doc["figures"][0]["value"] = math.nan
    doc["figures"][1]["spec"] = math.inf
    doc["figures"][2]["floor"] = "lots"
    doc["checks"][3]["details"]["rows"][0]["busbw_GBps"] = None
    doc["checks"][3]["details"]["rows"].append("junk")
    doc["devices"] = "junk"
    page = html.render_html(doc)
    check(page)
    assert not re.search(r'="[^"]*(?:nan|inf)[^"]*"', page)


def test_unknown_kinds_are_refused():
    with pytest.raises(html.ReportError, match="no HTML view for schema 'envcheck.watch'"):
        html.render_html({"schema": "envcheck.watch"})
    with pytest.raises(html.ReportError):
        html.render_html([])  # type: ignore[arg-type]


def test_page_is_self_contained_and_printable():
    page = html.render_html(load("cluster_16nodes.json"))
    assert "default-src 'none'" in page  # the browser itself refuses any fetch
    assert "@media print" in page and "print-color-adjust:exact" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_rendering_is_pure_and_deterministic():
    doc = load("cluster_16nodes.json")
    before = copy.deepcopy(doc)
    assert html.render_html(doc) == html.render_html(doc)
    assert doc == before


# ---------------------------------------------------------------------------- files and CLI


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", ["validate_cpu.json", "validate_8xh100.json", "cluster_16nodes.json",
                                  "compare_fleet.json", "validate_watch_2xh100.json"])
def test_report_command_renders_a_saved_report(tmp_path, name):
    out = tmp_path / "r.html"
    r = invoke("report", "--html", str(out), str(REPORTS / name))
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and f"HTML report written to {out}" in r.stderr
    assert out.read_text(encoding="utf-8") == html.render_html(load(name))
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


def test_report_command_evaluates_a_saved_snapshot(tmp_path):
    out = tmp_path / "d.html"
    r = invoke("report", "--html", str(out), str(FIXTURES / "snapshots" / "one_gpu_lost.json"))
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    check(page)
    assert "NOT READY" in page and "nvidia.gpu-lost" in page


def _bad_inputs(tmp_path: Path) -> list[tuple[str, str]]:
    cases = []
    for name, content in [("nan.json", '{"schema": "envcheck.validate", "x": NaN}'),
                          ("list.json", "[1, 2]"), ("broken.json", "{"),
                          ("unknown.json", '{"schema": "envcheck.watch"}'),
                          ("snapshot.json", '{"schema": "envcheck.snapshot", "schema_version": 1}')]:
        (tmp_path / name).write_text(content)
        cases.append((str(tmp_path / name), ""))
    (tmp_path / "latin1.json").write_bytes(b'{"schema": "\xe9"}')
    cases.append((str(tmp_path / "latin1.json"), "is not UTF-8"))
    cases.append((str(tmp_path / "missing.json"), "No such file"))
    cases.append((str(tmp_path), "not a regular file"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        cases.append((str(tmp_path / "fifo"), "not a regular file"))
    return cases


def test_report_command_bad_input_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    for path, words in _bad_inputs(tmp_path):
        r = invoke("report", "--html", str(out), path)
        assert r.exit_code == 2, (path, r.output)
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, (path, r.stderr)
        assert r.stderr.startswith("envcheck: ") and words in r.stderr, (path, r.stderr)
    assert not out.exists()


def test_report_command_refuses_an_oversized_file(tmp_path, monkeypatch):
    from envcheck import snapshot

    monkeypatch.setattr(snapshot, "MAX_BYTES", 100)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"schema": "envcheck.validate", "pad": "x" * 200}))
    r = invoke("report", "--html", str(tmp_path / "r.html"), str(big))
    assert r.exit_code == 2 and "more than the 100" in r.stderr


def test_report_command_bad_output_path_exit_2(tmp_path):
    r = invoke("report", "--html", str(tmp_path / "nope" / "r.html"), str(REPORTS / "validate_cpu.json"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        r = invoke("report", "--html", str(tmp_path / "fifo"), str(REPORTS / "validate_cpu.json"))
        # refused up front, before any work, by the one output-path check (envcheck.outfile)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{tmp_path / 'fifo'} exists and is not a regular file" in r.stderr


def test_report_command_needs_html():
    r = invoke("report", str(REPORTS / "validate_cpu.json"))
    assert r.exit_code == 2 and "--html" in r.stderr


def test_doctor_html_writes_the_same_page_as_report(tmp_path):
    snap = FIXTURES / "snapshots" / "ecc_errors.json"
    out, js = tmp_path / "d.html", tmp_path / "d.json"
    r = invoke("doctor", "--snapshot", str(snap), "--format", "json", "--html", str(out))
    assert r.exit_code == 1  # the ECC error finding
    js.write_text(r.stdout)
    assert out.read_text(encoding="utf-8") == html.render_html(json.loads(r.stdout))
    r2 = invoke("report", "--html", str(tmp_path / "d2.html"), str(js))
    assert r2.exit_code == 0 and (tmp_path / "d2.html").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_doctor_html_to_a_directory_or_a_fifo_is_refused_up_front(tmp_path):
    snap = str(FIXTURES / "snapshots" / "healthy_8xh100.json")
    (tmp_path / "d.html").mkdir()
    r = invoke("doctor", "--snapshot", snap, "--html", str(tmp_path / "d.html"))
    assert r.exit_code == 2 and r.stdout == ""
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        r = invoke("doctor", "--snapshot", snap, "--html", str(tmp_path / "fifo"))
        # envcheck.outfile checks every output path before any work: one line, exit 2
        assert r.exit_code == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
        assert "not a regular file" in r.stderr


def test_validate_html_is_written_when_torch_is_broken(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "broken_torch" / "raises"))
    out = tmp_path / "v.html"
    r = invoke("validate", "--format", "json", "--html", str(out))
    assert r.exit_code == 1
    page = out.read_text(encoding="utf-8")
    assert page == html.render_html(json.loads(r.stdout))
    assert "FAILED" in page and page.count('class="badge bad"') >= 6


def test_cluster_validate_writes_html_through_the_report_files(monkeypatch, tmp_path):
    from envcheck.cluster import launch
    from envcheck.validate import output
    from envcheck.validate.distributed import mode

    rep = load("cluster_16nodes.json")
    monkeypatch.setattr(mode, "run", lambda *a, **k: rep)
    info = launch.detect({"RANK": "0", "WORLD_SIZE": "32", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                          "MASTER_PORT": "29500"})
    out, said = tmp_path / "c.html", []
    code = mode.main(info, mode.Options(checks=["allreduce"]), output.Outputs(fmt="json", html_path=str(out)),
                     write=said.append, progress=said.append)
    assert code == 1
    assert out.read_text(encoding="utf-8") == html.render_html(rep)


def test_validate_and_doctor_help_document_html():
    for cmd in ("doctor", "validate", "report"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "--html" in r.stdout
