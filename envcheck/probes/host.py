"""Probe: host (placeholder until the probe lands)."""

from envcheck.snapshot import na


def probe() -> dict:
    return {"status": na("host probe not implemented yet")}
