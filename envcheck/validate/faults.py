"""TEST-ONLY fault injection for validate's checks (issue 4: "tests inject faults").

Set ``ENVCHECK_FAULT`` to a comma-separated list of ``check.kind[:key=value[:key=value]]``;
only the check workers and all-reduce ranks read it, never the runner or the CLI, so a
fault always travels the same path as a real failure. Kinds understood:

====================  ===========================================================
``<check>.raise``     the check raises RuntimeError at its start
``<check>.oom``       the check raises torch.OutOfMemoryError ("CUDA out of memory")
``<check>.crash``     the worker process kills itself with SIGSEGV
``<check>.abort``     the worker process calls abort() (SIGABRT, as a failed C assertion)
``<check>.kill``      the worker process kills itself with SIGKILL (as the kernel's OOM killer)
``<check>.stall``     the worker sleeps forever at its start (the runner's stall watchdog)
``cnn.nan``           the loss becomes NaN at step ``step`` (default 5)
``gemm.sdc``          one repeated product differs in one element (silent corruption)
``memory.flip``       one word of the pattern buffer is flipped before verification
``allreduce.hang``    rank ``rank`` (default 1) sleeps before collective ``op`` (default 0)
``allreduce.exit``    rank ``rank`` exits with ``code`` (default 3) before collective ``op``
``allreduce.wrong``   rank ``rank`` adds 1 to its tensor before the checked collective
``pairwise.wrong``    --pairwise: the ranks of node ``node`` (default 1) add 1 in every pair
``pairwise.slow``     --pairwise: node ``node`` sleeps ``ms`` (default 50) before each timed op
``pairwise.raise``    --pairwise: node ``node`` raises in every pair, its partners are left waiting
``transformer.nan``   the transformer's loss becomes NaN from step ``step`` (default 5)
``collectives.wrong`` rank ``rank`` (default 1) adds 1 to its input of collective ``op`` at the first size
``p2p.flip``          one bit of the copy ``src`` -> ``dst`` (default 0 -> 1) is flipped before verification
``ddp.skew``          rank ``rank`` (default 1) nudges one DDP parameter after the first step
``consensus.flip``    rank ``rank`` (default 1) flips one bit of its consensus result before the digest
``forkserver.exit``   the fork server exits before it starts (the runner falls back to fresh workers)
``forkserver.cuda``   the fork server refuses to fork as if CUDA were initialised in it
====================  ===========================================================

Example: ``ENVCHECK_TEST_FAULTS=1 ENVCHECK_FAULT=allreduce.hang:rank=1:op=2``.

Honoured only when ``ENVCHECK_TEST_FAULTS=1`` is set as well (the test suite sets it in
tests/validate/conftest.py): a stray ``ENVCHECK_FAULT`` in a user's environment never fails a
real run (issue 10, class 10).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

ENV = "ENVCHECK_FAULT"
ENABLE_ENV = "ENVCHECK_TEST_FAULTS"


def active(check: str, kind: str) -> dict[str, Any] | None:
    """The parameters of fault ``check.kind`` when injected (and enabled), else None."""
    if os.environ.get(ENABLE_ENV) != "1":
        return None
    spec = os.environ.get(ENV, "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        head, *args = item.split(":")
        if head != f"{check}.{kind}":
            continue
        params: dict[str, Any] = {}
        for arg in args:
            key, _, value = arg.partition("=")
            params[key] = int(value) if value.lstrip("-").isdigit() else value
        return params
    return None


def at_start(check: str) -> None:
    """Generic faults every check honours at its start."""
    if active(check, "raise") is not None:
        raise RuntimeError(f"injected fault: {check} raised")
    if active(check, "oom") is not None:
        import torch

        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB (injected fault)"
        )
    if active(check, "crash") is not None:
        os.kill(os.getpid(), signal.SIGSEGV)
    if active(check, "abort") is not None:
        os.abort()
    if active(check, "kill") is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    if active(check, "stall") is not None:
        while True:
            time.sleep(3600)
