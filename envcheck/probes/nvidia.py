"""Probe: nvidia (placeholder until the probe lands)."""

from envcheck.snapshot import na


def probe() -> dict:
    return {"status": na("nvidia probe not implemented yet")}
