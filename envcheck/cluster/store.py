"""A torch-free client of torch.distributed's TCPStore (the job's rendezvous store).

The distributed mode's supervising process does not import torch (a rank whose torch is broken
must still report its failure), but it needs the job's store to exchange the result channel's
port and per-job secret (:mod:`envcheck.validate.distributed.channel`). This speaks the subset
of c10d's TCPStore wire protocol it needs, as torch's own client does (pytorch
``torch/csrc/distributed/c10d/TCPStoreBackend.hpp`` ``QueryType``/``CheckResponseType``/``validationMagicNumber``;
``TCPStore.hpp`` ``keyPrefix_``; ``test/distributed/test_store.py`` ``TestClientProtocol``, which
checks the VALIDATE bytes ``00 ce f7 85 3c`` a torch client sends first):

* a connection starts with ``VALIDATE`` (query byte 0) and the magic ``0x3C85F7CE`` as a
  native uint32 (no reply);
* ``SET`` (1): key, value; no reply. ``GET`` (3): key; reply: value. ``CHECK`` (5): a count and
  the keys; reply: one byte, 0 READY / 1 NOT_READY;
* a key or value is a native uint64 length and the bytes; torch's client prefixes every key with
  ``/`` (``TCPStore::keyPrefix_``), so this one does too and both see the same keys. (torch's
  client also sends a PING after VALIDATE; the server does not require it.)

Tested against ``torch.distributed.TCPStore(is_master=True)`` with both server backends
(``use_libuv`` True and False) in tests/cluster/test_store.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

MAGIC = 0x3C85F7CE
VALIDATE, SET, GET, CHECK = 0, 1, 3, 5
READY, NOT_READY = 0, 1
KEY_PREFIX = "/"  # torch's TCPStore client prepends it to every key
MAX_VALUE_BYTES = 1 << 20  # what this client accepts back: the channel's record is ~200 bytes


class StoreError(OSError):
    """The store could not be reached or answered out of protocol."""


class StoreClient:
    """One connection to a TCPStore server at ``host:port``."""

    def __init__(self, host: str, port: int, timeout: float = 10.0):
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise StoreError(f"cannot reach the job's store at {host}:{port}: {exc.strerror or exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send(struct.pack("=BI", VALIDATE, MAGIC))

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise StoreError(f"the job's store closed the connection: {exc.strerror or exc}") from None

    def _recv(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            try:
                chunk = self._sock.recv(n - len(out))
            except OSError as exc:
                raise StoreError(f"the job's store did not answer: {exc.strerror or exc}") from None
            if not chunk:
                raise StoreError("the job's store closed the connection")
            out += chunk
        return bytes(out)

    @staticmethod
    def _blob(data: bytes) -> bytes:
        return struct.pack("=Q", len(data)) + data

    @staticmethod
    def _key(key: str) -> bytes:
        return StoreClient._blob((KEY_PREFIX + key).encode("utf-8"))

    def set(self, key: str, value: bytes) -> None:
        self._send(struct.pack("=B", SET) + self._key(key) + self._blob(bytes(value)))

    def check(self, keys: list[str]) -> bool:
        """True when every key is set (does not block)."""
        self._send(struct.pack("=BQ", CHECK, len(keys)) + b"".join(self._key(k) for k in keys))
        (answer,) = struct.unpack("=B", self._recv(1))
        if answer not in (READY, NOT_READY):
            raise StoreError(f"the job's store answered CHECK with {answer}")
        return answer == READY

    def get(self, key: str) -> bytes:
        """The value of a key that is set (call :meth:`check` or :meth:`wait` first: the server
        answers a GET of a missing key by closing the connection)."""
        self._send(struct.pack("=B", GET) + self._key(key))
        (size,) = struct.unpack("=Q", self._recv(8))
        if size > MAX_VALUE_BYTES:
            raise StoreError(f"the job's store sent a {size}-byte value for {key!r}")
        return self._recv(size)

    def wait(self, key: str, deadline: float, clock=time.monotonic, interval: float = 0.1) -> bytes:
        """The key's value once it is set, polling with CHECK until ``deadline`` (monotonic);
        :class:`StoreError` at the deadline. Polling, not WAIT: a WAIT cannot be bounded without
        CANCEL_WAIT, and one CHECK every ``interval`` costs nothing."""
        while not self.check([key]):
            if clock() >= deadline:
                raise StoreError(f"{key!r} did not appear in the job's store in time")
            time.sleep(interval)
        return self.get(key)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(host: str, port: int, deadline: float, clock=time.monotonic) -> StoreClient:
    """A client, retrying until ``deadline`` (the store may start after this rank)."""
    while True:
        try:
            return StoreClient(host, port, timeout=max(1.0, min(10.0, deadline - clock())))
        except StoreError:
            if clock() >= deadline:
                raise
            time.sleep(0.2)


# ---- hosting the store when no launcher does ------------------------------------------------


def host_main(argv: list[str]) -> int:
    """``python -m envcheck.cluster.store HOST PORT``: host the job's TCPStore (torch's own server,
    so the all-reduce's ``env://`` rendezvous joins it as a client) until the parent goes away.
    Prints ``{"event": "ready", "port"}`` or ``{"event": "error", "error"}`` on stdout."""
    import json
    import os
    import sys

    host, port = argv[0], int(argv[1])
    ppid = os.getppid()
    try:
        from datetime import timedelta

        import torch.distributed as dist

        store = dist.TCPStore(host, port, None, True, timedelta(seconds=60), wait_for_workers=False)
    except Exception as exc:  # noqa: BLE001 - reported to the supervising rank process
        text = str(exc).strip().splitlines()
        print(json.dumps({"event": "error", "error": f"{type(exc).__name__}: {text[0][:300] if text else ''}"}),
              flush=True)
        return 1
    print(json.dumps({"event": "ready", "port": store.port}), flush=True)
    sys.stdout.close()
    while os.getppid() == ppid:  # the parent also kills this child's tree when the run ends
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    import sys

    from envcheck.proc import exit_now

    exit_now(host_main(sys.argv[1:]))
