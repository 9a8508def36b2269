"""bench/collector_bench.py runs end to end at a small size (the figures are the bench's job), and
the collector's open-files handling (issue 10, class 11) holds with a real low limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "fig.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "collector_bench.py"), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def test_collector_bench_smoke_raises_the_open_files_limit(tmp_path):
    fig = _bench(tmp_path, "--ranks", "64", "--senders", "2", "--nofile", "1024")
    assert fig["ranks"] == 64 and fig["all_collected"] and fig["lost_ranks"] == 0
    assert fig["accepted"] == 63 and 8000 < fig["bytes_per_result"] < 12000
    assert fig["nofile"]["soft_before"] == 1024 and fig["nofile"]["soft"] == fig["nofile"]["hard"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE semantics")
def test_the_accept_loop_survives_emfile_and_loses_no_rank(tmp_path):
    """64 open files and no raise: accept() hits EMFILE, the loop pauses and goes on while the
    ranks wait in the listen backlog; every rank is collected."""
    fig = _bench(tmp_path, "--ranks", "256", "--senders", "2", "--nofile", "64", "--no-raise")
    assert fig["all_collected"] and fig["lost_ranks"] == 0 and fig["accepted"] == 255
    assert fig["accept_errors"] > 0 and fig["nofile"]["soft"] == 64
