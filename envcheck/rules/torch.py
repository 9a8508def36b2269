"""Rules about torch (placeholder)."""
