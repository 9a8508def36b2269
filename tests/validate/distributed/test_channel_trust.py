"""Issue 10, class 8: the cluster result channel accepts reports only from ranks of the job.

Each test is one attack of the issue, with real sockets on 127.0.0.1 against the real
:class:`Collector` (the code rank 0 runs): strangers without the job's secret, a second claim
of a rank, a claim of rank 0, malformed results, oversized lines, idle connections by the
thousand, and node names that scontrol would expand.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from envcheck.cluster import slurm
from envcheck.cluster.exitmodes import Outcome
from envcheck.validate import output
from envcheck.validate.distributed import aggregate, channel
from envcheck.validate.distributed.channel import Collector, Reporter, ReporterError

GOOD = {"verdict": "passed", "checks": [{"name": "gemm", "status": "pass", "metrics": {}, "details": {}}],
        "figures": [{"check": "gemm", "metric": "fp32", "device": "cpu", "unit": "TFLOPS", "value": 1.0}]}


def _line(sock: socket.socket, timeout: float = 5.0) -> dict:
    sock.settimeout(timeout)
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the collector closed ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionError, OSError) as exc:
        return not isinstance(exc, socket.timeout)


def _report(col: Collector, world: int) -> dict:
    return aggregate.cluster_report(col.entries(), world)


def test_a_stranger_cannot_make_a_rank_that_never_ran_certified():
    with Collector(2, port=0) as col:
        col.submit(GOOD, hostname="h0", node_rank=0, local_rank=0)
        # the old protocol: a bare result line, no handshake
        with socket.create_connection(("127.0.0.1", col.port)) as s:
            s.sendall(json.dumps({"rank": 1, "kind": "result", "result": GOOD, "hostname": "h1"}).encode() + b"\n")
            assert _closed(s)
        # a forged hello: the stranger answers the challenge without the job's secret
        with socket.create_connection(("127.0.0.1", col.port)) as s:
            nonce = bytes.fromhex(_line(s)["nonce"])
            forged = channel.proof(b"guessed" * 4, nonce, 1)
            s.sendall(json.dumps({"rank": 1, "kind": "hello", "hmac": forged}).encode() + b"\n"
                      + json.dumps({"rank": 1, "kind": "result", "result": GOOD}).encode() + b"\n")
            assert _closed(s)
        assert not col.wait(deadline=time.monotonic() + 0.5, join_deadline=time.monotonic() + 0.3)
        entries = col.entries()
        stats = col.summary()
    assert entries[1]["report"] is None and entries[1]["error"].startswith("never joined")
    assert aggregate.cluster_report(entries, 2)["verdict"] == "failed"
    assert stats["authenticated"] == 0 and stats["closed_unauthenticated"] == 2


def test_rank_zeros_own_result_cannot_be_replaced():
    with Collector(2, port=0) as col:
        col.submit(GOOD, hostname="h0", node_rank=0, local_rank=0)
        # even with the job's secret, rank 0 is never accepted from the network
        with pytest.raises(ReporterError):
            Reporter("127.0.0.1", col.port, 0, deadline=time.monotonic() + 1, secret=col.secret)
        # rank 1 (authenticated) writes "rank": 0 into its messages: they stay rank 1's
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret,
                      hostname="h1") as rep:
            rep._sock.sendall(json.dumps({"rank": 0, "kind": "result",
                                          "result": {**GOOD, "verdict": "failed"}}).encode() + b"\n")
            assert col.wait(deadline=time.monotonic() + 5)
        # a second result of rank 0 in-process is ignored too: a result is accepted once
        col.record({"kind": "result", "result": {**GOOD, "verdict": "failed"}})
        entries = col.entries()
    assert entries[0]["report"]["verdict"] == "passed" and entries[0]["hostname"] == "h0"
    assert entries[1]["report"]["verdict"] == "failed"  # rank 1's own (odd) claim, as rank 1


def test_a_strangers_hello_then_close_does_not_mark_a_healthy_rank_lost():
    with Collector(2, port=0) as col:
        col.submit(GOOD)
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret,
                      hostname="h1") as rep:
            rep.phase("allreduce")
            for hello in ({"rank": 1, "kind": "hello"}, {"rank": 1, "kind": "hello", "hmac": "00" * 32}):
                with socket.create_connection(("127.0.0.1", col.port)) as s:
                    _line(s)
                    s.sendall(json.dumps(hello).encode() + b"\n")
                    assert _closed(s)
            with socket.create_connection(("127.0.0.1", col.port)):
                pass  # connect and close at once
            time.sleep(0.3)
            assert not col.entries()[1]["error"] or "lost" not in col.entries()[1]["error"]
            assert not col.ranks[1].lost
            rep.result(GOOD)
            assert col.wait(deadline=time.monotonic() + 5)
        assert col.entries()[1]["error"] is None


def test_a_second_claim_of_a_rank_is_refused_and_noted():
    with Collector(3, port=0) as col:
        col.submit(GOOD)
        first = Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret, hostname="h1")
        with pytest.raises(ReporterError, match="refused rank 1"):
            Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret, hostname="evil")
        with Reporter("127.0.0.1", col.port, 2, deadline=time.monotonic() + 5, secret=col.secret) as two:
            two.result(GOOD)
        first.result(GOOD)
        assert col.wait(deadline=time.monotonic() + 5)
        first.close()
        summary = col.summary()
        entries = col.entries()
    assert summary["refused"] == 1 and any("second connection claimed rank 1" in n for n in summary["notes"])
    assert entries[1]["hostname"] == "h1" and entries[1]["error"] is None


@pytest.mark.parametrize("bad", [
    "not a report", [1, 2], {"checks": []}, {"verdict": "passed", "checks": "nope"},
    {"verdict": "passed", "checks": [{"name": "gemm", "status": "pass", "error": "str"}]},
    {"verdict": "passed", "checks": [{"name": "allreduce", "status": "fail", "details": []}]},
    {"verdict": "passed", "figures": [{"check": "gemm", "metric": "x", "unit": "u", "value": "1.0"}]},
    {"verdict": "passed", "figures": "many"}, {"verdict": "passed", "reasons": [1]},
    {"verdict": "passed", "node_summary": [1]}, {"verdict": 1},
])
def test_a_malformed_result_is_that_ranks_failure_and_rank_0_still_reports(bad):
    with Collector(2, port=0) as col:
        col.submit(GOOD, hostname="h0")
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret,
                      hostname="h1", node_rank=1) as rep:
            rep.result(bad)
            assert not col.wait(deadline=time.monotonic() + 5)  # settled at once: rank 1 failed
        entries = col.entries()
    assert entries[1]["report"] is None and entries[1]["error"].startswith("sent a malformed report")
    rep = aggregate.cluster_report(entries, 2)
    assert rep["verdict"] == "failed" and entries[0]["report"] == GOOD


def test_a_deeply_nested_result_is_malformed_not_a_crash():
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000  # json.loads recurses: RecursionError
    with Collector(2, port=0) as col:
        col.submit(GOOD)
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret) as rep:
            rep._sock.sendall(b'{"kind": "result", "result": {"verdict": "passed", "x": '
                              + deep + b"}}\n")
            assert not col.wait(deadline=time.monotonic() + 5)
        assert col.entries()[1]["error"].startswith("sent a malformed message")


def _send_flood(sock: socket.socket, total: int, box: dict) -> None:
    chunk = b"x" * (1 << 20)
    sent = 0
    try:
        while sent < total:
            sent += sock.send(chunk)
    except OSError as exc:
        box["error"] = exc
    box["sent"] = sent


def test_a_64_mib_line_is_cut_off_at_the_cap():
    """The connection is closed once the line passes MAX_LINE_BYTES: the sender cannot push the
    rest (an authenticated rank's own failure; a stranger's is cut at HELLO_MAX_BYTES)."""
    total = 64 << 20
    with Collector(3, port=0) as col:
        col.submit(GOOD)
        rep = Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret)
        box: dict = {}
        t = threading.Thread(target=_send_flood, args=(rep._sock, total, box))
        t.start()
        t.join(timeout=60)
        assert not t.is_alive()
        assert "error" in box and box["sent"] < total  # reset by the collector before the end
        assert box["sent"] < channel.MAX_LINE_BYTES + 16 * (1 << 20)  # the cap plus socket buffers
        err = col.entries()[1]["error"]
        assert "line over" in err
        rep.close()
        # a stranger: closed after the hello cap, nothing recorded
        with socket.create_connection(("127.0.0.1", col.port)) as s:
            box2: dict = {}
            _send_flood(s, total, box2)
            assert box2["sent"] < 16 * (1 << 20)
        assert col.entries()[2]["error"].startswith("never joined")


def test_1500_idle_connections_make_no_threads_and_are_closed_after_the_auth_timeout(monkeypatch):
    monkeypatch.setattr(channel, "AUTH_TIMEOUT_S", 1.0)
    with Collector(2, port=0) as col:
        col.submit(GOOD)
        before = threading.active_count()
        socks = []
        try:
            for _ in range(1500):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", col.port))
                socks.append(s)
            time.sleep(0.5)
            assert threading.active_count() == before
            deadline = time.monotonic() + 30
            while col.summary()["closed_unauthenticated"] < 1500 and time.monotonic() < deadline:
                assert threading.active_count() == before
                time.sleep(0.2)
            assert col.summary()["closed_unauthenticated"] == 1500
            # a real rank still gets in afterwards
            with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret) as rep:
                rep.result(GOOD)
            assert col.wait(deadline=time.monotonic() + 5)
        finally:
            for s in socks:
                s.close()


def test_a_peer_hostname_that_scontrol_would_expand_never_reaches_it():
    with Collector(3, port=0) as col:
        col.submit(GOOD, hostname="gpu01", node_rank=0, local_rank=0)
        for r, host in ((1, "node[1-100]"), (2, "a,b")):
            with Reporter("127.0.0.1", col.port, r, deadline=time.monotonic() + 5, secret=col.secret,
                          hostname=host, node_rank=r, local_rank=0) as rep:
                rep.result({**GOOD, "verdict": "failed"})
        assert col.wait(deadline=time.monotonic() + 5)
        entries = col.entries()
        notes = col.summary()["notes"]
    assert [e["hostname"] for e in entries] == ["gpu01", None, None]
    assert sum("invalid host name" in n for n in notes) == 2
    report = aggregate.cluster_report(entries, 3)
    calls: list[list[str]] = []

    def fake_scontrol(argv, timeout):
        calls.append(list(argv))
        if argv[1] == "show":
            return 0, f"NodeName={argv[3]} State=IDLE Reason=(null)", ""
        return 0, "", ""

    output.drain_nodes(report, apply=lambda outcome, node: slurm.apply(outcome, node=node, runner=fake_scontrol))
    assert all(a[3] if a[1] == "show" else a[2] for a in calls)
    touched = {a[3] if a[1] == "show" else a[2].split("=", 1)[1] for a in calls}
    assert touched <= {"gpu01"}


@pytest.mark.parametrize("name", ["node[1-100]", "a,b", "a b", "-x", "", "n\x1b]0;t\x07", "a..b", "x" * 300])
def test_drain_refuses_a_node_name_that_is_not_one_node(name):
    calls = []
    res = slurm.apply(Outcome("fail", True, "validate failed", ()), node=name,
                      runner=lambda argv, timeout: calls.append(argv) or (0, "", ""))
    if name == "":
        return  # empty: falls back to this host's own name (SLURMD_NODENAME / hostname)
    assert calls == [] and not res.ok and "refusing node name" in res.message
    assert "\x1b" not in res.message


def test_valid_node_names_pass():
    assert all(slurm.valid_node_name(n) for n in ("gpu01", "node-7.cluster", "a_b", "n1"))


@pytest.mark.parametrize("name", ["validate_cpu", "validate_8xh100", "validate_watch_2xh100"])
def test_real_validate_reports_pass_the_shape_check(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "fixtures" / "reports" / f"{name}.json"
    assert channel.check_report(json.loads(path.read_text())) is None


def test_nan_in_a_result_is_malformed():
    with Collector(2, port=0) as col:
        col.submit(GOOD)
        with Reporter("127.0.0.1", col.port, 1, deadline=time.monotonic() + 5, secret=col.secret) as rep:
            rep._sock.sendall(b'{"kind": "result", "result": {"verdict": "passed", "figures": '
                              b'[{"check": "gemm", "metric": "x", "unit": "u", "value": NaN}]}}\n')
            assert not col.wait(deadline=time.monotonic() + 5)
        assert col.entries()[1]["error"].startswith("sent a malformed message")


def test_the_collector_raises_its_open_files_soft_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        with Collector(2, port=0) as col:
            got = col.summary()["nofile"]
        assert got["soft_before"] == low and got["soft"] >= low
        if hard != resource.RLIM_INFINITY:
            assert got["soft"] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]), hard))


def test_the_collector_listens_on_the_address_the_job_uses():
    assert channel.listen_address("127.0.0.1") == ("127.0.0.1", None)
    assert channel.listen_address("localhost")[0] in ("127.0.0.1", "::1")
    bind, note = channel.listen_address("no-such-host.invalid")
    assert bind == "" and "all interfaces" in note
    # a remote MASTER_ADDR: the local address this host routes to it from, never all interfaces
    src = channel._route_source("203.0.113.7")
    if src:
        assert channel.listen_address("203.0.113.7") == (src, None)
        # rank 0 on MASTER_ADDR's own host: that address itself
        assert channel.listen_address(src) == (src, None)
    with Collector(2, port=0, host="127.0.0.1") as col:
        assert col.host == "127.0.0.1" and col.port > 0
