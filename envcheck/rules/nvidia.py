"""Rules about nvidia (placeholder)."""
