"""Rank results to rank 0 with deadlines: finished, died, hung and never-joined ranks are named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from envcheck.validate.distributed import channel
from envcheck.validate.distributed.channel import Collector, Reporter, ReporterError


def test_report_port_is_ephemeral_unless_an_operator_fixes_one():
    assert channel.report_port({}) == 0
    assert channel.report_port({"ENVCHECK_REPORT_PORT": "31000"}) == 31000
    assert channel.report_port({"ENVCHECK_REPORT_PORT": "x"}) == 0


def test_expected_hosts_block_distribution():
    assert channel.expected_hosts(("a", "b"), 4, 2) == {0: "a", 1: "a", 2: "b", 3: "b"}
    assert channel.expected_hosts((), 4, 2) == {}


def test_every_rank_reports():
    with Collector(3, port=0) as col:
        col.submit({"verdict": "passed"}, hostname="h0", node_rank=0, local_rank=0)
        for r in (1, 2):
            with Reporter("127.0.0.1", col.port, r, deadline=time.monotonic() + 5, secret=col.secret,
                          hostname=f"h{r}", node_rank=r, local_rank=0) as rep:
                rep.phase("gemm")
                rep.result({"verdict": "passed", "rank": r})
        t0 = time.monotonic()
        assert col.wait(deadline=time.monotonic() + 10)
        assert time.monotonic() - t0 < 5
        entries = col.entries()
    assert [e["rank"] for e in entries] == [0, 1, 2]
    assert all(e["error"] is None and e["report"]["verdict"] == "passed" for e in entries)
    assert [e["hostname"] for e in entries] == ["h0", "h1", "h2"]


def test_a_rank_that_dies_is_named_without_waiting_for_the_deadline():
    with Collector(2, port=0) as col:
        col.submit({"verdict": "passed"}, hostname="h0")
        rep = Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret, hostname="h1")
        rep.phase("allreduce")
        rep.close()  # what the kernel does when the process dies
        t0 = time.monotonic()
        assert not col.wait(deadline=time.monotonic() + 30)
        assert time.monotonic() - t0 < 5
        e = col.entries()[1]
    assert e["report"] is None and e["hostname"] == "h1"
    assert e["error"].startswith("connection lost during allreduce")


def test_a_hung_rank_is_named_at_the_deadline():
    with Collector(2, port=0) as col:
        col.submit({"verdict": "passed"})
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret, hostname="h1") as rep:
            rep.phase("allreduce")
            t0 = time.monotonic()
            assert not col.wait(deadline=time.monotonic() + 1.5)
            waited = time.monotonic() - t0
            e = col.entries()[1]
    assert 1.4 <= waited < 5
    assert e["error"].startswith("no result after 1 s in allreduce") or e["error"].startswith("no result after 2 s")


def test_a_rank_that_never_joins_ends_the_wait_at_the_join_deadline():
    with Collector(3, port=0) as col:
        col.submit({"verdict": "passed"})
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret) as rep:
            rep.result({"verdict": "passed"})
            t0 = time.monotonic()
            assert not col.wait(deadline=time.monotonic() + 60, join_deadline=time.monotonic() + 1)
            assert time.monotonic() - t0 < 5
        entries = col.entries(expected_hosts={2: "gpu09"})
    assert entries[2]["error"].startswith("never joined") and entries[2]["hostname"] == "gpu09"
    assert entries[1]["error"] is None


def test_reporter_gives_up_at_its_deadline():
    t0 = time.monotonic()
    with pytest.raises(ReporterError) as err:
        Reporter("127.0.0.1", 1, 1, deadline=time.monotonic() + 0.5, secret=b"s")
    assert time.monotonic() - t0 < 5 and "127.0.0.1:1" in str(err.value)


def test_reporter_waits_for_a_collector_that_starts_later():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = {}

    def late():
        time.sleep(0.7)
        box["col"] = Collector(2, port=port, secret=b"k" * 32)
    t = threading.Thread(target=late)
    t.start()
    with Reporter("127.0.0.1", port, 1, deadline=time.monotonic() + 10, secret=b"k" * 32) as rep:
        rep.result({"verdict": "passed"})
    t.join()
    col = box["col"]
    try:
        col.submit({"verdict": "passed"})
        assert col.wait(deadline=time.monotonic() + 5)
    finally:
        col.close()


def test_garbage_and_unknown_ranks_are_ignored():
    import socket

    with Collector(1, port=0) as col:
        with socket.create_connection(("127.0.0.1", col.port)) as s:
            s.sendall(b"not json\n[1,2]\n" + json.dumps({"rank": 7, "kind": "result"}).encode() + b"\n")
        col.submit({"verdict": "passed"})
        assert col.wait(deadline=time.monotonic() + 5)
        assert len(col.entries()) == 1


WORKER = textwrap.dedent("""
    import os, sys, time
    from envcheck.validate.distributed.channel import Reporter
    rank, port, mode, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], bytes.fromhex(sys.argv[4])
    rep = Reporter("127.0.0.1", port, rank, deadline=time.monotonic() + 10, secret=secret, hostname=f"h{rank}",
                   node_rank=rank, local_rank=0)
    rep.phase("allreduce")
    if mode == "die":
        os.kill(os.getpid(), 9)
    if mode == "hang":
        time.sleep(600)
    rep.result({"verdict": "passed", "rank": rank})
""")


def test_real_processes_one_killed_one_hung(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with Collector(4, port=0) as col:
        col.submit({"verdict": "passed"}, hostname="h0")
        procs = [subprocess.Popen([sys.executable, str(script), str(r), str(col.port), mode, col.secret.hex()],
                                  start_new_session=True)
                 for r, mode in ((1, "ok"), (2, "die"), (3, "hang"))]
        try:
            t0 = time.monotonic()
            assert not col.wait(deadline=time.monotonic() + 4)
            assert time.monotonic() - t0 < 10
            errors = {e["rank"]: e["error"] for e in col.entries()}
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
    assert errors[0] is None and errors[1] is None
    assert errors[2].startswith("connection lost during allreduce")
    assert "in allreduce (hung?)" in errors[3]
    assert all(p.poll() is not None for p in procs)


def test_a_rank_that_reports_its_own_error():
    with Collector(2, port=0) as col:
        col.submit({"verdict": "passed"})
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret) as rep:
            rep.error("RuntimeError: NCCL init failed")
            t0 = time.monotonic()
            assert not col.wait(deadline=time.monotonic() + 30)
            assert time.monotonic() - t0 < 5
            assert col.entries()[1]["error"] == "RuntimeError: NCCL init failed"
