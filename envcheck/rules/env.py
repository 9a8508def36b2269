"""Rules about env (placeholder)."""
