"""Probe: env (placeholder until the probe lands)."""

from envcheck.snapshot import na


def probe() -> dict:
    return {"status": na("env probe not implemented yet")}
