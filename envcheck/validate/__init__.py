"""validate (placeholder)."""
