"""Probe: python + torch of the target interpreter, in a subprocess (placeholder)."""

from envcheck.snapshot import na


def probe(python=None, timeout=30.0) -> dict:
    return {"python": {"status": na("not implemented")}, "torch": {"status": "probe_failed", "error": {"message": "not implemented"}}}
