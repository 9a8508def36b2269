"""The kernel-log probe on fixture roots (tests/fixtures/kernel_logs) and on this machine."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from envcheck.probes import kernel_log

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "kernel_logs"
KEYS = {"source", "readable", "error", "uptime_s", "truncated", "ring_buffer_wrapped", "xids", "sxids"}


def test_xids_and_sxids_are_grouped_per_device_with_first_and_last_time():
    out = kernel_log.probe(LOGS / "hgx_xids", commands=False)
    assert set(out) == KEYS
    assert (out["source"], out["readable"], out["error"]) == ("/dev/kmsg", True, None)
    assert out["uptime_s"] == 7300.51 and out["ring_buffer_wrapped"] is False
    by = {(x["pci"], x["code"]): x for x in out["xids"]}
    assert set(by) == {("0000:48:00", 79), ("0000:68:00", 13), ("0000:68:00", 43), ("0000:28:00", 94)}
    assert by[("0000:48:00", 79)]["count"] == 1
    assert by[("0000:48:00", 79)]["first_s"] == pytest.approx(5123.456801)
    thirteen = by[("0000:68:00", 13)]
    assert thirteen["count"] == 3
    assert (thirteen["first_s"], thirteen["last_s"]) == (6000.0, pytest.approx(6000.0002))
    assert thirteen["sample"].startswith("NVRM: Xid (PCI:0000:68:00): 13, pid=48213")
    sx = {(s["pci"], s["code"], s["fatal"]): s["count"] for s in out["sxids"]}
    # the "Severity 1 Engine ..." line continues the fatal 20034 and is not counted again
    assert sx == {("0000:06:00", 20034, True): 1, ("0000:07:00", 12028, False): 1}
    json.dumps(out)


def test_a_clean_log_is_readable_and_empty():
    out = kernel_log.probe(LOGS / "clean", commands=False)
    assert out["readable"] is True and out["xids"] == [] and out["sxids"] == []


def test_a_wrapped_ring_buffer_is_said():
    out = kernel_log.probe(LOGS / "wrapped", commands=False)
    assert out["ring_buffer_wrapped"] is True
    assert [x["code"] for x in out["xids"]] == [48, 63]


def test_no_kmsg_says_why_and_never_claims_no_xid(tmp_path):
    out = kernel_log.probe(tmp_path, commands=False)
    assert out["readable"] is False and out["source"] is None
    assert out["error"].startswith("/dev/kmsg: ")
    assert out["xids"] == [] and out["uptime_s"] is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_kmsg_names_the_permission(tmp_path):
    (tmp_path / "dev").mkdir()
    kmsg = tmp_path / "dev" / "kmsg"
    kmsg.write_text("4,1,1,-;x\n")
    kmsg.chmod(0)
    out = kernel_log.probe(tmp_path, commands=False)
    assert "not permitted" in out["error"]


def test_reading_is_bounded_in_size(tmp_path):
    (tmp_path / "dev").mkdir()
    line = "4,{},{},-;NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=a, Graphics Exception\n"
    (tmp_path / "dev" / "kmsg").write_text("".join(line.format(i, i) for i in range(20000)))
    out = kernel_log.probe(tmp_path, max_bytes=64 * 1024, commands=False)
    assert out["truncated"] is True
    assert 0 < out["xids"][0]["count"] < 20000


def test_a_fifo_that_never_ends_is_bounded_in_time(tmp_path):
    (tmp_path / "dev").mkdir()
    fifo = tmp_path / "dev" / "kmsg"
    os.mkfifo(fifo)
    start = time.monotonic()
    out = kernel_log.probe(tmp_path, max_seconds=0.3, commands=False)  # no writer: EOF or EAGAIN
    assert time.monotonic() - start < 2.0
    assert out["readable"] is True and stat.S_ISFIFO(fifo.stat().st_mode)


def test_journalctl_lines_parse_with_their_monotonic_time():
    lines = []
    for raw in (LOGS / "journalctl_xids.txt").read_text().splitlines():
        m = kernel_log._BRACKET_TIME.match(raw)
        lines.append((float(m.group(1)), raw))
    xids, sxids = kernel_log.parse(lines)
    assert [(x["pci"], x["code"], x["first_s"]) for x in xids] == [
        ("0000:48:00", 79, 5123.456801), ("0000:68:00", 13, 6000.0)]
    assert sxids == []


def test_control_characters_in_a_line_are_neutralised():
    xids, _ = kernel_log.parse([(1.0, "NVRM: Xid (PCI:0000:18:00): 13, name=\x1b]0;pwned\x07x")])
    assert "\x1b" not in xids[0]["sample"] and "\x07" not in xids[0]["sample"]


def test_bus_ids_normalise_to_the_nvml_key():
    assert kernel_log._bus("0000:18:00") == "0000:18:00"
    assert kernel_log._bus("00000000:AB:00") == "0000:ab:00"


def test_this_machine_never_raises():
    out = kernel_log.probe()
    assert set(out) == KEYS
    assert out["readable"] in (True, False)
    json.dumps(out)
