"""The torch-free TCPStore client against torch's real TCPStore server (both backends).

torch runs in a child (this test process stays torch-free): it hosts
``TCPStore(is_master=True)``, prints its port, waits for the key this client sets, reads it
back with torch's own client API and sets an answer that this client reads.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time

import pytest

from envcheck.cluster import store

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

SERVER = textwrap.dedent("""
    import sys, datetime
    import torch.distributed as dist
    libuv = sys.argv[1] == "1"
    s = dist.TCPStore("127.0.0.1", 0, None, True, datetime.timedelta(seconds=30), wait_for_workers=False,
                      use_libuv=libuv)
    print(s.port, s.libuvBackend, flush=True)
    s.wait(["from-envcheck"])
    s.set("from-torch", s.get("from-envcheck") + b"!")
    s.wait(["done"])
""")


@pytest.mark.parametrize("libuv", [True, False], ids=["libuv", "classic"])
def test_set_check_get_wait_against_torchs_server(libuv):
    p = subprocess.Popen([sys.executable, "-c", SERVER, "1" if libuv else "0"], stdout=subprocess.PIPE, text=True)
    try:
        port, backend = p.stdout.readline().split()
        assert backend == str(libuv)
        with store.connect("127.0.0.1", int(port), deadline=time.monotonic() + 10) as c:
            assert not c.check(["from-torch"])
            c.set("from-envcheck", json.dumps({"port": 1}).encode())
            assert c.wait("from-torch", deadline=time.monotonic() + 20) == b'{"port": 1}!'
            assert c.check(["from-envcheck", "from-torch"])
            with pytest.raises(store.StoreError, match="did not appear"):
                c.wait("never", deadline=time.monotonic() + 0.3)
            c.set("done", b"1")
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_connect_gives_up_at_its_deadline():
    t0 = time.monotonic()
    with pytest.raises(store.StoreError, match="cannot reach"):
        store.connect("127.0.0.1", 1, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 5


def test_host_main_hosts_a_store_the_client_can_use():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "envcheck.cluster.store", "127.0.0.1", str(port)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(p.stdout.readline()) == {"event": "ready", "port": port}
        with store.connect("127.0.0.1", port, deadline=time.monotonic() + 10) as c:
            c.set("k", b"v")
            assert c.get("k") == b"v"
    finally:
        p.kill()
        p.wait()


LOOPBACK = textwrap.dedent("""
    import torch.distributed as dist
    from envcheck.validate.checks.allreduce import loopback_store
    s = loopback_store(dist)
    port = "%04X" % s.port
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    print([r[1] for r in rows if r[1].endswith(":" + port) and r[3] == "0A"])
    if open("/proc/net/if_inet6").read().strip():
        rows6 = [line.split() for line in open("/proc/net/tcp6").read().splitlines()[1:]]
        print([r[1] for r in rows6 if r[1].endswith(":" + port) and r[3] == "0A"])
    else:
        print([])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_single_node_allreduce_store_listens_on_loopback_only():
    out = subprocess.run([sys.executable, "-c", LOOPBACK], capture_output=True, text=True, timeout=120)
    v4, v6 = out.stdout.splitlines()[-2:]
    assert eval(v4) and all(a.startswith("0100007F:") for a in eval(v4)), out  # noqa: S307 - our own print
    assert eval(v6) == [], out  # noqa: S307
