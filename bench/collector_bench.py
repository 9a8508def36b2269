"""Benchmark: N realistic rank results sent at once to rank 0's real result collector.

The collector is :class:`envcheck.validate.distributed.channel.Collector` - the object rank 0 of
a cluster run serves, in this process, on 127.0.0.1, with a per-job secret: every sender answers
its challenge (HMAC) before its result is accepted. Rank 0 submits its own result in-process; the
other N-1 ranks are sent by ``--senders`` processes, each driving its share of the ranks over
non-blocking sockets (so the sending side is not the bottleneck): connect, read the challenge,
send the hello, read the welcome, send the ~9.8 KB result line, close. A sender reconnects a
connection that fails before its result is accepted (as a rank's Reporter does).

The result is the real shape: tests/fixtures/reports/validate_cpu.json (a validate report of a
CPU run), with this rank's options and a node summary, about 9.8 KB of JSON per rank.

Targets (issue 10, class 11): 8192 ranks collected in <= 10 s on the 2-core CI host; 2048 ranks
with this process's open-files soft limit at 1024 beforehand, none lost (``--nofile 1024``: the
collector raises the limit toward the hard limit; add ``--no-raise`` to keep it at 1024 and see
the accept loop survive EMFILE while the ranks wait in the listen backlog).

    python3 bench/collector_bench.py [--ranks 8192] [--senders 4] [--nofile 1024 [--no-raise]] [--json out]
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envcheck.validate.distributed import channel  # noqa: E402

REPORT = ROOT / "tests" / "fixtures" / "reports" / "validate_cpu.json"


def rank_report(rank: int, world: int) -> dict:
    rep = json.loads(REPORT.read_text())
    rep["world_size"] = world
    node, local = rank // 8, rank % 8
    rep["options"] = {**rep.get("options", {}), "distributed": {
        "launcher": "srun", "rank": rank, "world_size": world, "local_rank": local, "local_world_size": 8,
        "node_rank": node, "num_nodes": -(-world // 8), "master_addr": "node-0000", "master_port": 24242,
        "hosts": [], "job_id": "4242", "hostname": f"node-{node:04d}"}}
    rep["node_summary"] = {"driver": "550.90.07", "cuda": "12.4", "torch": "2.13.0", "nccl": "2.21.5",
                           "kernel": "5.15.0-105-generic", "os": "Ubuntu 22.04.4 LTS",
                           "env": {"NCCL_IB_HCA": "mlx5", "NCCL_SOCKET_IFNAME": "ib0"}}
    for f in rep.get("figures") or []:
        if isinstance(f.get("value"), (int, float)):
            f["value"] = round(f["value"] * (1 + (rank % 7) / 1000), 4)
    return rep


# ---- a sender process ------------------------------------------------------------------------


class _Rank:
    __slots__ = ("rank", "sock", "buf", "stage", "out", "retry_at", "line")

    def __init__(self, rank: int, line: bytes):
        self.rank, self.line = rank, line
        self.sock = None
        self.buf = b""
        self.stage = "idle"
        self.out = b""
        self.retry_at = 0.0


def sender(port: int, secret: bytes, ranks: list[int], world: int) -> dict:
    sel = selectors.DefaultSelector()
    todo = [_Rank(r, json.dumps({"rank": r, "kind": "result", "result": rank_report(r, world)}).encode() + b"\n")
            for r in ranks]
    size = sum(len(t.line) for t in todo) / max(1, len(todo))
    print(json.dumps({"ready": len(todo), "bytes_per_result": round(size)}), flush=True)
    sys.stdin.readline()  # go
    retries = 0
    left = len(todo)

    def connect(t: _Rank) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        t.sock, t.buf, t.out, t.stage = s, b"", b"", "connecting"
        sel.register(s, selectors.EVENT_WRITE, t)

    def fail(t: _Rank) -> None:
        nonlocal retries
        retries += 1
        sel.unregister(t.sock)
        t.sock.close()
        t.stage, t.retry_at = "idle", time.monotonic() + 0.05

    for t in todo:
        connect(t)
    while left:
        now = time.monotonic()
        for t in todo:
            if t.stage == "idle" and t.retry_at <= now:
                connect(t)
        for key, mask in sel.select(timeout=0.05):
            t = key.data
            try:
                if t.stage == "connecting":
                    if t.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        fail(t)
                        continue
                    t.stage = "challenge"
                    sel.modify(t.sock, selectors.EVENT_READ, t)
                    continue
                if mask & selectors.EVENT_WRITE and t.out:
                    n = t.sock.send(t.out)
                    t.out = t.out[n:]
                    if not t.out:
                        sel.unregister(t.sock)
                        t.sock.close()
                        t.stage = "done"
                        left -= 1
                    continue
                data = t.sock.recv(4096)
                if not data:
                    fail(t)
                    continue
                t.buf += data
                if b"\n" not in t.buf:
                    continue
                msg, t.buf = json.loads(t.buf.split(b"\n", 1)[0]), t.buf.split(b"\n", 1)[1]
                if t.stage == "challenge":
                    mac = channel.proof(secret, bytes.fromhex(msg["nonce"]), t.rank)
                    t.sock.send(json.dumps({"rank": t.rank, "kind": "hello", "hmac": mac,
                                            "hostname": f"node-{t.rank // 8:04d}", "node_rank": t.rank // 8,
                                            "local_rank": t.rank % 8}).encode() + b"\n")
                    t.stage = "welcome"
                elif t.stage == "welcome":
                    if msg.get("kind") != "welcome":
                        raise RuntimeError(f"rank {t.rank} not welcome: {msg}")
                    t.out, t.stage = t.line, "sending"
                    sel.modify(t.sock, selectors.EVENT_WRITE, t)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                fail(t)
    return {"sent": len(todo), "retries": retries}


# ---- the collector (this process) ----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=8192, help="world size (rank 0 is this process)")
    ap.add_argument("--senders", type=int, default=4, help="sender processes")
    ap.add_argument("--nofile", type=int, default=None, help="set this process's RLIMIT_NOFILE soft limit first")
    ap.add_argument("--no-raise", action="store_true", help="keep that limit (the collector does not raise it)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--sender", nargs=4, help=argparse.SUPPRESS)  # port secret-hex world ranks-json
    args = ap.parse_args(argv)
    if args.sender:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # only the collector's limit is under test
        port, secret, world, ranks = args.sender
        out = sender(int(port), bytes.fromhex(secret), json.loads(ranks), int(world))
        print(json.dumps(out), flush=True)
        return 0

    world = args.ranks
    soft0, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    if args.no_raise:
        channel.raise_nofile = lambda: {"soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "raised": False}
    col = channel.Collector(world, port=0, host="127.0.0.1")
    col.submit(rank_report(0, world), hostname="node-0000", node_rank=0, local_rank=0)
    others = list(range(1, world))
    shares = [others[i::args.senders] for i in range(args.senders)]
    procs = [subprocess.Popen([sys.executable, __file__, "--sender", str(col.port), col.secret.hex(), str(world),
                               json.dumps(share)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for share in shares if share]
    ready = [json.loads(p.stdout.readline()) for p in procs]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    ok = col.wait(deadline=t0 + args.timeout)
    seconds = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    done = [json.loads(p.stdout.readline() or "{}") for p in procs]
    for p in procs:
        p.wait(timeout=30)
    entries = col.entries()
    summary = col.summary()
    col.close()
    lost = [e["rank"] for e in entries if e["report"] is None]
    figures = {
        "ranks": world, "senders": len(procs), "seconds": round(seconds, 3), "all_collected": ok,
        "lost_ranks": len(lost), "bytes_per_result": round(sum(r["bytes_per_result"] for r in ready) / len(ready)),
        "collector_cpu_user_s": round(cpu1.ru_utime - cpu0.ru_utime, 3),
        "collector_cpu_sys_s": round(cpu1.ru_stime - cpu0.ru_stime, 3),
        "max_rss_mib": round(cpu1.ru_maxrss / 1024, 1),
        "nofile_soft_before": args.nofile or soft0, "nofile": summary["nofile"],
        "accepted": summary["accepted"], "accept_errors": summary["accept_errors"],
        "sender_retries": sum(d.get("retries", 0) for d in done),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if ok and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
