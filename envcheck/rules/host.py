"""Rules about host (placeholder)."""
