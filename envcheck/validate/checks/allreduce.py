"""allreduce: exact sums across every rank, and algbw/busbw per message size.

One process per device (NCCL) or ``--procs`` processes on the CPU (gloo), started by
:func:`launch` around a TCPStore this process serves. Each rank puts rank-identifiable
values in a float32 tensor: element i of rank r is ``1 + (r + i) % K`` with ``n * K < 2^24``
(:func:`pattern_modulus`), so every partial sum, in any reduction order, is an integer below
2^24 and exact in float32 at any world size; the sum :func:`expected_sum` depends only on
``i % K``, and a missing or doubled rank changes every element by at least 1. (The former
``(r + 1) * (i % M + 1)`` summed to n(n+1)/2, past 2^24 from n = 5793: issue 10, class 11.) Sizes go from 1 KiB by x4 up to the cap (1 GiB on
GPUs, 64 MiB on CPUs, both lowered to a quarter of free memory). Per size: one checked
collective (every element compared), then ``warmup`` + ``iters`` timed ones on a zeroed
buffer (verified still zero). Bandwidths follow nccl-tests (doc/PERFORMANCE.md,
src/all_reduce.cu AllReduceGetBw): algbw = bytes / time (GB = 1e9), busbw = algbw x
2(n-1)/n. The time of a size is the slowest rank's (the collective ends when its last rank
does); nccl-tests' default (-a 1) averages ranks instead, equal on a healthy node.

Hangs: every rank marks its progress in the store; when no rank moves for ``timeout``
seconds, the run fails naming the ranks that are behind, and every rank process is killed
(process groups, then any descendants via psutil; ranks also die with their parent through
PR_SET_PDEATHSIG on Linux). :func:`sweep` is the per-rank body and runs in any initialised
process group, e.g. one made by torchrun (cluster mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from datetime import timedelta
from typing import Any, Callable

from envcheck.validate import faults, procs
from envcheck.validate.checks import CheckContext
from envcheck.validate.config import (
    CPU_ALLREDUCE_MAX_BYTES,
    GPU_ALLREDUCE_MAX_BYTES,
    human_bytes,
)
from envcheck.validate.config import (
    sizes as size_ladder,
)
from envcheck.validate.results import FAIL, PASS, CheckResult

_FLOAT32_EXACT = 1 << 24  # integers up to 2^24 are exact in float32
_VERIFY_CHUNK = 1 << 24  # elements per verification chunk (64 MiB of float32)


def nccl_version_text(version: Any) -> str:
    """torch.cuda.nccl.version() is a tuple (2, 26, 2) in torch 2.x, an int (2708) in old ones."""
    if isinstance(version, int):
        major, rest = divmod(version, 10000) if version >= 10000 else divmod(version, 1000)
        minor, patch = divmod(rest, 100)
        return f"{major}.{minor}.{patch}"
    return ".".join(str(v) for v in version)


def busbw_factor(n: int) -> float:
    """nccl-tests' all-reduce bus factor 2(n-1)/n (0 for a single rank)."""
    return 2.0 * (n - 1) / n if n > 0 else 0.0


def pattern_modulus(n: int) -> int:
    """K of the pattern ``1 + (r + i) % K``: the largest K <= 251 with n * K < 2^24, so no sum of
    the n ranks' values (each at most K) leaves float32's exact integers; 1 from n = 2^23."""
    return max(1, min(251, (_FLOAT32_EXACT - 1) // max(1, n)))


def pattern_value(rank: int, i: int, k: int) -> int:
    """Element ``i`` of rank ``rank``'s checked tensor (pure)."""
    return 1 + (rank + i) % k


def expected_sum(n: int, i, k: int):
    """Sum over ranks 0..n-1 of ``1 + (r + i) % K`` (pure; ``i`` an int or an int64 tensor).

    The n ranks run through q = n // K whole cycles of 0..K-1 (q * K(K-1)/2) and then ``rem``
    more values starting at a = i % K, which wrap past K-1 at most once."""
    q, rem = divmod(n, k)
    a = i % k
    base = n + q * k * (k - 1) // 2 + rem * (rem - 1) // 2
    over = a + rem - k
    over = over.clamp(min=0) if hasattr(over, "clamp") else max(0, over)
    return base + rem * a - k * over


# --------------------------------------------------------------------------- per rank


def _fill(t, rank: int, modulus: int) -> None:
    """This rank's pattern ``1 + (rank + i) % K`` (:func:`pattern_value`)."""
    import torch

    for s in range(0, t.numel(), _VERIFY_CHUNK):
        e = min(t.numel(), s + _VERIFY_CHUNK)
        ar = torch.arange(rank + s, rank + e, dtype=torch.int64, device=t.device)
        t[s:e].copy_(ar.remainder_(modulus).add_(1))


def _count_wrong(t, modulus: int, n: int) -> tuple[int, int | None]:
    """(number of wrong elements, index of the first) against :func:`expected_sum`."""
    import torch

    wrong, first = 0, None
    for s in range(0, t.numel(), _VERIFY_CHUNK):
        e = min(t.numel(), s + _VERIFY_CHUNK)
        ar = torch.arange(s, e, dtype=torch.int64, device=t.device)
        expected = expected_sum(n, ar, modulus).to(torch.float32)
        bad = t[s:e] != expected
        n_bad = int(bad.sum())
        if n_bad and first is None:
            first = s + int(bad.nonzero()[0, 0])
        wrong += n_bad
    return wrong, first


def _barrier(device, group) -> None:
    """All ranks line up before a timed block (a 1-element all-reduce, then a device sync)."""
    import torch
    import torch.distributed as dist

    from envcheck.validate.timing import sync

    sync(device)
    dist.all_reduce(torch.zeros(1, device=device), group=group)
    sync(device)


def _free_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:  # psutil may be missing from a --python target interpreter
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class _Injected:
    """Test-only faults of this rank, decided from ENVCHECK_FAULT (validate/faults.py)."""

    def __init__(self, rank: int, corrupt: bool) -> None:
        self.rank = rank
        self.hang = faults.active("allreduce", "hang")
        self.exit = faults.active("allreduce", "exit")
        wrong = faults.active("allreduce", "wrong")
        self.corrupt = corrupt or (wrong is not None and rank == int(wrong.get("rank", 1)))

    def before(self, op: int) -> None:
        if self.hang is not None and self.rank == int(self.hang.get("rank", 1)) and op == int(self.hang.get("op", 0)):
            while True:  # injected: this rank never enters collective `op`
                time.sleep(3600)
        if self.exit is not None and self.rank == int(self.exit.get("rank", 1)) and op == int(self.exit.get("op", 0)):
            os._exit(int(self.exit.get("code", 3)))


def size_row(size: int, count: int, sec: float, wrong: int, first: int | None, n: int) -> dict[str, Any]:
    """One line of the ladder from the slowest rank's time and the summed wrong count (pure)."""
    algbw = size / sec / 1e9 if sec > 0 else None
    return {
        "bytes": size,
        "count": count,
        "time_us": round(sec * 1e6, 3),
        "algbw_GBps": None if algbw is None else round(algbw, 4),
        "busbw_GBps": None if algbw is None else round(algbw * busbw_factor(n), 4),
        "wrong": int(wrong),
        "first_wrong_index": first if wrong else None,
    }


class _Ladder:
    """One rank's all-reduces over the ladder of sizes, in an initialised process group."""

    def __init__(self, device, group, say, injected: _Injected, warmup: int, iters: int, delay_s: float) -> None:
        import torch.distributed as dist

        self.device, self.group, self.say, self.injected = device, group, say, injected
        self.warmup, self.iters, self.delay_s = warmup, iters, delay_s
        self.rank, self.n = dist.get_rank(group), dist.get_world_size(group)
        self.modulus = pattern_modulus(self.n)
        self.op = 0

    def _collective(self, label: str, body: Callable[[], Any]) -> Any:
        self.injected.before(self.op)
        self.say(f"entering {label}")
        out = body()
        self.say(f"finished {label}")
        self.op += 1
        return out

    def checked(self, t, size: int) -> tuple[int, int | None]:
        """The checked collective: every element compared with its expected sum."""
        import torch.distributed as dist

        from envcheck.validate.timing import sync

        _fill(t, self.rank, self.modulus)
        if self.injected.corrupt:
            t[t.numel() // 2] += 1.0

        def body() -> None:
            dist.all_reduce(t, group=self.group)
            sync(self.device)

        self._collective(f"all_reduce #{self.op} ({human_bytes(size)}, checked)", body)
        return _count_wrong(t, self.modulus, self.n)

    def timed(self, t, size: int) -> float:
        """Seconds per timed collective on this rank; zeros stay zeros, so no refill."""
        import torch.distributed as dist

        from envcheck.validate.timing import sync

        t.zero_()

        def body() -> float:
            for _ in range(self.warmup):
                dist.all_reduce(t, group=self.group)
            _barrier(self.device, self.group)
            t0 = time.perf_counter()
            for _ in range(self.iters):
                if self.delay_s:
                    time.sleep(self.delay_s)
                dist.all_reduce(t, group=self.group)
            sync(self.device)
            return time.perf_counter() - t0

        label = f"all_reduce #{self.op} ({human_bytes(size)}, {self.warmup}+{self.iters} timed)"
        return self._collective(label, body) / max(1, self.iters)

    def size(self, buf, size: int) -> dict[str, Any]:
        """Checked + timed at one size; the row every rank agrees on (MAX time, SUM wrong)."""
        import torch
        import torch.distributed as dist

        count = size // 4
        t = buf[:count]
        wrong, first = self.checked(t, size)
        sec = self.timed(t, size)
        nonzero = int((t != 0).sum())
        worst = torch.tensor([sec, float(wrong + nonzero)], dtype=torch.float64, device=self.device)
        dist.all_reduce(worst[:1], op=dist.ReduceOp.MAX, group=self.group)
        dist.all_reduce(worst[1:], op=dist.ReduceOp.SUM, group=self.group)
        return size_row(size, count, float(worst[0]), int(worst[1]), first, self.n)


def sweep(
    device,
    *,
    max_bytes: int,
    min_bytes: int = 1024,
    factor: int = 4,
    warmup: int = 5,
    iters: int = 20,
    group=None,
    mark: Callable[[str], None] | None = None,
    memory_share: int = 4,
    corrupt: bool = False,
    delay_s: float = 0.0,
) -> dict[str, Any]:
    """Run the checked and timed all-reduce ladder in an initialised process group.

    Every rank of ``group`` must call it with the same arguments; every rank returns the
    same rows (times reduced with MAX, wrong counts with SUM). ``mark(text)`` is called
    before and after each collective (progress for hang detection). The largest size is
    lowered to ``free memory / memory_share`` of the most constrained rank. ``corrupt`` and
    ``delay_s`` are test-only faults a caller decided from ENVCHECK_FAULT (a wrong element in
    this rank's tensor; a sleep before each timed collective of this rank).
    """
    import torch
    import torch.distributed as dist

    device = torch.device(device)
    ladder_ = _Ladder(device, group, mark or (lambda _text: None),
                      _Injected(dist.get_rank(group), corrupt), warmup, iters, delay_s)
    cap = torch.tensor([min(int(max_bytes), _free_bytes(device) // memory_share)], dtype=torch.int64,
                       device=device)
    dist.all_reduce(cap, op=dist.ReduceOp.MIN, group=group)
    ladder = size_ladder(min_bytes, int(cap.item()), factor)
    if not ladder:
        raise MemoryError(f"not even {min_bytes} bytes free for the all-reduce buffer")
    buf = torch.empty(ladder[-1] // 4, dtype=torch.float32, device=device)
    rows = [ladder_.size(buf, size) for size in ladder]
    del buf
    return {"world_size": ladder_.n, "rows": rows, "max_bytes": ladder[-1],
            "modulus": ladder_.modulus, "wrong": sum(r["wrong"] for r in rows)}


def rank_device(kind: str, index: int):
    """(device, backend) for one all-reduce rank: NCCL on its own GPU, or gloo on the CPU."""
    import torch

    if kind == "cuda":
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        return device, "nccl"
    torch.set_num_threads(1)  # gloo needs no intra-op threads; ranks share the cores
    return torch.device("cpu"), "gloo"


def _sweep_body(device, params: dict[str, Any], mark: Callable[[str], None]) -> dict[str, Any]:
    import torch

    out = sweep(device, max_bytes=int(params["max_bytes"]), min_bytes=int(params["min_bytes"]),
                factor=int(params["factor"]), warmup=int(params["warmup"]), iters=int(params["iters"]), mark=mark)
    if device.type == "cuda":
        out["nccl_version"] = nccl_version_text(torch.cuda.nccl.version())
        out["device_name"] = torch.cuda.get_device_name(device)
    return out


def rank_main(argv: list[str] | None = None,
              body: Callable[[Any, dict[str, Any], Callable[[str], None]], dict[str, Any]] | None = None) -> int:
    """Entry of one local rank process started by :func:`launch` (``python -m
    envcheck.validate.checks.allreduce``; the collectives and ddp checks pass their own ``body``):
    join the launcher's store, mark progress there, run ``body(device, params, mark)`` in the
    process group and leave its result (or the error) in the store."""
    import argparse

    ap = argparse.ArgumentParser()
    for flag in ("--rank", "--world", "--port"):
        ap.add_argument(flag, type=int, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--params", required=True)
    args = ap.parse_args(argv)
    params = json.loads(args.params)
    import torch.distributed as dist

    timeout = timedelta(seconds=float(params["timeout"]) + 30)
    store = dist.TCPStore("127.0.0.1", args.port, None, False, timeout)
    r = args.rank

    def mark(text: str) -> None:
        store.set(f"mark/{r}", text)
        store.add(f"count/{r}", 1)

    try:
        mark("started")
        device, backend = rank_device(args.device, r)
        dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=r, world_size=args.world,
                                timeout=timeout)
        mark("joined the process group")
        out = (body or _sweep_body)(device, params, mark)
        out["backend"] = backend
        dist.destroy_process_group()
        mark("done")
        store.set(f"result/{r}", json.dumps(out))
        return 0
    except Exception as exc:  # noqa: BLE001 - reported to the parent through the store
        text = str(exc).strip()
        with contextlib.suppress(Exception):
            store.set(f"error/{r}", f"{type(exc).__name__}: {text.splitlines()[0][:500] if text else ''}")
        return 1


# --------------------------------------------------------------------------- launcher


def _child_env(device: str) -> dict[str, str]:
    env = procs.child_env(device)
    if sys.platform.startswith("linux"):
        # All ranks are on this host: keep gloo off whatever the hostname resolves to.
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


STARTUP_S = 60.0  # how long ranks may take to start (import torch) before the hang watchdog counts


class _Ranks:
    """What the launcher learns about its ranks each poll: progress marks and exit codes.

    Until every rank has marked its start (up to STARTUP_S), the hang watchdog is held off:
    importing torch on a loaded host took 7 s (measured on the CI host with 7 test jobs), which
    is not a hung collective, and a --timeout of a few seconds would otherwise fire on it."""

    def __init__(self, store, children: list, sup, world: int, total_marks: int, say, grace: float) -> None:
        self.store, self.children, self.sup, self.world = store, children, sup, world
        self.total_marks, self.say, self.grace = total_marks, say, grace
        self.started = time.monotonic()
        self.counts = [0] * world
        self.codes: dict[int, int] = {}
        self.failed: list[int] = []
        self.first_failure: float | None = None

    def poll(self) -> bool:
        """True once a failed rank's peers had ``grace`` seconds to fail too (the run is over)."""
        now = time.monotonic()
        new = [self.store.add(f"count/{r}", 0) for r in range(self.world)]
        if new != self.counts:
            self.counts = new
            self.sup.moved()
            self.say(min(new) / self.total_marks, f"{min(new)}/{self.total_marks} steps on the slowest rank")
        elif min(new) == 0 and now - self.started < STARTUP_S:
            self.sup.moved()  # a rank is still starting
        for r, child in enumerate(self.children):
            code = child.popen.poll()
            if code is not None and r not in self.codes:
                self.codes[r] = code
                if code != 0 or not self.store.check([f"result/{r}"]):
                    self.failed.append(r)
                    self.first_failure = self.first_failure or now
        return self.first_failure is not None and now - self.first_failure > self.grace

    def hung(self) -> list[int]:
        """The ranks still running that are furthest behind."""
        running = [r for r in range(self.world) if self.children[r].popen.poll() is None and r not in self.codes]
        if not running:
            return []
        behind = min(self.counts[r] for r in running)
        return [r for r in running if self.counts[r] == behind]


def _collect(store, world: int, out: dict[str, Any]) -> None:
    for r in range(world):
        if store.check([f"mark/{r}"]):
            out["marks"][r] = store.get(f"mark/{r}").decode(errors="replace")
        if store.check([f"result/{r}"]):
            out["results"][r] = json.loads(store.get(f"result/{r}"))
        if store.check([f"error/{r}"]):
            out["errors"][r] = store.get(f"error/{r}").decode(errors="replace")


def loopback_store(dist):
    """The single-node run's TCPStore, listening on 127.0.0.1 only (issue 10, class 8).

    torch's TCPStore server binds every interface whatever ``host_name`` says; given a socket
    already bound (``master_listen_fd``, which the store then owns: hence ``detach``) it
    listens there. A torch too old for ``master_listen_fd`` gets the old behaviour."""
    import socket

    timeout = timedelta(seconds=30)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        store = dist.TCPStore("127.0.0.1", port, None, True, timeout, wait_for_workers=False,
                              master_listen_fd=sock.fileno())
    except TypeError:
        sock.close()
        return dist.TCPStore("127.0.0.1", 0, None, True, timeout, wait_for_workers=False)
    except BaseException:
        sock.close()
        raise
    sock.detach()
    return store


def launch_ranks(world: int, cfg, params: dict[str, Any], progress: Callable[[float, str], None] | None,
                 module: str = "envcheck.validate.checks.allreduce") -> tuple[dict[str, Any], dict, dict]:
    """:func:`launch` for a check (all-reduce, collectives): the run, and the metrics and details
    every outcome of the check starts from (world, backend; progress marks, exit codes, logs)."""
    result = launch(world, cfg.device, params, float(cfg.timeout), progress, module=module)
    metrics: dict[str, Any] = {"world_size": world, "backend": "nccl" if cfg.device == "cuda" else "gloo"}
    details: dict[str, Any] = {"marks": result["marks"], "exit_codes": result["exit_codes"]}
    if result.get("logs"):
        details["logs"] = result["logs"]
    return result, metrics, details


def launch(world: int, device: str, params: dict[str, Any], timeout: float,
           progress: Callable[[float, str], None] | None = None,
           module: str = "envcheck.validate.checks.allreduce") -> dict[str, Any]:
    """Start ``world`` rank processes, watch them with the supervisor, and always reap them.

    ``module`` is the rank entry (``python -m module --rank ...``); the collectives check
    passes its own, which speaks the same store protocol (mark/count/result/error keys).

    Returns ``{"ok": bool, "results": {rank: dict}, "errors": {rank: str}, "exit_codes",
    "hung": [ranks] | None, "failed": [ranks], "marks": {rank: str}, "message": str}``.
    """
    import torch.distributed as dist

    from envcheck import proc

    say = progress or (lambda f, n="": None)
    store = loopback_store(dist)
    payload = json.dumps(dict(params, timeout=timeout))
    env = _child_env(device)
    out: dict[str, Any] = {"ok": False, "results": {}, "errors": {}, "exit_codes": {}, "hung": None,
                           "failed": [], "marks": {}, "message": ""}
    children = []
    try:
        for r in range(world):
            args = ["--rank", str(r), "--world", str(world), "--port", str(store.port), "--device", device,
                    "--params", payload]
            children.append(proc.start(procs.argv(module, args), env=env, stdout="file", stderr="stdout"))
        # started, joined, enter+finish of 2 collectives per size, done
        total_marks = 3 + 4 * int(params.get("n_sizes", 10))
        # A few store round trips per poll, rarely, so the watcher does not compete with the
        # ranks for the cores (hang detection works at the scale of seconds anyway).
        with proc.Supervisor(children, stall_s=timeout) as sup:
            ranks = _Ranks(store, children, sup, world, total_marks, say, grace=min(10.0, timeout))
            reason = sup.watch(poll=ranks.poll, settle_s=0.0)
            ranks.poll()
            if reason == "stall":
                out["hung"] = ranks.hung()
            _collect(store, world, out)
        out["exit_codes"], out["failed"] = dict(ranks.codes), ranks.failed
        for r, child in enumerate(children):
            tail = child.stdout_tail(2000).strip()
            if tail and r not in out["results"]:
                out.setdefault("logs", {})[r] = tail
    finally:
        for child in children:
            child.close()
        del store
    out["ok"] = not out["failed"] and out["hung"] is None and len(out["results"]) == world
    return out


_COLLATERAL = re.compile(r"connection (reset|closed|refused)|closed by peer|broken pipe|remote (worker|process)|"
                         r"socket timeout|ncclremoteerror", re.IGNORECASE)


def collateral(error: str) -> bool:
    """True for an error a rank gets because a peer died (gloo/NCCL connection errors)."""
    return bool(_COLLATERAL.search(error or ""))


def _describe_failure(run: dict[str, Any], world: int, timeout: float) -> str:
    marks = run["marks"]
    if run["hung"] is not None:
        hung = run["hung"]
        others = [r for r in range(world) if r not in hung and r not in run["exit_codes"]]
        where = "; ".join(f"rank {r}: last '{marks.get(r, 'no progress reported')}'" for r in hung)
        msg = (f"all-reduce hung: no rank progressed for {timeout:g} s; "
               f"stuck rank(s) {', '.join(map(str, hung))} ({where})")
        if others:
            msg += f"; rank(s) {', '.join(map(str, others))} were waiting for them"
        return msg + "; every rank process was killed"
    parts = []
    # The rank that died first is the cause; peers that then lost their connection to it are
    # collateral. Both can be seen in one poll, so order by what their errors say.
    order = sorted(run["failed"], key=lambda r: (collateral(run["errors"].get(r, "")), run["failed"].index(r)))
    for i, r in enumerate(order):
        code = run["exit_codes"].get(r)
        how = (f"was killed by signal {-code}" if code is not None and code < 0
               else f"exited with code {code}" if code is not None else "did not finish")
        err = run["errors"].get(r)
        parts.append(("then " if i and collateral(err or "") else "")
                     + f"rank {r} {how} after '{marks.get(r, 'no progress reported')}'"
                     + (f" ({err})" if err else ""))
    stragglers = [r for r in range(world) if r not in run["exit_codes"]]
    msg = "all-reduce failed: " + "; ".join(parts) if parts else "all-reduce failed: missing results"
    if stragglers:
        msg += f"; rank(s) {', '.join(map(str, stragglers))} were killed"
    return msg


def run(ctx: CheckContext) -> CheckResult:
    faults.at_start("allreduce")
    cfg = ctx.config
    p = ctx.params
    world = cfg.world_size
    if cfg.allreduce_max_bytes:
        max_bytes = int(cfg.allreduce_max_bytes)
    else:
        max_bytes = GPU_ALLREDUCE_MAX_BYTES if cfg.device == "cuda" else CPU_ALLREDUCE_MAX_BYTES
    n_sizes = len(size_ladder(int(p["min_bytes"]), max_bytes, int(p["factor"])))
    params = {"max_bytes": max_bytes, "min_bytes": int(p["min_bytes"]), "factor": int(p["factor"]),
              "warmup": int(p["warmup"]), "iters": int(p["iters"]), "n_sizes": n_sizes}
    result, metrics, details = launch_ranks(world, cfg, params, ctx.progress)
    if not result["ok"]:
        metrics["hung_ranks"] = result["hung"]
        metrics["failed_ranks"] = result["failed"]
        return CheckResult("allreduce", FAIL, metrics, _describe_failure(result, world, float(cfg.timeout)),
                           details=details, error={"kind": "hang" if result["hung"] is not None else "rank_failed",
                                                   "type": "AllReduceFailure", "message": "", "traceback": ""})
    r0 = result["results"][0]
    rows = r0["rows"]
    details["rows"] = rows
    last = rows[-1] if rows else {}
    metrics.update({
        "nccl_version": r0.get("nccl_version"),
        "sizes": len(rows),
        "max_bytes": r0["max_bytes"],
        "algbw_GBps": last.get("algbw_GBps"),
        "busbw_GBps": last.get("busbw_GBps"),
        "avg_busbw_GBps": round(sum(r["busbw_GBps"] or 0 for r in rows) / len(rows), 4) if rows else None,
        "wrong": r0["wrong"],
    })
    if r0["wrong"]:
        bad = [r for r in rows if r["wrong"]]
        return CheckResult("allreduce", FAIL, metrics,
                           f"{r0['wrong']} wrong element(s) summed over ranks, first at "
                           f"{human_bytes(bad[0]['bytes'])} (expected the sum over ranks r of 1 + (r + i) % {r0['modulus']})",
                           details=details)
    single = " (single-rank group: one device, checks the collective path only; busbw is 0 by nccl-tests' formula)" \
        if world == 1 else ""
    msg = (f"{world} rank(s) over {metrics['backend']}, exact sums at {len(rows)} sizes "
           f"{human_bytes(rows[0]['bytes'])}..{human_bytes(r0['max_bytes'])}; "
           f"busbw {metrics['busbw_GBps']:.2f} GB/s at {human_bytes(r0['max_bytes'])}{single}")
    return CheckResult("allreduce", PASS, metrics, msg, details=details)


if __name__ == "__main__":
    from envcheck.proc import exit_now

    exit_now(rank_main())
