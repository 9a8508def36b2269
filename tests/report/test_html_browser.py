"""The HTML reports in a real browser: Debian's Chromium, headless, each page from a file:// URL.

Each page must load with no console message at all (the pages have no script, so any message is
a script error or a blocked fetch under the page's Content-Security-Policy), give a non-blank
screenshot, and hold the SVG elements it is meant to draw once the browser has parsed it. Skipped,
saying why, where /usr/bin/chromium is absent; .ci/run installs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import browser
import pytest

from envcheck.report import html
from envcheck.report.html import files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPORTS = FIXTURES / "reports"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(browser.unavailable() is not None, reason=str(browser.unavailable()))]

PAGES = {
    "doctor": lambda: html.complete(files.load(FIXTURES / "snapshots" / "ecc_errors.json")),
    "validate_cpu": lambda: files.load(REPORTS / "validate_cpu.json"),
    "validate_gpu": lambda: files.load(REPORTS / "validate_8xh100.json"),
    "validate_watch": lambda: files.load(REPORTS / "validate_watch_2xh100.json"),
    "cluster": lambda: files.load(REPORTS / "cluster_16nodes.json"),
    "compare": lambda: files.load(REPORTS / "compare_fleet.json"),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Every page rendered to a file and opened once in Chromium (about 2 s each)."""
    folder = tmp_path_factory.mktemp("html")
    out = {}
    for name, make in PAGES.items():
        doc = make()
        page = folder / f"{name}.html"
        page.write_text(html.render_html(doc), encoding="utf-8")
        out[name] = (doc, browser.load(page, folder / f"{name}.png"))
    return out


def _count(dom: str, cls: str) -> int:
    return len(re.findall(rf'class="(?:[^"]* )?{re.escape(cls)}(?: [^"]*)?"', dom))


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_console_messages_and_draws(loaded, name):
    doc, got = loaded[name]
    assert got.returncode == 0, got.log[-2000:]
    assert got.console == [], got.console
    assert "<svg" in got.dom and "</html>" in got.dom
    width, height, colours, ink = browser.png_stats(got.png)
    assert (width, height) == (1200, 1600)
    assert colours >= 50, colours  # text, badges and charts, not a blank or one-colour page
    assert 0.02 < ink < 0.9, ink


def test_validate_gpu_bars_and_curve_points_are_in_the_dom(loaded):
    doc, got = loaded["validate_gpu"]
    figs = [f for f in doc["figures"] if isinstance(f["value"], (int, float))]
    assert _count(got.dom, "bar") == len(figs)
    rows = next(c for c in doc["checks"] if c["name"] == "allreduce")["details"]["rows"]
    assert len(re.findall(r'<circle[^>]* class="pt[ "]', got.dom)) == len(rows) + 1  # + the legend's marker
    assert "BELOW FLOOR" in got.dom


def test_watch_traces_bands_and_labels_are_in_the_dom(loaded):
    doc, got = loaded["validate_watch"]
    gpus = [g for ch in doc["checks"] for g in ch["details"]["watch"]["gpus"]]
    for cls in ("tr-temp", "tr-power", "tr-clock"):
        lines = re.findall(rf'<polyline class="curve {cls}" points="([^"]*)"', got.dom)
        assert [len(p.split()) for p in lines] == [len(g["trace"]["t"]) for g in gpus], cls
    assert _count(got.dom, "band-warn") == 2 and ">HW thermal slowdown</text>" in got.dom
    assert ">DBE +1</text>" in got.dom and "double-bit ECC errors (volatile DBE)" in got.dom


def test_cpu_bars_say_no_spec_in_the_dom(loaded):
    doc, got = loaded["validate_cpu"]
    assert _count(got.dom, "bar") == len(doc["figures"])
    assert got.dom.count("\u00b7 no spec") == len(doc["figures"])


def test_cluster_heat_map_cells_and_failed_pairs_are_in_the_dom(loaded):
    doc, got = loaded["cluster"]
    assert _count(got.dom, "cell") == 16 * 8
    assert _count(got.dom, "pair-fail") == 2 * doc["pairwise"]["failed_pairs"] + 1
    assert "gpu-a07" in got.dom and "cluster median" in got.dom


def test_doctor_findings_are_in_the_dom(loaded):
    doc, got = loaded["doctor"]
    assert _count(got.dom, "finding") == len(doc["findings"])


def test_the_console_check_can_fail(tmp_path):
    """A page with a script error and a blocked fetch is caught: the check above is not vacuous."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                    "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body><p>x</p>"
                    "<img src=\"https://example.invalid/x.png\"><script>undefinedFn()</script></body></html>")
    got = browser.load(page, tmp_path / "bad.png", height=400)
    assert any("undefinedFn" in line for line in got.console), got.log[-2000:]
    assert any("Content Security Policy" in line for line in got.console), got.console


def test_hostile_hostname_stays_text_in_the_browser(tmp_path):
    doc = json.loads((REPORTS / "cluster_16nodes.json").read_text(encoding="utf-8"))
    doc["nodes"][0]["hostname"] = '<img src=x onerror="console.error(1)"><script>console.error(2)</script>'
    page = tmp_path / "hostile.html"
    page.write_text(html.render_html(doc), encoding="utf-8")
    got = browser.load(page, tmp_path / "hostile.png", height=600)
    assert got.console == []
    assert "<script>console.error(2)" not in got.dom and "&lt;script&gt;console.error(2)" in got.dom
