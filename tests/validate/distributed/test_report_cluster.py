"""Cluster report renderers: JUnit parsed back as XML, and the text table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from envcheck import outfile
from envcheck.report import cluster as render


def test_junit_one_testcase_per_check_per_node_plus_straggler(tmp_path, cluster_rep):
    """Per node, not per rank (issue 5; issue 10 class 11): a node check's failure names its ranks."""
    rep = cluster_rep
    path = outfile.write_text(tmp_path / "junit.xml", render.to_junit(rep))
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["gpu00 (node 0)", "gpu01 (node 1)", "ranks without a node"]
    for s in suites:  # required attributes (junit-10.xsd)
        assert all(s.get(a) is not None for a in ("name", "tests", "failures", "errors"))
        assert int(s.get("tests")) == len(s.findall("testcase"))
        assert all(c.get("name") for c in s.findall("testcase"))
    node1 = suites[1]
    cases = {(c.get("classname"), c.get("name")): c for c in node1.findall("testcase")}
    assert sorted(cases) == [("gpu01.node", n) for n in ("allreduce", "compile", "gemm", "straggler")]
    assert cases[("gpu01.node", "allreduce")].find("failure").get("message") == "rank 3: wrong sum"
    assert cases[("gpu01.node", "compile")].find("skipped").get("message") == "rank 2: no C compiler"
    assert cases[("gpu01.node", "gemm")].get("time") == "1.500"
    assert "below the cluster median" in cases[("gpu01.node", "straggler")].find("failure").get("message")
    assert node1.find("properties/property").get("value") == "failed"
    missing = suites[2].find("testcase")
    assert missing.find("error").get("message") == "never joined within 60 s"
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites)
    assert int(root.get("errors")) == 1 and int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)


def test_junit_escapes_messages(cluster_rep):
    rep = cluster_rep
    rep["nodes"][1]["ranks"][1]["checks"][1]["message"] = 'a <b> & "c"'
    root = ET.fromstring(render.to_junit(rep).split("\n", 1)[1])
    msgs = [f.get("message") for f in root.iter("failure")]
    assert 'rank 3: a <b> & "c"' in msgs


def test_text_table(cluster_rep):
    text = render.to_text(cluster_rep)
    lines = text.splitlines()
    assert lines[0].split() == ["node", "host", "verdict", "ranks", "straggler"]
    assert lines[1].split()[:4] == ["0", "gpu00", "certified", "0-1"]
    assert lines[2].split()[:4] == ["1", "gpu01", "failed", "2-3"]
    assert "below the cluster median" in lines[2]
    assert "why:" in lines and lines[-1] == "FAILED: 5 ranks on 2 nodes"
    assert "  - rank 4: never joined within 60 s" in lines
    assert "\x1b[" not in text and "\x1b[" in render.to_text(cluster_rep, color=True)


def test_text_names_what_the_result_channel_refused_neutralised(cluster_rep):
    quiet = {**cluster_rep, "channel": {"accepted": 4, "refused": 0, "closed_unauthenticated": 0, "notes": []}}
    assert "result channel" not in render.to_text(quiet)
    notes = ["a second connection claimed rank 1: refused (first claim wins)",
             "rank 2 sent hostname 'node[1-9]\x1b]0;x\x07': not one node name, dropped"]
    notes += [f"note {i}" for i in range(10)]
    rep = {**cluster_rep, "channel": {"refused": 1, "closed_unauthenticated": 3, "notes": notes}}
    lines = render.to_text(rep).splitlines()
    at = lines.index("result channel: 1 claim(s) refused, 3 connection(s) closed unauthenticated")
    assert lines[at + 1] == "  - a second connection claimed rank 1: refused (first claim wins)"
    assert "\x1b" not in lines[at + 2] and "\\x1b" in lines[at + 2]
    assert lines[at + 9] == "  - and 4 more (see the JSON report's channel.notes)"
    assert lines[at + 10] == "" and lines[at + 11] == "why:"
