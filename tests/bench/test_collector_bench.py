"""bench/collector_bench.py runs end to end at a small size (the figures are the bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_collector_bench_smoke(tmp_path):
    out = tmp_path / "fig.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "collector_bench.py"), "--ranks", "64", "--senders", "2",
                           "--nofile", "1024", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fig = json.loads(out.read_text())
    assert fig["ranks"] == 64 and fig["all_collected"] and fig["lost_ranks"] == 0
    assert fig["accepted"] == 63 and 8000 < fig["bytes_per_result"] < 12000
